"""The command line's side of names (``gitops.query.names``): resource and kind options as
kubectl takes them, resolved against the log and, when a cluster is configured, what it
serves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, overload

import click

from gitops.cli.app import Context
from gitops.model.kinds import KindNames
from gitops.query.names import Names

__all__ = ["namespace_option", "resolve_kind", "resolve_resource"]


def namespace_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-n", "--namespace", default=None,
                        help="The namespace of a TYPE/NAME resource (as kubectl's -n).")(f)


def _names(ctx: Context, log: Any) -> Names:
    cluster = ctx.config.cluster

    def discover() -> list[tuple[KindNames, bool]]:
        assert cluster is not None
        from gitops.sources.cluster.client import ClusterClient  # pykube, only when a cluster is asked

        served = ClusterClient(cluster.kubeconfig, context=cluster.context).discover().kinds.values()
        return [(KindNames(i.group, i.kind, i.names), i.namespaced) for i in served]

    return Names(log, discover if cluster is not None else None)


@overload
def resolve_resource(ctx: Context, text: str, namespace: str | None = None, *, glob: bool = False,
                     held: bool = True) -> str: ...
@overload
def resolve_resource(ctx: Context, text: None, namespace: str | None = None, *, glob: bool = False,
                     held: bool = True) -> None: ...
@overload
def resolve_resource(ctx: Context, text: str | None, namespace: str | None = None, *, glob: bool = False,
                     held: bool = True) -> str | None: ...
def resolve_resource(ctx: Context, text: str | None, namespace: str | None = None, *, glob: bool = False,
                     held: bool = True) -> str | None:
    """The canonical key (or, with ``glob``, key pattern) of what the user typed; None for None."""
    if text is None:
        return None
    with ctx.open_log() as log:
        names = _names(ctx, log)
        return names.pattern(text, namespace) if glob else names.resource(text, namespace, held=held)


def resolve_kind(ctx: Context, text: str | None) -> str | None:
    """``Kind.group`` (``Kind`` for the core group) of the kind the user typed."""
    if text is None:
        return None
    with ctx.open_log() as log:
        return _names(ctx, log).kind(text).head
