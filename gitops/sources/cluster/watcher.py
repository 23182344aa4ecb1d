"""List + watch per kind, the informer way, into the event log.

One ``KindWatcher`` thread per kind lists, then watches from the list's resourceVersion
(with bookmarks), and turns what it sees into ``Change`` values: it knows what the log
last saw of each object, so updates that change nothing that matters are dropped here.
On 410 Gone it lists again and reports what changed meanwhile, deletions included, as
synthetic changes; when the server cannot be reached it retries with capped exponential
backoff and jitter.

One ``Writer`` thread owns the database connection: it takes changes in batches, joins
each to the audit record of the request that caused it (waiting up to ``audit_wait``
for the audit log to catch up), builds the events and appends them with the kinds'
resourceVersion checkpoints in one transaction.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gitops.events.models import (
    AnyEvent,
    Attribution,
    ClusterDeleted,
    ClusterDeletedPayload,
    ClusterObserved,
    EventSource,
    SourceErrorEvent,
    SourceErrorPayload,
    SourceOutageEnded,
    SourceOutagePayload,
    SourceOutageStarted,
    event_id,
)
from gitops.events.redaction import NO_KEY, Redaction, redact, scheme_field
from gitops.model.control_plane import is_control_plane_user
from gitops.model.errors import ClusterUnavailableError
from gitops.model.keys import ResourceKey, canonical_group, format_key
from gitops.model.times import utc_now
from gitops.sources.cluster.attribution import Managers, candidates, fingerprint, managers, writer
from gitops.sources.cluster.audit import AuditIndex, AuditTailer, Join
from gitops.sources.cluster.client import RECONCILER_AGENT, AccessDenied, KindInfo, ResourceVersionGone, WatchEvent
from gitops.sources.cluster.config import ClusterSourceConfig
from gitops.sources.cluster.port import Backoff, Clock, ClusterPort
from gitops.store import Checkpoint, EventLog

__all__ = ["Change", "KindWatcher", "Seen", "Writer"]


@dataclass(frozen=True)
class Seen:
    """What the log last recorded of an object."""

    fingerprint: str
    managers: Managers
    uid: str | None = None
    resource_version: str | None = None


@dataclass(frozen=True)
class Change:
    key: str
    kind: str  # Kind[.group], for the checkpoint
    resource_version: str | None
    observed_at: datetime
    manifest: dict[str, Any] | None = None  # None for deletions
    change: Literal["added", "modified", "relisted", "deleted"] = "modified"
    writer: tuple[str, str] | None = None  # the field manager that made it, when managedFields tell
    synthetic: bool = False
    uid: str | None = None
    candidates: tuple[str, ...] = ()  # managers that may have made it, when managedFields cannot tell
    late: bool = False  # seen after the fact (a list, a watch resumed): it happened before observed_at
    previous_rv: str | None = None  # the resourceVersion of the version of it the log held before
    digest_scheme: str | None = None  # the payload's, when its secret values are digested under a key


@dataclass(frozen=True)
class Progress:
    """A kind's new resourceVersion with nothing to record (bookmark, noise)."""

    kind: str
    resource_version: str


@dataclass(frozen=True)
class Outage:
    started: bool
    reason: str
    at: datetime


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    kind: str


Item = Change | Progress | Outage | Problem


class OutageTracker:
    """One outage for the whole cluster, however many watchers notice it."""

    def __init__(self, out: Callable[[Item], None], *, clock: Clock = utc_now) -> None:
        self._down = False
        self._lock = threading.Lock()
        self._out = out
        self._clock = clock

    @property
    def down(self) -> bool:
        """Whether the API server is unreachable now (as the last watcher to try found it)."""
        return self._down

    def failed(self, reason: str) -> None:
        with self._lock:
            if not self._down:
                self._down = True
                self._out(Outage(True, reason, self._clock()))

    def recovered(self) -> None:
        with self._lock:
            if self._down:
                self._down = False
                self._out(Outage(False, "the API server answers again", self._clock()))


def object_key(obj: dict[str, Any], kind: KindInfo) -> str:
    meta = obj.get("metadata") or {}
    namespace = str(meta.get("namespace") or "") if kind.namespaced else ""
    return format_key(ResourceKey(canonical_group(kind.group, kind.kind), kind.kind, namespace,
                                  str(meta.get("name", ""))))


