"""The one thread that owns the cluster source's database connection: it takes what the
kind watchers saw in batches, joins each change to the audit record of the request that
caused it (``gitops.sources.cluster.audit``: waiting up to ``audit_wait`` for the records'
feeds to catch up), builds the events and appends them with the watchers' resourceVersion
checkpoints in one transaction.

After a batch, the log's current state of each object in it is the batch's last version of
it: what the watch saw last. The log drops an event whose id it holds, and another writer
may have recorded this version already (a one-shot ``gitops reconcile`` or ``ingest
cluster`` beside this watch, a pass's copy left after its wait) before this writer, which
holds each change for its audit record, appended an older one (an edit made just before, the
deletion of the incarnation a recreate replaced). The older one then became current, the
version the cluster holds was dropped as known, and the log said the object was deleted or
drifted until it changed again: every pass re-applied it. So a last version the log holds
but does not count as current is recorded again, under an id of its own (the same for any
writer that corrects the same entry) and marked ``observed_late``.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gitops.events.models import (
    AnyEvent,
    Attribution,
    AuditPayload,
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
from gitops.model.control_plane import is_control_plane_user
from gitops.model.times import utc_now
from gitops.sources.cluster.api import RECONCILER_AGENT
from gitops.sources.cluster.audit import AuditFeed, AuditIndex, AuditRecord, Join
from gitops.sources.cluster.config import ClusterSourceConfig
from gitops.sources.cluster.port import Clock
from gitops.sources.cluster.watcher import Change, Item, Outage, Progress
from gitops.store import Checkpoint, EventLog

__all__ = ["Writer"]


@dataclass
class _Pending:
    events: list[AnyEvent] = field(default_factory=list)
    checkpoints: dict[str, str] = field(default_factory=dict)
    folded: dict[str, str] = field(default_factory=dict)  # event id -> the audit record it keeps (taken)


class Writer:
    """Turns changes into events and appends them, batched, with their checkpoints."""

    def __init__(self, log: EventLog, *, origin: str, config: ClusterSourceConfig,
                 index: AuditIndex | None = None, feeds: Sequence[AuditFeed] = (), clock: Clock = utc_now) -> None:
        self.log = log
        self.clock = clock
        self.origin = origin
        self.config = config
        self.index = index
        self.feeds = tuple(feeds)  # where the index's records come from: the audit log file, the webhook
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
        if at is not None or c.late:
            self._catch_up()  # what the audit records hold by now, before any record is judged
        if c.late and c.previous_rv and c.resource_version and not deleted:
            writes = self.index.writes_between(c.key, c.previous_rv, c.resource_version)
            users = sorted({w.user for w in writes})
            if len(users) > 1:  # one version holds the changes of several users: the last one made not all of it
                return Join(None, tuple(users), squashed=True)
        # the field manager the object says made the change, and when: a request that wrote as another,
        # or was received a second or more after that, did not
        manager = c.writer[0] if c.writer is not None and not deleted else None
        written = c.written_at if not deleted else None
        join = self.index.find(c.key, c.resource_version, deleted=deleted, uid=c.uid, at=at, manager=manager,
                               written=written)
        if join.record is None and not join.candidates and self.feeds and at is not None:
            deadline = c.observed_at.timestamp() + self.config.audit_wait + max(f.delay for f in self.feeds)
            while join.record is None and not join.candidates:
                remaining = deadline - self.clock().timestamp()
                if remaining <= 0:
                    break
                self.index.wait(min(0.02, remaining))
                self._catch_up()
                join = self.index.find(c.key, c.resource_version, deleted=deleted, uid=c.uid, at=at,
                                       manager=manager, written=written)
        return join

    def _catch_up(self) -> None:
        for feed in self.feeds:
            feed.catch_up()

    def _fold(self, rec: AuditRecord | None) -> AuditPayload | None:
        """The joined record, when a feed holds it back unwritten: kept in the change's
        event instead of an ``audit`` event of its own (``AuditTailer.take``)."""
        if rec is not None:
            for feed in self.feeds:
                taken = feed.take(rec.audit_id)
                if taken is not None:
                    return taken
        return None

    def _event(self, c: Change, pending: _Pending) -> AnyEvent:
        join = self._audit(c)
        rec = join.record
        folded = self._fold(rec)
        event = self._build(c, join, folded)
        if folded is not None:
            pending.folded[event.id] = folded.audit_id
        return event

    def _build(self, c: Change, join: Join, folded: AuditPayload | None) -> AnyEvent:
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
                                              candidates=candidates, observed_late=c.late,
                                              control_plane=control_plane, audit=folded),
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
                        **({"audit": folded} if folded is not None else {}),
                        **({"digest_scheme": c.digest_scheme} if c.digest_scheme else {})},
        })

    def _item(self, item: Item, pending: _Pending) -> None:
        if isinstance(item, Change):
            pending.events.append(self._event(item, pending))
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

    def _again(self, pending: _Pending) -> None:
        """Record again the last version of each object in the batch that the log holds but
        does not count as current (see the module)."""
        versions: dict[str, list[int]] = {}  # where each object's versions are in the batch, in order
        for i, e in enumerate(pending.events):
            if isinstance(e, ClusterObserved | ClusterDeleted) and e.resource is not None:
                versions.setdefault(e.resource, []).append(i)
        ids = [pending.events[i].id for found in versions.values() for i in found]
        known = self.log.known_ids(ids) if ids else set()
        stale = [k for k, found in versions.items() if pending.events[found[-1]].id in known]
        if not stale:
            return
        current = self.log.current_events("actual", origin=self.origin, resources=stale)
        for key in stale:
            *before, last = versions[key]
            e = pending.events[last]
            now = current.get(key)
            if now is not None and now[1:] == (e.type, e.revision) and \
                    all(pending.events[i].id in known for i in before):
                continue  # the log's own copy (or a copy recorded again) is current, and stays so
            again = e.model_copy(update={
                "id": event_id(e.type, self.origin, key, e.revision or "", "again", now[0] if now else ""),
                "payload": e.payload.model_copy(update={"observed_late": True})})
            pending.events[last] = again
            if e.id in pending.folded:
                pending.folded[again.id] = pending.folded.pop(e.id)

    def flush(self, pending: _Pending) -> None:
        if not pending.events and not pending.checkpoints:
            return
        self._again(pending)
        cps = [Checkpoint(self.checkpoint_name(k), {"resourceVersion": rv}) for k, rv in pending.checkpoints.items()]
        appended = self.log.append(pending.events, checkpoint=cps)
        self.appended += len(appended)
        if pending.folded:  # records in events not written (there already) are left to be written on their own
            written = {a.event.id for a in appended}
            for feed in self.feeds:
                feed.settle([a for e, a in pending.folded.items() if e in written])
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
