"""The port in front of the cluster: what the watcher (and, later, the reconciler) asks of
a Kubernetes API, and nothing else. ``ClusterClient`` (pykube-ng) is its adapter; the
cluster source depends on this Protocol, not on the adapter.

Also here, the small pure pieces that decide *when*: ``Backoff`` (capped exponential with
jitter), and the ``Clock`` the source is given, so that both are tested without sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from gitops.sources.cluster.api import Discovery, KindInfo, WatchEvent

__all__ = ["Backoff", "Clock", "ClusterPort"]

Clock = Callable[[], datetime]
"""Now, in UTC: ``gitops.model.times.utc_now`` in production, a settable one in tests."""


class ClusterPort(Protocol):
    """A Kubernetes API as the cluster source uses it."""

    server: str

    def discover(self) -> Discovery:
        """Every kind served, and the group versions that did not answer."""

    def list(self, kind: KindInfo, namespace: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """Every object of ``kind`` and the list's resourceVersion (410: ResourceVersionGone)."""

    def openapi(self) -> dict[str, Any] | None:
        """The server's OpenAPI v2 document, or None when it serves none."""

    def identity(self) -> str | None:
        """What tells this cluster from any other (the ``kube-system`` Namespace's uid), or
        None when the credentials may not read it."""

    def collection_version(self, kind: KindInfo, namespace: str | None = None) -> str:
        """The resourceVersion of ``kind``'s collection (in ``namespace``, or in all) now."""

    def watch(self, kind: KindInfo, resource_version: str, namespace: str | None = None) -> Iterator[WatchEvent]:
        """Changes (in ``namespace``, or in all) after ``resource_version``: CONNECTED first,
        then ADDED, MODIFIED, DELETED and BOOKMARK events, until the server ends the watch
        or ``close()``."""

    def close(self) -> None:
        """End every watch in progress, from any thread."""


@dataclass
class Backoff:
    """Capped exponential backoff with jitter: each ``delay()`` is the current step times a
    random factor in [0.5, 1), and the step doubles up to ``maximum``; ``reset()`` after a
    success. ``random`` is injected so that tests see exact delays."""

    initial: float
    maximum: float
    random: Callable[[], float] = random.random  # jitter, not cryptography
    _step: float = field(init=False)

    def __post_init__(self) -> None:
        self._step = self.initial

    def delay(self) -> float:
        d = self._step * (0.5 + self.random() / 2)
        self._step = min(self._step * 2, self.maximum)
        return d

    def reset(self) -> None:
        self._step = self.initial
