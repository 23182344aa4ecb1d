"""Drift episodes, folded from the log: when an object that was in sync with Git diverged
outside Git, who caused it, and when and how it converged again.

An episode opens when a cluster change makes an in-sync object differ from what Git
desires (a change in Git that the cluster has not caught up with yet is not drift: it is
the reconciler's pending work). It closes when the object matches again: ``reconciled``
(the reconciler's change), ``reverted`` (anyone else's), ``git-changed`` (Git moved to
match), ``git-removed`` (Git stopped desiring the object), ``deleted`` (gone from both). Pure: events in,
episodes out. In ``diff`` (it is the diff, followed over time) so that both the read side
and the reconciler, which records the episodes it sees, use this one definition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from gitops.diff.compare import diff_object
from gitops.diff.ignore import IgnoreRule
from gitops.events.models import (
    Attribution,
    ClusterDeleted,
    ClusterObserved,
    DesiredApplied,
    DesiredRemoved,
    Recorded,
)
from gitops.model.schema import KindSchemas

__all__ = ["DriftEpisode", "DriftTracker", "drift_episodes"]

How = Literal["reconciled", "reverted", "git-changed", "git-removed", "deleted"]


@dataclass
class DriftEpisode:
    resource: str
    opened_at: datetime
    opened_seq: int
    opened_by: str | None  # the actor of the change that caused it, when the evidence names one
    fields: list[str] = field(default_factory=list)  # what differed when it opened
    closed_at: datetime | None = None
    closed_seq: int | None = None
    closed_by: str | None = None
    how: How | None = None

    @property
    def duration(self) -> timedelta | None:
        return None if self.closed_at is None else self.closed_at - self.opened_at


@dataclass
class _Object:
    desired: dict[str, Any] | None = None
    actual: dict[str, Any] | None = None
    in_sync: bool = False
    episode: DriftEpisode | None = None


class DriftTracker:
    """The drift projection, one event at a time: ``feed`` returns the episode an event
    opened or closed (None when it did neither). ``drift_episodes`` runs it over a whole
    log; the running service runs it over the events each pass brings and records what
    it returns as ``drift.opened`` / ``drift.closed``, so the two agree by construction.

    ``prime`` starts it from a known state (the current-state tables and the open
    episodes the log recorded) instead of from the first event.

    It compares as the reconciler does (the same ignored fields and managers, the same
    schema), so that what it calls drift is what the reconciler calls out of sync: an
    episode it opened on a field the reconciler ignores would never close."""

    def __init__(self, *, field_manager: str = "gitops", ignore_managers: Sequence[str] = (),
                 ignore: Sequence[IgnoreRule] = (), schemas: KindSchemas | None = None) -> None:
        self.field_manager = field_manager
        self.ignore_managers = tuple(ignore_managers)
        self.ignore = tuple(ignore)
        self.schemas = schemas
        self.objects: dict[str, _Object] = {}

    def _diff(self, desired: dict[str, Any], actual: dict[str, Any] | None) -> list[Any]:
        return diff_object(desired, actual, field_manager=self.field_manager, ignore_managers=self.ignore_managers,
                           ignore=self.ignore, schemas=self.schemas)

    def prime(self, resource: str, desired: dict[str, Any] | None, actual: dict[str, Any] | None,
              episode: DriftEpisode | None = None) -> None:
        items = self._diff(desired, actual) if desired is not None else [None]
        self.objects[resource] = _Object(desired, actual, not items, episode)

    def open_episodes(self) -> list[DriftEpisode]:
        return [o.episode for o in self.objects.values() if o.episode is not None]

    def feed(self, r: Recorded) -> DriftEpisode | None:
        ev = r.event
        if ev.resource is None or not isinstance(ev, (DesiredApplied, DesiredRemoved, ClusterObserved,
                                                      ClusterDeleted)):
            return None
        o = self.objects.setdefault(ev.resource, _Object())
        git_side = isinstance(ev, (DesiredApplied, DesiredRemoved))
        if isinstance(ev, DesiredApplied):
            o.desired = ev.payload.manifest
        elif isinstance(ev, DesiredRemoved):
            o.desired = None
        elif isinstance(ev, ClusterObserved):
            o.actual = ev.payload.manifest
        else:
            o.actual = None
        items = self._diff(o.desired, o.actual) if o.desired is not None else []
        now_in_sync = o.desired is not None and not items
        changed: DriftEpisode | None = None
        if o.episode is not None and (now_in_sync or o.desired is None):
            if o.desired is None:
                # Git no longer wants it: removed by Git (not adopted), or gone from both
                how: How = "deleted" if o.actual is None else "git-removed"
            elif git_side:
                how = "git-changed"
            else:
                reconciler = isinstance(ev, ClusterObserved) and ev.payload.attribution == Attribution.RECONCILER
                how = "reconciled" if reconciler else "reverted"
            o.episode.closed_at, o.episode.closed_seq, o.episode.closed_by, o.episode.how = (
                ev.effective_at, r.seq, ev.actor, how)
            changed, o.episode = o.episode, None
        elif o.in_sync and not now_in_sync and not git_side and o.desired is not None \
                and not getattr(ev.payload, "control_plane", False):  # the cluster working is not drift
            o.episode = changed = DriftEpisode(ev.resource, ev.effective_at, r.seq, ev.actor,
                                               [i.path or "(the whole object)" for i in items])
        o.in_sync = now_in_sync
        return changed


def drift_episodes(events: Iterable[Recorded], *, field_manager: str = "gitops", ignore_managers: Sequence[str] = (),
                   ignore: Sequence[IgnoreRule] = (), schemas: KindSchemas | None = None) -> list[DriftEpisode]:
    """Every drift episode in ``events`` (seq order), open ones last in their place."""
    tracker = DriftTracker(field_manager=field_manager, ignore_managers=ignore_managers, ignore=ignore,
                           schemas=schemas)
    out: list[DriftEpisode] = []
    for r in events:
        e = tracker.feed(r)
        if e is not None and e.closed_seq is None:
            out.append(e)
    return out
