"""ResourceKey: the one identity of a Kubernetes object across Git, the cluster and the log.

A key is (group, kind, namespace, name) and ignores the API version, so that
``apps/v1 Deployment`` in Git and the same object served as another version pair up. Kinds
that Kubernetes serves from an old group too (``extensions/v1beta1`` Deployments) take the
current group (``canonical_group``): moving a manifest to the new apiVersion modifies the
object, it does not delete one and create another.

The canonical string form, the only one stored or printed::

    <Kind>[.<group>]/<namespace>/<name>     namespaced objects
    <Kind>[.<group>]/<name>                 cluster-scoped objects

    Deployment.apps/shop/web        ConfigMap/default/settings
    Namespace/shop                  ClusterRole.rbac.authorization.k8s.io/view

It reads like kubectl's ``deployment.apps/web``. It is unambiguous because a kind never
holds a dot or a slash and neither a namespace nor an object name holds a slash: the
first dot splits kind from group, and the number of slashes tells the scope.
``format_key`` and ``parse_key`` are the one pair of functions that write and read it.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from gitops.model.errors import InvalidResourceKeyError

__all__ = ["ResourceKey", "canonical_group", "format_key", "key_of", "parse_key"]

_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]*\Z")
_GROUP = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_BAD_IN_NAME = re.compile(r"[/\s\x00-\x1f]")


class ResourceKey(NamedTuple):
    """The identity of one Kubernetes object, version-agnostic. ``group`` is ``""`` for
    the core API group; ``namespace`` is ``""`` for cluster-scoped objects."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return format_key(self)

    @property
    def namespaced(self) -> bool:
        return bool(self.namespace)


# Kinds Kubernetes serves from more than one API group as one object (the same etcd key):
# an object that moves from the old group to the new one is the same object, modified.
_SAME_OBJECT_GROUPS: dict[tuple[str, str], str] = {
    ("extensions", "Deployment"): "apps",
    ("extensions", "DaemonSet"): "apps",
    ("extensions", "ReplicaSet"): "apps",
    ("extensions", "Ingress"): "networking.k8s.io",
    ("extensions", "NetworkPolicy"): "networking.k8s.io",
    ("extensions", "PodSecurityPolicy"): "policy",
    ("events.k8s.io", "Event"): "",
}


def canonical_group(group: str, kind: str) -> str:
    """The group that names ``kind``'s objects in keys: the current group for kinds that
    older groups also serve (``extensions`` Deployments are ``apps`` Deployments)."""
    return _SAME_OBJECT_GROUPS.get((group, kind), group)


_GOOD_HEADS: set[tuple[str, str]] = set()  # (kind, group) pairs already checked: few, and met again and again


def _bad(text: str, why: str) -> InvalidResourceKeyError:
    return InvalidResourceKeyError(
        f"invalid resource key {text!r}: {why} (expected Kind[.group]/namespace/name or Kind[.group]/name)"
    )


def _check(key: ResourceKey, text: str) -> ResourceKey:
    if (key.kind, key.group) not in _GOOD_HEADS:
        if not _KIND.match(key.kind):
            raise _bad(text, f"kind {key.kind!r} must be letters and digits, starting with a letter")
        if key.group and not _GROUP.match(key.group):
            raise _bad(text, f"group {key.group!r} is not a DNS subdomain")
        if len(_GOOD_HEADS) < 10_000:
            _GOOD_HEADS.add((key.kind, key.group))
    for part, what in ((key.namespace, "namespace"), (key.name, "name")):
        if _BAD_IN_NAME.search(part):
            raise _bad(text, f"{what} {part!r} may not hold '/', spaces or control characters")
    if not key.name:
        raise _bad(text, "the name is empty")
    return key


def format_key(key: ResourceKey) -> str:
    """The canonical string of ``key``; ``parse_key(format_key(k)) == k``."""
    _check(key, repr(tuple(key)))
    head = f"{key.kind}.{key.group}" if key.group else key.kind
    return f"{head}/{key.namespace}/{key.name}" if key.namespace else f"{head}/{key.name}"


def parse_key(text: str) -> ResourceKey:
    """Read a canonical key string; raises ``InvalidResourceKeyError`` with the reason."""
    parts = text.split("/")
    if len(parts) == 2:
        head, namespace, name = parts[0], "", parts[1]
    elif len(parts) == 3:
        head, namespace, name = parts
        if not namespace:
            raise InvalidResourceKeyError(f"invalid resource key {text!r}: the namespace is empty")
    else:
        raise InvalidResourceKeyError(
            f"invalid resource key {text!r}: expected Kind[.group]/namespace/name or Kind[.group]/name"
        )
    kind, _, group = head.partition(".")
    return _check(ResourceKey(group, kind, namespace, name), text)


def key_of(manifest: dict[str, Any], *, namespaced: bool = True, default_namespace: str = "") -> ResourceKey:
    """The key of a manifest. ``namespaced`` says the kind's scope (from discovery or the
    built-in table); a namespaced object that names no namespace gets ``default_namespace``."""
    api_version = str(manifest.get("apiVersion", ""))
    kind = str(manifest.get("kind", ""))
    group = canonical_group(api_version.rpartition("/")[0] if "/" in api_version else "", kind)
    meta = manifest.get("metadata") or {}
    namespace = str(meta.get("namespace") or default_namespace) if namespaced else ""
    key = ResourceKey(group, kind, namespace, str(meta.get("name", "")))
    return _check(key, f"{key.kind} {key.name!r}")
