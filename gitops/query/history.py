"""``gitops history``: the reconcile passes, as ``argocd app history`` and ``flux events``
list syncs: when each began, why (its trigger), the commit it acted on, what it did and how
it ended. A pass with no end recorded is "running", or "interrupted" once a later pass
found its process gone."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from gitops.events import ReconcileFinished, ReconcileInterrupted, ReconcileStarted
from gitops.store import EventLog

__all__ = ["Pass", "passes"]


@dataclass(frozen=True)
class Pass:
    seq: int  # its reconcile.started
    time: datetime
    instance: str
    trigger: str
    mode: str
    commit: str | None
    held: str | None
    outcome: str  # succeeded, failed, partial, skipped, running, interrupted
    created: int = 0
    updated: int = 0
    pruned: int = 0
    failed: int = 0
    out_of_sync: int = 0
    duration_seconds: float | None = None


def passes(log: EventLog, *, instance: str | None = None, since: datetime | None = None,
           until: datetime | None = None, limit: int | None = None, descending: bool = False) -> list[Pass]:
    """The passes that began in [since, until), oldest first (``descending``: newest
    first), at most ``limit`` (the newest when descending)."""
    started = [r for r in log.read(types=["reconcile.started"], start=since, end=until, descending=descending,
                                   limit=None if instance is not None else limit)
               if isinstance(r.event, ReconcileStarted) and instance in (None, r.event.payload.instance)]
    if limit is not None:
        started = started[:limit]
    if not started:
        return []
    first = min(r.seq for r in started)
    ends: dict[str, ReconcileFinished | ReconcileInterrupted] = {}
    for r in log.read(types=["reconcile.finished", "reconcile.interrupted"], since_seq=first):
        if isinstance(r.event, ReconcileFinished | ReconcileInterrupted):
            ends.setdefault(r.event.payload.run_id, r.event)
    out = []
    for r in started:
        assert isinstance(r.event, ReconcileStarted)
        p = r.event.payload
        end = ends.get(p.run_id)
        one = Pass(r.seq, r.event.effective_at, p.instance, p.trigger, p.mode, p.desired_revision, p.held,
                   "interrupted" if isinstance(end, ReconcileInterrupted) else "running")
        if isinstance(end, ReconcileFinished):
            f = end.payload
            one = replace(one, outcome=f.status, created=f.created, updated=f.updated, pruned=f.pruned,
                          failed=f.failed, out_of_sync=f.out_of_sync, duration_seconds=f.duration_seconds)
        out.append(one)
    return out
