"""The difference between Git and the cluster at any moment: the two projections, paired
and diffed. From the log alone (no Git, no cluster): the server's schema is the one the
cluster source kept in the log."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from gitops.diff import DiffSettings, ObjectDiff, Status, diff_states
from gitops.diff.health import Status as HealthStatus
from gitops.diff.view import diff_view
from gitops.events import GitCommit, HealthChanged, HealthChangedPayload, SourceErrorEvent
from gitops.model.bulk import cyclic_gc_paused
from gitops.model.keys import parse_key
from gitops.model.selector import Selector
from gitops.projections import DesiredEntry, Moment, actual_at, desired_at
from gitops.projections.inventory import ever_desired
from gitops.store import EventLog
from gitops.store.openapi import load_schemas

__all__ = ["ObjectView", "Only", "StatusView", "diff_at", "head_errors", "status_at", "views_at"]


@dataclass(frozen=True)
class Only:
    """Which objects a status or diff is about: one key, one namespace (its namespaced
    objects, as kubectl's ``-n``), and those whose labels (Git's, else the cluster's) match
    a selector. Each left as None keeps all."""

    resource: str | None = None
    namespace: str | None = None
    selector: Selector | None = None

    def keeps(self, key: str, desired: dict[str, Any] | None, live: dict[str, Any] | None) -> bool:
        if self.resource is not None and key != self.resource:
            return False
        if self.namespace is not None and parse_key(key).namespace != self.namespace:
            return False
        if self.selector is not None:
            labels = ((desired or live or {}).get("metadata") or {}).get("labels") or {}
            return self.selector(labels if isinstance(labels, dict) else {})
        return True


@dataclass(frozen=True)
class ObjectView:
    """One object's diff, and both sides as whole objects to show it as text (``diff_view``)."""

    diff: ObjectDiff
    desired: dict[str, Any] | None
    live: dict[str, Any] | None


def _states(log: EventLog, moment: Moment, only: Only, entries: dict[str, DesiredEntry] | None = None,
            cluster: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    desired = {k: e.manifest for k, e in (desired_at(log, moment) if entries is None else entries).items()}
    actual = {k: e.manifest for k, e in actual_at(log, moment, origin=cluster).items()}
    keep = {k for k in desired.keys() | actual.keys() if only.keeps(k, desired.get(k), actual.get(k))}
    return {k: v for k, v in desired.items() if k in keep}, {k: v for k, v in actual.items() if k in keep}


def diff_at(log: EventLog, moment: Moment, *, resource: str | None = None, instance: str | None = None,
            field_manager: str = "gitops", settings: DiffSettings | None = None,
            only: Only | None = None, desired: dict[str, DesiredEntry] | None = None,
            cluster: str | None = None) -> list[ObjectDiff]:
    """Each desired object against the live one at ``moment`` (and the orphans of
    ``instance``, else of ``settings.instance``), sorted by key; only ``resource`` (or
    what ``only`` keeps) when given; with the config's ignore rules and managers.
    ``desired``: the desired state at ``moment``, when the caller has read it already.
    ``cluster``: the live objects of that cluster only (its origin); a log of many clusters
    is diffed one cluster at a time, never with their objects folded into one."""
    return [v.diff for v in views_at(log, moment, resource=resource, instance=instance, field_manager=field_manager,
                                     settings=settings, views=False, only=only, desired=desired, cluster=cluster)]


@cyclic_gc_paused()  # see status_at
def views_at(log: EventLog, moment: Moment, *, resource: str | None = None, instance: str | None = None,
             field_manager: str = "gitops", settings: DiffSettings | None = None,
             views: bool = True, only: Only | None = None,
             desired: dict[str, DesiredEntry] | None = None, cluster: str | None = None) -> list[ObjectView]:
    """``diff_at`` with both sides of each differing object (``views``) to show as text."""
    settings = settings or DiffSettings()
    schemas = load_schemas(log, cluster)
    only = only or Only()
    if resource is not None:
        only = Only(resource, only.namespace, only.selector)
    wanted, actual = _states(log, moment, only, desired, cluster)
    diffs = diff_states(wanted, actual, instance=instance or settings.instance, field_manager=field_manager,
                        ignore_managers=settings.ignore_managers, ignore=settings.ignore, schemas=schemas)
    # an orphan is what the log desired once: one labelled as this instance's by someone else is not
    diffs = [d for d in diffs if d.status != Status.ORPHAN or ever_desired(log, d.key, **_until(moment))]
    out = []
    for d in diffs:
        left = right = None
        if views and d.status.value != "in-sync":
            left, right = diff_view(wanted.get(d.key), actual.get(d.key), field_manager=field_manager,
                                    ignore_managers=settings.ignore_managers, ignore=settings.ignore,
                                    schemas=schemas)
        out.append(ObjectView(d, left, right))
    return out


@dataclass(frozen=True)
class StatusView:
    """What ``gitops status`` shows: the commit in force at the moment (the last valid one;
    ``head`` the last one read, when it is not that one, with its error count), each
    object's diff with the commit and file that desire it, the counts, and the warnings
    Git's source recorded up to then (what it left unread: a Helm chart, say); when the head
    is invalid, ``errors``: the errors its source recorded since the last valid commit (each
    is recorded once, at the commit that brought it)."""

    commit: str | None
    head: GitCommit | None
    objects: list[tuple[ObjectDiff, DesiredEntry | None]]
    warnings: list[SourceErrorEvent] = field(default_factory=list)
    health: dict[str, HealthChangedPayload] = field(default_factory=dict)  # the last judgement of each object
    errors: list[SourceErrorEvent] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        got = Counter(d.status.value for d, _ in self.objects)
        return {s.value: got.get(s.value, 0) for s in Status}

    def health_of(self, key: str) -> str:
        """The object's health as last judged; "Unknown" when no pass has judged it."""
        judged = self.health.get(key)
        return judged.status if judged is not None else "Unknown"

    @property
    def health_counts(self) -> dict[str, int]:
        got = Counter(self.health_of(d.key) for d, e in self.objects if e is not None)
        return {s.value: got.get(s.value, 0) for s in HealthStatus if got.get(s.value)}

    @property
    def in_sync(self) -> bool:
        return all(d.status == Status.IN_SYNC for d, _ in self.objects)

    @property
    def healthy(self) -> bool:
        """Every desired object judged Healthy (an object never judged is not)."""
        return all(self.health_of(d.key) == "Healthy" for d, e in self.objects if e is not None)


def _until(moment: Moment) -> dict[str, Any]:
    """The ``read`` filters of the events up to ``moment``."""
    if moment.commit_seq is not None:
        return {"until_seq": moment.commit_seq}
    return {"end": moment.at + timedelta(microseconds=1), "time_axis": moment.axis}


@cyclic_gc_paused()  # both states and their diff: many acyclic objects held at once (gitops.model.bulk)
def status_at(log: EventLog, moment: Moment, *, only: Only | None = None, instance: str | None = None,
              field_manager: str = "gitops", settings: DiffSettings | None = None,
              cluster: str | None = None, source: str | None = None) -> StatusView:
    """The status at ``moment`` (see ``StatusView``); of one cluster when ``cluster`` (an origin)
    is given; against one Git source's desired state and commits when ``source`` is."""
    entries = desired_at(log, moment, origin=source)
    diffs = diff_at(log, moment, instance=instance, field_manager=field_manager, settings=settings, only=only,
                    desired=entries, cluster=cluster)
    head, commit, valid_seq = _last_commits(log, origin=source, **_until(moment))
    invalid = head.payload.origin if head is not None and head.payload.sha != commit else None  # its source
    warnings: list[SourceErrorEvent] = []
    errors: list[SourceErrorEvent] = []  # the invalid head's: its source's, since the last valid commit
    for r in log.read(types=["source.error"], **_until(moment)):
        if not isinstance(r.event, SourceErrorEvent):
            continue
        if r.event.payload.severity == "warning":
            warnings.append(r.event)
        elif invalid is not None and r.seq > valid_seq and r.event.payload.origin == invalid:
            errors.append(r.event)
    health = {str(r.event.resource): r.event.payload for r in log.read(types=["health.changed"], **_until(moment))
              if isinstance(r.event, HealthChanged) and r.event.resource
              and (cluster is None or r.event.payload.cluster in (cluster, ""))}
    return StatusView(commit, head if head is not None and head.payload.sha != commit else None,
                      [(d, entries.get(d.key)) for d in diffs], warnings, health, errors)


def _last_commits(log: EventLog, *, origin: str | None = None,
                  **until: Any) -> tuple[GitCommit | None, str | None, int]:
    """The newest commit read (of Git's source ``origin`` when given), and the last valid
    one's sha and seq (None and 0 when there is none); ``until``: the read filters that
    bound the history asked."""
    head: GitCommit | None = None
    for r in log.read(types=["git.commit"], descending=True, **until):
        if not isinstance(r.event, GitCommit) or (origin is not None and r.event.payload.origin != origin):
            continue
        head = head or r.event
        if r.event.payload.valid:
            return head, r.event.payload.sha, r.seq
    return head, None, 0


def head_errors(log: EventLog, origin: str) -> list[SourceErrorEvent]:
    """The errors that make the newest commit Git's source ``origin`` read invalid: those it
    recorded since its last valid commit; none when the newest is valid."""
    head, _, valid_seq = _last_commits(log, origin=origin)
    if head is None or head.payload.valid:
        return []
    return [r.event for r in log.read(types=["source.error"], since_seq=valid_seq)
            if isinstance(r.event, SourceErrorEvent) and r.event.payload.origin == origin
            and r.event.payload.severity == "error"]
