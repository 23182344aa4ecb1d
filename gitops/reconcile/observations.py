"""What a pass applied, recorded in the order the cluster made it.

The API server answers an apply with the object as it now holds it: an observation of the
cluster (``PassEvents.observed``). Where a watch of the cluster feeds the same log
(``gitops run``), the watch records that version too, under the same id, and in the order
the versions were made; but not at once: its writer holds each change up to
``cluster.audit_wait`` for the audit record that names who made it. Appended by the pass
first, the apply's version would come before what was made just before it (another
user's edit, or the deletion of the incarnation a recreate replaced), and those, appended
after it, would leave the log's current state at an older version than the cluster holds:
``status`` then calls the object missing or drifted, and every pass applies it again, a
no-op the log never sees (its version is recorded already).

So where a watch feeds the log, a pass leaves its observations to the watch (``Handoff``):
it waits up to ``timeout`` until the watch has recorded each, and appends only those it has
not (a watch that is down or far behind; the same id makes the watch's later copy a no-op).
Without a watch (a one-shot ``gitops reconcile``), the pass appends them at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from gitops.events.models import AnyEvent
from gitops.store import EventLog

__all__ = ["Handoff", "left_by_the_watch"]


def left_by_the_watch(log: EventLog, events: Sequence[AnyEvent], *, timeout: float,
                      stopping: threading.Event, watches: Callable[[str], bool] = lambda kind: True,
                      poll: float = 0.05) -> list[AnyEvent]:
    """Those of ``events`` the log still lacks after waiting up to ``timeout`` seconds (real
    time: a watch is what is waited for) for another writer to append them; at once when
    ``stopping`` is set, and without waiting those of a kind no watch records (``watches``:
    one its CRD made served in this very pass, one RBAC refuses to watch)."""
    unwatched = [e for e in events if not watches((e.resource or "").split("/", 1)[0])]
    skipped = {e.id for e in unwatched}
    pending = {e.id: e for e in events if e.id not in skipped}
    deadline = time.monotonic() + timeout
    while pending:
        for known in log.known_ids(list(pending)):
            del pending[known]
        if not pending or time.monotonic() >= deadline or stopping.wait(poll):
            break
    return [*unwatched, *pending.values()]


class Handoff:
    """A reconciler's observations on their way to the log: with ``timeout`` 0 (no watch),
    appended with their actions; else kept (``keep``) until the pass's applies are done, then
    waited for and the rest appended (``settle``). The service that runs a watch sets
    ``timeout`` and ``watches``."""

    def __init__(self) -> None:
        self.timeout = 0.0
        self.watches: Callable[[str], bool] = lambda kind: True  # whether a watch records that kind now
        self._kept: list[AnyEvent] = []

    @property
    def watched(self) -> bool:
        """Whether a watch records the cluster's changes into the log beside the pass."""
        return self.timeout > 0

    def keep(self, events: Sequence[AnyEvent]) -> Sequence[AnyEvent]:
        """What to append now of ``events``: all of them when no watch records them."""
        if not self.watched:
            return events
        self._kept += events
        return ()

    def settle(self, log: EventLog, stopping: threading.Event) -> None:
        """Wait for the watch to record what was kept, and append what it did not."""
        if not self._kept:
            return
        late = left_by_the_watch(log, self._kept, timeout=self.timeout, stopping=stopping, watches=self.watches)
        self._kept = []
        if late:
            log.append(late)
