"""``--cluster NAME`` (repeatable) for the commands that read a log holding many clusters, and
the Git source of the config among the many a log may hold."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gitops.model.clusters import cluster_name, cluster_origin
from gitops.model.errors import UsageError
from gitops.store import EventLog

if TYPE_CHECKING:
    from gitops.sources.git.config import GitSourceConfig

__all__ = ["cluster_option", "resolve_clusters", "resolve_git_source"]


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


def resolve_git_source(log: EventLog, config: GitSourceConfig | None) -> str | None:
    """The origin of the Git source ``config`` reads (its repository, branch and paths), when
    the log holds it; else None, and the desired state is every Git source's. A log may hold
    several readings of one branch (two applications under their own paths, or the paths an
    application read before): the config's application is shown its own, not their union."""
    if config is None or config.repo is None:
        return None
    from gitops.sources.git.repository import display_url, is_remote  # GitPython: only when a Git source is named
    from gitops.sources.git.settings import origin_of

    url = display_url(config.repo) if is_remote(config.repo) else str(Path(config.repo).expanduser().resolve())
    for origin, value in sorted(log.checkpoints("git:").items()):
        branch = value.get("branch") if isinstance(value, dict) else None
        if isinstance(branch, str) and config.branch in (None, branch) and \
                origin == origin_of(url, branch, config.paths):
            return origin
    return None
