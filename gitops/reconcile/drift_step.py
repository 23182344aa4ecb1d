"""The drift step of a pass: the drift projection followed over the events since the last
pass, and the episodes it opens or closes recorded as ``drift.opened`` / ``drift.closed``.

Where it stopped is a checkpoint written with the episodes it recorded, so another process
of the same instance (after a restart, or a standby that took over) goes on from there. It
compares as the pass's diff does (the same ignored fields and managers, the same schema):
drift is what the reconciler would call out of sync, no more.
"""

from __future__ import annotations

from gitops.diff import DiffSettings, DriftTracker
from gitops.diff.drift import DriftEpisode
from gitops.events.models import (
    AnyEvent,
    DriftClosed,
    DriftClosedPayload,
    DriftOpened,
    DriftOpenedPayload,
    EventSource,
    SourceErrorEvent,
    SourceErrorPayload,
    event_id,
)
from gitops.model.schema import KindSchemas
from gitops.model.times import utc_now
from gitops.projections import fold_actual, fold_desired
from gitops.store import Checkpoint, EventLog
from gitops.store.current import STATE_TYPES

__all__ = ["DriftRecorder"]


class DriftRecorder:
    def __init__(self, log: EventLog, *, instance: str, field_manager: str, diff: DiffSettings,
                 desired_origin: str | None, actual_origin: str) -> None:
        self.log = log
        self.instance = instance
        self.field_manager = field_manager
        self.diff = diff
        self.desired_origin = desired_origin
        self.actual_origin = actual_origin
        self.tracker: DriftTracker | None = None
        self.seq = 0

    @property
    def checkpoint_name(self) -> str:
        return f"reconciler:{self.instance}:drift"

    @property
    def open_episodes(self) -> int:
        return 0 if self.tracker is None else len(self.tracker.open_episodes())

    def prime(self, schemas: KindSchemas | None) -> None:
        """The projection where the last pass (any process) left it, or as of now on a
        first pass, from the current-state tables and snapshots and the episodes the log
        holds open, rather than from a fold of the whole log. Called before a pass ingests."""
        if self.tracker is not None:
            self.tracker.schemas = schemas
            return
        tracker = DriftTracker(field_manager=self.field_manager, ignore_managers=self.diff.ignore_managers,
                               ignore=self.diff.ignore, schemas=schemas)
        cp = self.log.checkpoint(self.checkpoint_name)
        last_seq = self.log.last_seq()
        if isinstance(cp, dict) and isinstance(cp.get("seq"), int) and int(cp["seq"]) <= last_seq:
            seq = int(cp["seq"])
            desired = fold_desired(self.log.state_at("desired", until_seq=seq, origin=self.desired_origin))
            actual = fold_actual(self.log.state_at("actual", until_seq=seq, origin=self.actual_origin))
        else:  # a first pass: from now on (kept at once, so that a checkpoint missing later was removed)
            seq = last_seq
            self._reset(cp)
            self.log.append([], checkpoint=Checkpoint(self.checkpoint_name, {"seq": seq}))
            desired = fold_desired(self.log.current("desired", origin=self.desired_origin))
            actual = fold_actual(self.log.current("actual", origin=self.actual_origin))
        open_eps: dict[str, DriftEpisode] = {}
        for r in self.log.read(types=["drift.opened", "drift.closed"]):
            ev = r.event
            if isinstance(ev, DriftOpened) and ev.resource:
                open_eps[ev.resource] = DriftEpisode(ev.resource, ev.effective_at, ev.payload.cause_seq or r.seq,
                                                     ev.actor, list(ev.payload.fields))
            elif isinstance(ev, DriftClosed) and ev.resource:
                open_eps.pop(ev.resource, None)
        for key in set(desired) | set(actual):
            d, a = desired.get(key), actual.get(key)
            tracker.prime(key, d.manifest if d else None, a.manifest if a else None, open_eps.get(key))
        self.tracker, self.seq = tracker, seq

    def _reset(self, cp: object) -> None:
        """No usable checkpoint although this instance ran passes before: it was removed or
        reset (or points past the log's end), and drift since the last pass is not followed.
        Recorded, so that a report lists it as an evidence gap."""
        last = next((r for r in self.log.read(types=["reconcile.started"], descending=True)
                     if getattr(r.event.payload, "instance", None) == self.instance), None)
        if last is None:
            return  # the instance's first pass: nothing was followed before
        why = "missing" if cp is None else f"unusable ({cp!r:.80})"
        self.log.append([SourceErrorEvent(
            id=event_id("source.error", "drift-reset", self.instance, str(last.seq), str(self.log.last_seq())),
            source=EventSource.RECONCILER, effective_at=utc_now(),
            payload=SourceErrorPayload(
                code="drift-reset", origin=f"reconciler:{self.instance}",
                message=f"the drift step's checkpoint {self.checkpoint_name} was {why}: drift between the pass at "
                        f"seq {last.seq} and now was not followed",
                detail={"since_seq": str(last.seq), "since": last.event.effective_at.isoformat()}))])

    def record(self) -> tuple[int, int]:
        """Follow the projection over the events since the last call and record the
        episodes they opened or closed: (opened, closed)."""
        assert self.tracker is not None
        events: list[AnyEvent] = []
        last = self.seq
        opened = closed = 0
        for r in self.log.read(since_seq=self.seq, types=STATE_TYPES):
            last = r.seq
            origin = getattr(r.event.payload, "origin", "")
            if origin not in (self.desired_origin, self.actual_origin):
                continue
            ep = self.tracker.feed(r)
            if ep is None:
                continue
            episode_id = event_id("drift", ep.resource, str(ep.opened_seq))
            if ep.closed_seq is None:
                opened += 1
                events.append(DriftOpened(
                    id=event_id("drift.opened", episode_id), source=EventSource.RECONCILER, resource=ep.resource,
                    actor=ep.opened_by, effective_at=ep.opened_at,
                    payload=DriftOpenedPayload(cluster=self.actual_origin, episode_id=episode_id, fields=ep.fields,
                                               cause_seq=ep.opened_seq)))
            else:
                assert ep.how is not None and ep.closed_at is not None
                closed += 1
                events.append(DriftClosed(
                    id=event_id("drift.closed", episode_id), source=EventSource.RECONCILER, resource=ep.resource,
                    actor=ep.closed_by, effective_at=ep.closed_at,
                    payload=DriftClosedPayload(cluster=self.actual_origin, episode_id=episode_id, how=ep.how,
                                               cause_seq=ep.closed_seq)))
        self.seq = max(last, self.seq)
        self.log.append(events, checkpoint=Checkpoint(self.checkpoint_name, {"seq": self.seq}))
        return opened, closed
