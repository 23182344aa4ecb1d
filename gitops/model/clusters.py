"""Clusters by name. Every event from a cluster names its origin, ``cluster:NAME`` (NAME is
``cluster.name``, or the API server's URL when none is set), and so do the reconciler's
events about the cluster it acted on (their ``cluster``). Users say NAME (or the whole
origin); these two functions go between the two."""

from __future__ import annotations

__all__ = ["PREFIX", "cluster_name", "cluster_origin"]

PREFIX = "cluster:"


def cluster_origin(name: str) -> str:
    """The origin of the cluster a user calls ``name`` (``prod`` or ``cluster:prod``)."""
    return name if name.startswith(PREFIX) else PREFIX + name


def cluster_name(origin: str | None) -> str:
    """How a cluster's origin is shown: its name ("" for no cluster)."""
    return origin.removeprefix(PREFIX) if origin and origin.startswith(PREFIX) else ""