class KindWatcher:
    """Keeps the log's record of one kind current."""

    def __init__(self, client: ClusterPort, kind: KindInfo, *, config: ClusterSourceConfig,
                 known: dict[str, Seen], resource_version: str | None, out: Callable[[Item], None],
                 outages: OutageTracker, redaction: Redaction = NO_KEY, clock: Clock = utc_now) -> None:
        self.client = client
        self.clock = clock
        self.kind = kind
        self.config = config
        self.known = known
        self.rv = resource_version
        self.out = out
        self.outages = outages
        self.redaction = redaction
        self.noisy = kind.name in config.noisy_kinds
        # set once the kind is listed or its watch resumed: from then on a change to it is
        # seen as it happens (an object made before is a "relisted" one)
        self.synced = threading.Event()
        self.forbidden = False  # the server refused to list or watch it (RBAC)
        self.behind: str | None = None  # the collection's resourceVersion when a resumed watch began
        self.on_forbidden: Callable[[], None] | None = None

    def _observe(self, obj: dict[str, Any], change: Literal["added", "modified", "relisted"],
                 now: datetime, *, late: bool = False) -> Change | None:
        manifest = redact(obj, self.redaction)
        key = object_key(obj, self.kind)
        fp = fingerprint(manifest, noisy=self.noisy)
        before = self.known.get(key)
        after = managers(manifest)
        meta = obj.get("metadata") or {}
        rv, uid = str(meta.get("resourceVersion", "")), meta.get("uid")
        if before is not None and before.fingerprint == fp:
            return None  # nothing that matters changed
        if before is not None and rv and before.resource_version == rv and before.uid == uid:
            # the version the log holds, seen again: what differs is how it is stored (the digest
            # key changed), not the object; the next change of it is recorded under the new key
            return None
        if before is not None and before.uid and uid and before.uid != uid:
            # deleted and made again under the same name while nothing watched: two objects
            self.out(Change(key, self.kind.name, rv, now, None, "deleted", None, synthetic=True, uid=before.uid,
                            late=True))
            before = None
        self.known[key] = Seen(fp, after, uid, rv)
        previous = before.managers if before else None
        return Change(key, self.kind.name, rv, now, manifest, change, writer(previous, after), uid=uid,
                      candidates=tuple(candidates(previous, after)), late=late or change == "relisted",
                      digest_scheme=scheme_field(obj, self.redaction).get("digest_scheme"),
                      previous_rv=before.resource_version if before is not None else None)

    def list_pass(self) -> int:
        """List the kind, report what differs from the log (deletions too); returns how many."""
        items, rv = self.client.list(self.kind)
        self.outages.recovered()
        now = self.clock()
        seen: set[str] = set()
        n = 0
        for obj in items:
            seen.add(object_key(obj, self.kind))
            c = self._observe(obj, "relisted", now)
            if c is not None:
                self.out(c)
                n += 1
        for key in sorted(set(self.known) - seen):
            gone = self.known.pop(key)
            # gone while nothing watched: who deleted it, and when, is not known
            self.out(Change(key, self.kind.name, rv, now, None, "deleted", None, synthetic=True, uid=gone.uid,
                            late=True))
            n += 1
        self.out(Progress(self.kind.name, rv))
        self.rv = rv
        self.synced.set()
        return n

    def handle(self, ev: WatchEvent) -> None:
        if ev.type == "CONNECTED":
            self.outages.recovered()
            self.synced.set()
            return
        rv = str((ev.object.get("metadata") or {}).get("resourceVersion", ""))
        if ev.type == "BOOKMARK":
            self.rv = rv
            self.out(Progress(self.kind.name, rv))
            return
        now = self.clock()
        late = self._late(rv)
        if ev.type == "DELETED":
            key = object_key(ev.object, self.kind)
            self.known.pop(key, None)
            # nothing of the object is recorded, only who deleted it where the audit log tells:
            # a delete leaves no managedFields entry, so its last writer is no evidence
            self.out(Change(key, self.kind.name, rv, now, None, "deleted", None,
                            uid=(ev.object.get("metadata") or {}).get("uid"), late=late))
        else:
            c = self._observe(ev.object, "added" if ev.type == "ADDED" else "modified", now, late=late)
            self.out(c if c is not None else Progress(self.kind.name, rv))
        self.rv = rv

    def _late(self, rv: str) -> bool:
        """Whether a watch event replays a change made before the watch (re)connected: its
        resourceVersion is at most the collection's when it did. (Resource versions are
        compared only when both are integers, as etcd's are; otherwise no event is late.)"""
        if self.behind is None:
            return False
        try:
            if int(rv) <= int(self.behind):
                return True
        except ValueError:
            pass
        self.behind = None  # caught up: the rest comes as it happens
        return False

    def run(self, stop: threading.Event) -> None:
        """List when there is no resourceVersion to resume from, then watch; relist on 410;
        back off and retry while the server is unreachable. Returns when ``stop`` is set."""
        backoff = Backoff(self.config.backoff_initial, self.config.backoff_max)
        resuming = self.rv is not None  # from a checkpoint: what happened since is replayed, late
        while not stop.is_set():
            try:
                if self.rv is None:
                    self.list_pass()
                    resuming = False
                if resuming:
                    self.behind = self.client.collection_version(self.kind)
                    resuming = False
                for ev in self.client.watch(self.kind, self.rv or "0"):
                    self.handle(ev)
                    if stop.is_set():
                        return
                backoff.reset()
            except ResourceVersionGone:
                self.rv = None  # relist: whatever happened meanwhile is found by comparing
            except AccessDenied as e:
                self.out(Problem("kind-forbidden", str(e), self.kind.name))
                self.forbidden = True
                self.synced.set()  # nothing more will come of this kind: do not keep anyone waiting
                if self.on_forbidden is not None:
                    self.on_forbidden()
                return  # RBAC will not change by retrying; the error is on record
            except ClusterUnavailableError as e:
                if stop.is_set():
                    return
                resuming = True  # what happens during the outage is seen when it ends
                self.outages.failed(str(e))
                stop.wait(backoff.delay())


