"""The form of a Git manifest that the reconciler sends and the diff compares.

Two things in a manifest as people write it are not what the API server will hold, and a
reconciler that sent them as written would fail or fight:

- **A port without ``protocol``.** The server defaults it to TCP, and the field is a key
  of its list (containerPort+protocol, port+protocol). Before Kubernetes 1.22, server-side
  apply of such a port fails with HTTP 500 ("associative list with keys has an element
  that omits key field protocol"); on every version, a diff that matched ports by number
  alone would pair 53/TCP with 53/UDP. ``protocol: TCP`` is filled in, as Flux does,
  for Service ports and the ports of every container of a Pod or a Pod template.
- **The rules of an aggregated ClusterRole.** With ``aggregationRule`` set, the
  clusterrole-aggregation controller owns ``rules``; the Kubernetes docs write
  ``rules: []``, and applying that clears what the controller wrote, which it writes
  back, which is drift, which is applied... ``rules`` is left out of such a role.

Pure: the input is never changed; a copy is made only of what changes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["POD_SPEC_PATHS", "as_applied"]

_TEMPLATE = ("spec", "template", "spec")
POD_SPEC_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): ("spec",), ("", "PodTemplate"): ("template", "spec"), ("", "ReplicationController"): _TEMPLATE,
    **{(g, k): _TEMPLATE for g in ("apps", "extensions") for k in ("Deployment", "ReplicaSet", "DaemonSet")},
    ("apps", "StatefulSet"): _TEMPLATE, ("batch", "Job"): _TEMPLATE,
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}
"""Where each built-in workload kind, by (group, kind), holds its Pod spec."""

_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def _with_protocol(ports: Any) -> Any:
    if not isinstance(ports, list) or all(not isinstance(p, dict) or "protocol" in p for p in ports):
        return ports
    return [{**p, "protocol": "TCP"} if isinstance(p, dict) and "protocol" not in p else p for p in ports]


def _pod_spec(spec: dict[str, Any]) -> dict[str, Any]:
    out = spec
    for name in _CONTAINER_LISTS:
        containers = spec.get(name)
        if not isinstance(containers, list):
            continue
        fixed = [{**c, "ports": _with_protocol(c["ports"])} if isinstance(c, dict) and "ports" in c else c
                 for c in containers]
        if any(f is not c for f, c in zip(fixed, containers, strict=True)):
            out = {**out, name: fixed}
    return out


def _replace_at(obj: dict[str, Any], path: tuple[str, ...], change: Any) -> dict[str, Any]:
    """``obj`` with the dict at ``path`` replaced by ``change(it)``, copying only that path."""
    inner = obj.get(path[0])
    if not isinstance(inner, dict):
        return obj
    new = change(inner) if len(path) == 1 else _replace_at(inner, path[1:], change)
    return obj if new is inner else {**obj, path[0]: new}


def as_applied(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` as the reconciler applies it and the diff compares it (see above)."""
    kind = manifest.get("kind")
    group = str(manifest.get("apiVersion", "")).rpartition("/")[0]
    if kind == "Service" and group == "":
        return _replace_at(manifest, ("spec",), lambda s: {**s, "ports": _with_protocol(s["ports"])}
                           if "ports" in s and _with_protocol(s["ports"]) is not s["ports"] else s)
    if kind == "ClusterRole" and group == "rbac.authorization.k8s.io" and manifest.get("aggregationRule") \
            and "rules" in manifest:
        return {k: v for k, v in manifest.items() if k != "rules"}
    path = POD_SPEC_PATHS.get((group, str(kind)))
    if path is not None:
        return _replace_at(manifest, path, _pod_spec)
    return manifest
