"""``--cluster NAME`` (repeatable) for the commands that read a log holding many clusters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from gitops.model.clusters import cluster_name, cluster_origin
from gitops.model.errors import UsageError
from gitops.store import EventLog

__all__ = ["cluster_option", "resolve_clusters"]


def cluster_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--cluster", "clusters", multiple=True, metavar="NAME",
                        help="Only this cluster (its cluster.name, or its API server's URL when it has none; "
                             "repeatable; default: every cluster, each kept apart).")(f)


def resolve_clusters(log: EventLog, names: Sequence[str]) -> list[str]:
    """The origins of the clusters ``names`` asks for (every cluster the log holds when it
    names none); a name the log does not hold is the user's error, with the names it holds."""
    known = log.clusters()
    if not names:
        return known
    wanted = [cluster_origin(n) for n in names]
    for name, origin in zip(names, wanted, strict=True):
        if origin not in known:
            held = ", ".join(cluster_name(k) for k in known) or "none yet"
            raise UsageError(f"--cluster {name}: the log holds no cluster of that name (it holds: {held})")
    return list(dict.fromkeys(wanted))
