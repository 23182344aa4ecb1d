"""Which kinds a cluster serves, as users name them: a ``Kind[.group]`` or what kubectl
takes resolved against discovery, and whether a kind is namespaced (for the Git source,
which must place objects that name no namespace)."""

from __future__ import annotations

from collections.abc import Callable

from gitops.model.errors import ConfigError
from gitops.model.keys import canonical_group
from gitops.model.scope import Scope, builtin_scope
from gitops.sources.cluster.api import KindInfo
from gitops.sources.cluster.client import ClusterClient
from gitops.sources.cluster.config import ClusterSourceConfig

__all__ = ["discovery_scope", "resolve_kind", "served_scope"]


def discovery_scope(config: ClusterSourceConfig) -> Scope:
    """The cluster's own answer to "is this kind namespaced?", for the Git source; kinds it
    does not serve (a CRD not yet installed) fall back to the built-in table."""
    served = ClusterClient(config.kubeconfig, context=config.context).discover().kinds
    return served_scope(lambda: served)


def served_scope(served: Callable[[], dict[tuple[str, str], KindInfo]]) -> Scope:
    """A Scope that asks ``served()`` (a discovery) first and the built-in table after."""

    def scope(group: str, kind: str) -> bool:
        info = served().get((group, kind))
        return info.namespaced if info is not None else builtin_scope(group, kind)

    return scope


def _kind_id(text: str) -> tuple[str, str]:
    kind, _, group = text.partition(".")
    return group, kind


def resolve_kind(text: str, served: dict[tuple[str, str], KindInfo]) -> tuple[str, str]:
    """(group, Kind) for what a user typed: ``Kind[.group]`` as served, else a resource name
    as kubectl takes it (``deployments.apps``, ``deploy``, ``configmap``) when exactly one
    served kind answers to it. A name nothing answers to is returned as typed (the caller
    records that the cluster does not serve it: a CRD may come later); one that several
    kinds answer to is a ``ConfigError``."""
    group, name = _kind_id(text)
    if (group, name) in served:
        return group, name
    lowered = name.lower()
    found = {(canonical_group(i.group, i.kind), i.kind): i for i in served.values()
             if ("." not in text or i.group == group) and (lowered in i.names or lowered == i.kind.lower())}
    if len(found) == 1:
        info = next(iter(found.values()))
        return info.group, info.kind
    if len(found) > 1:
        raise ConfigError(f"kind {text!r} is ambiguous: it may be {', '.join(sorted(i.name for i in found.values()))}; "
                          "name one as Kind.group")
    return group, name