@dataclass
class _Pending:
    events: list[AnyEvent] = field(default_factory=list)
    checkpoints: dict[str, str] = field(default_factory=dict)


class Writer:
    """Turns changes into events and appends them, batched, with their checkpoints."""

    def __init__(self, log: EventLog, *, origin: str, config: ClusterSourceConfig,
                 index: AuditIndex | None = None, tailer: AuditTailer | None = None, clock: Clock = utc_now) -> None:
        self.log = log
        self.clock = clock
        self.origin = origin
        self.config = config
        self.index = index
        self.tailer = tailer
        self.queue: queue.Queue[Item | None] = queue.Queue()
        self.appended = 0
        self.error: Exception | None = None
        self.on_error: Callable[[Exception], None] | None = None
        self.on_appended: Callable[[list[AnyEvent]], None] | None = None  # told of each batch written

    def put(self, item: Item | None) -> None:
        """Queue ``item``; ``None`` tells ``run`` to finish after what is queued before it."""
        self.queue.put(item)

    def checkpoint_name(self, kind: str) -> str:
        return f"{self.origin}:{kind}"

    def _audit(self, c: Change) -> Join:
        """The audit record of ``c`` (``AuditIndex.find``), waiting up to ``audit_wait`` for
        the audit log to catch up with the change. A change found by a list (the time it
        happened is not known) is joined by its resourceVersion only."""
        if self.index is None:
            return Join(None)
        deleted = c.manifest is None
        at = None if c.synthetic or c.change == "relisted" else c.observed_at
        if self.tailer is not None and (at is not None or c.late):
            self.tailer.catch_up()  # what the audit log holds by now, before any record is judged
        if c.late and c.previous_rv and c.resource_version and not deleted:
            writes = self.index.writes_between(c.key, c.previous_rv, c.resource_version)
            users = sorted({w.user for w in writes})
            if len(users) > 1:  # one version holds the changes of several users: the last one made not all of it
                return Join(None, tuple(users), squashed=True)
        join = self.index.find(c.key, c.resource_version, deleted=deleted, uid=c.uid, at=at)
        if join.record is None and not join.candidates and self.tailer is not None and at is not None:
            deadline = c.observed_at.timestamp() + self.config.audit_wait
            while join.record is None and not join.candidates:
                remaining = deadline - self.clock().timestamp()
                if remaining <= 0:
                    break
                self.index.wait(min(0.02, remaining))
                self.tailer.catch_up()
                join = self.index.find(c.key, c.resource_version, deleted=deleted, uid=c.uid, at=at)
        return join

    def _event(self, c: Change) -> AnyEvent:
        join = self._audit(c)
        rec = join.record
        manager, operation = c.writer or (None, None)
        candidates: list[str] = []
        if manager is not None and manager == self.config.field_manager:
            attribution, actor = Attribution.RECONCILER, manager
        elif rec is not None and (rec.user_agent or "").startswith(RECONCILER_AGENT):
            # the audit record of this exact request: the reconciler's client sent it (a prune,
            # which leaves no managedFields); named by the user it authenticated as
            attribution, actor = Attribution.RECONCILER, rec.user
        elif rec is not None:
            attribution, actor = Attribution.AUDIT, rec.user
        elif manager is not None and not join.squashed:
            attribution, actor = Attribution.MANAGED_FIELDS, manager
        else:  # no evidence about this exact change: nobody is named
            attribution, actor = Attribution.UNKNOWN, None
            # the users the audit log names (a squashed version: who wrote it since), else who it may have been
            candidates = sorted(join.candidates) if join.squashed else sorted({*join.candidates, *c.candidates})
        audit_id = rec.audit_id if rec is not None else None
        via = rec.via if rec is not None and attribution == Attribution.AUDIT else None
        # the audit record's time is when the change was made; when the watch saw it is kept too
        made_at = rec.at if rec is not None and attribution == Attribution.AUDIT else None
        effective_at, observed_at = (made_at, c.observed_at) if made_at is not None else (c.observed_at, None)
        # the control plane's own write: named by the audit record of it when there is one
        # (its user), else by the field manager that made it
        control_plane = attribution != Attribution.RECONCILER and (
            is_control_plane_user(rec.user, self.config.control_plane_users) if rec is not None
            else all(is_control_plane_user(u, self.config.control_plane_users) for u in join.candidates)
            if join.squashed else manager is not None and manager in self.config.control_plane_managers)
        if c.manifest is None:
            marker = f"list:{c.resource_version}:{c.uid or ''}" if c.synthetic else str(c.resource_version)
            return ClusterDeleted(
                id=event_id("cluster.deleted", self.origin, c.key, marker), source=EventSource.CLUSTER,
                resource=c.key, actor=actor, effective_at=effective_at, revision=c.resource_version,
                payload=ClusterDeletedPayload(origin=self.origin, resource_version=c.resource_version,
                                              synthetic=c.synthetic, uid=c.uid, attribution=attribution,
                                              audit_id=audit_id, via=via, observed_at=observed_at,
                                              candidates=candidates,
                                              observed_late=c.late, control_plane=control_plane),
            )
        assert c.change != "deleted"
        # One validation call for envelope and payload: the hot path of a busy cluster.
        return ClusterObserved.model_validate({
            "id": event_id("cluster.observed", self.origin, c.key, str(c.resource_version),
                           *([c.digest_scheme] if c.digest_scheme else [])),
            "source": EventSource.CLUSTER, "resource": c.key, "actor": actor, "effective_at": effective_at,
            "revision": c.resource_version,
            "payload": {"origin": self.origin, "manifest": c.manifest, "resource_version": str(c.resource_version),
                        "change": c.change, "manager": manager, "operation": operation,
                        "attribution": attribution, "audit_id": audit_id, "candidates": candidates,
                        "observed_late": c.late, "control_plane": control_plane, **({"via": via} if via else {}),
                        **({"observed_at": observed_at} if observed_at is not None else {}),
                        **({"digest_scheme": c.digest_scheme} if c.digest_scheme else {})},
        })

    def _item(self, item: Item, pending: _Pending) -> None:
        if isinstance(item, Change):
            pending.events.append(self._event(item))
            # A watch event's resourceVersion is a position in the kind's history. A listed
            # object's is not (a list comes in name order): the list's own position counts,
            # once the whole list is recorded (its Progress); a crash before that lists again.
            if item.resource_version and item.change != "relisted" and not item.synthetic:
                pending.checkpoints[item.kind] = item.resource_version
        elif isinstance(item, Progress):
            pending.checkpoints[item.kind] = item.resource_version
        elif isinstance(item, Outage):
            cls = SourceOutageStarted if item.started else SourceOutageEnded
            pending.events.append(cls(
                id=event_id(cls.model_fields["type"].default, self.origin, item.at.isoformat()),
                source=EventSource.CLUSTER, effective_at=item.at,
                payload=SourceOutagePayload(target=self.origin, reason=item.reason, origin=self.origin),
            ))
        else:
            pending.events.append(SourceErrorEvent(
                id=event_id("source.error", self.origin, item.code, item.kind, item.message),
                source=EventSource.CLUSTER,
                effective_at=self.clock(),
                payload=SourceErrorPayload(code=item.code, message=item.message, origin=self.origin),
            ))

    def flush(self, pending: _Pending) -> None:
        if not pending.events and not pending.checkpoints:
            return
        cps = [Checkpoint(self.checkpoint_name(k), {"resourceVersion": rv}) for k, rv in pending.checkpoints.items()]
        self.appended += len(self.log.append(pending.events, checkpoint=cps))
        if self.on_appended is not None and pending.events:
            self.on_appended(pending.events)

    def _batch(self, first: Item | None) -> bool:
        """Write ``first`` and whatever else is queued now, in one transaction (up to 1000
        events); False once the end marker (None) was met."""
        if first is None:
            return False
        pending = _Pending()
        self._item(first, pending)
        alive = True
        while len(pending.events) < 1000:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                alive = False
                break
            self._item(item, pending)
        self.flush(pending)
        return alive

    def drain(self) -> None:
        """Write everything queued so far (one-shot use, no thread)."""
        self.queue.put(None)
        while self._batch(self.queue.get()):
            pass

    def run(self) -> None:
        """Block on the queue and write in batches until ``None`` is queued. If writing
        fails (the database locked past its timeout, the disk full), the error is kept in
        ``error`` and ``on_error`` is told, so that the process stops rather than watching on
        without recording."""
        try:
            while self._batch(self.queue.get()):
                pass
        except Exception as e:  # noqa: BLE001 - handed to the owner, which stops and reports it
            self.error = e
            if self.on_error is not None:
                self.on_error(e)
