"""What deleting a Namespace or a CRD would delete with it, and whether gitops may (pure).

Deleting a Namespace deletes everything in it; deleting a CustomResourceDefinition deletes
every custom resource of its kind, in every namespace. The API server does that whoever
made those objects, so a prune of one such object is a prune of all of them. It may go
ahead only when every object it would take with it is one this instance would prune
anyway:

- this instance's (its ownership label), no longer in Git, not annotated
  ``gitops.dev/reconcile: disabled``;
- or a dependent of such an object (``ownerReferences``: a Deployment's ReplicaSets and
  Pods, a Service's EndpointSlices; an Endpoints object named after such a Service; a
  ServiceAccount's token Secret);
- or what the control plane keeps in every namespace (the ``default`` ServiceAccount and
  its token, the ``kube-root-ca.crt`` ConfigMap) and Events.

Anything else blocks the prune, and is named: an object made by hand, another instance's,
one Git still wants, one annotated as disabled, or a kind that could not be listed (what
cannot be seen cannot be vouched for). The objects the cascade would delete that the pass
does not already prune count toward the mass-prune guard.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from gitops.diff import OWNERSHIP_LABEL
from gitops.reconcile.settings import DISABLE_ANNOTATION, annotated

__all__ = ["CASCADING_KINDS", "Blocked", "Contents", "judge_cascade"]

CASCADING_KINDS = (("", "Namespace"), ("apiextensions.k8s.io", "CustomResourceDefinition"))
_EVENTS = {("", "Event"), ("events.k8s.io", "Event")}
_KEPT_BY_THE_CONTROL_PLANE = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}
_TOKEN_TYPE = "kubernetes.io/service-account-token"
_SA_ANNOTATION = "kubernetes.io/service-account.name"
_SHOWN = 5


@dataclass
class Contents:
    """The objects a Namespace or CRD holds, as the cluster listed them just now: key ->
    (group, kind, manifest); and the kinds that could not be listed, with why."""

    objects: dict[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)
    unlisted: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Blocked:
    message: str  # "prune-blocked: Namespace/shop holds ...": what and why, for the log and the user


def _meta(m: Mapping[str, Any]) -> Mapping[str, Any]:
    return m.get("metadata") or {}


def _why_not(manifest: Mapping[str, Any], key: str, *, instance: str, desired: Collection[str]) -> str | None:
    """Why this object is not one the instance would prune itself, or None when it is."""
    meta = _meta(manifest)
    owner = (meta.get("labels") or {}).get(OWNERSHIP_LABEL)
    if owner is None:
        return "not made by gitops"
    if owner != instance:
        return f"owned by instance {owner!r}"
    if key in desired:
        return "still in Git"
    if annotated(manifest, DISABLE_ANNOTATION, "disabled"):
        return f"annotated {DISABLE_ANNOTATION}: disabled"
    return None


def judge_cascade(key: str, contents: Contents, *, instance: str, desired: Collection[str],
                  pruning: Collection[str]) -> tuple[Blocked | None, int]:
    """Whether pruning ``key`` (a Namespace or a CRD) may go ahead, and how many objects its
    cascade deletes that ``pruning`` (this pass's prunes) does not already name."""
    ours: set[str] = set()  # uids the cascade may take: this instance's own, and their dependents
    names: set[tuple[str, str]] = set()  # (kind, name) of the same, for Endpoints and tokens
    why: dict[str, str] = {}
    extra = 0
    for k, (group, kind, m) in contents.objects.items():
        if (group, kind) in _EVENTS or (kind, _meta(m).get("name")) in _KEPT_BY_THE_CONTROL_PLANE:
            ours.add(str(_meta(m).get("uid")))
            names.add((kind, str(_meta(m).get("name"))))
            continue
        reason = _why_not(m, k, instance=instance, desired=desired)
        if reason is None:
            ours.add(str(_meta(m).get("uid")))
            names.add((kind, str(_meta(m).get("name"))))
            extra += k not in pruning
        else:
            why[k] = reason
    changed = True
    while changed:  # dependents of dependents (a Deployment's ReplicaSet's Pods)
        changed = False
        for k in list(why):
            group, kind, m = contents.objects[k]
            meta = _meta(m)
            owners = [str(o.get("uid")) for o in meta.get("ownerReferences") or [] if isinstance(o, dict)]
            sa = (meta.get("annotations") or {}).get(_SA_ANNOTATION)
            if (owners and all(o in ours for o in owners)) \
                    or (kind == "Endpoints" and ("Service", meta.get("name")) in names) \
                    or (kind == "Secret" and m.get("type") == _TOKEN_TYPE and ("ServiceAccount", sa) in names):
                del why[k]
                ours.add(str(meta.get("uid")))
                names.add((kind, str(meta.get("name"))))
                changed = True
    problems = [f"{k} ({reason})" for k, reason in sorted(why.items())]
    problems += [f"{kind} objects (not listed: {reason})" for kind, reason in sorted(contents.unlisted.items())]
    if not problems:
        return None, extra
    shown = ", ".join(problems[:_SHOWN]) + (f" and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else "")
    what = "deleting it would delete" if key.startswith("CustomResourceDefinition") else "it holds"
    return Blocked(f"prune-blocked: {what} what gitops must not delete: {shown}"), extra
