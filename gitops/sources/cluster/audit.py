"""The Kubernetes audit records: who really made a change.

``AuditIndex`` holds recent write requests by (object, resourceVersion) so the cluster
watcher can join each change it sees to the request that caused it. Records reach it
through an ``AuditFeed``: the audit log file (``gitops.sources.cluster.audit_file``) or
the audit webhook (``gitops.sources.cluster.audit_webhook``), both read by
``gitops.sources.cluster.audit_records``.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from gitops.events.payloads import AuditPayload

__all__ = ["AuditFeed", "AuditIndex", "AuditRecord", "Join", "field_manager"]

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class AuditRecord:
    audit_id: str
    key: str
    verb: str
    user: str
    resource_version: str | None  # of the response object: None for deletes and Metadata-level records
    at: datetime
    uid: str | None = None  # of the object, where the record says it (objectRef, response, Status details)
    user_agent: str | None = None
    via: str | None = None  # the user that authenticated, when it acted as ``user`` (kubectl --as)
    received: datetime | None = None  # requestReceivedTimestamp: ``at`` is when the request completed
    code: int | None = None  # the response's HTTP status
    dry_run: bool = False  # a server-side dry run: nothing was written
    request_uri: str | None = None

    @property
    def changed_nothing(self) -> bool:
        """A dry run, or a request refused or failed (a status of 400 or more): no change
        is joined to it, its ``audit`` event says what it was."""
        return self.dry_run or (self.code is not None and self.code >= 400)

    @functools.cached_property
    def manager(self) -> str | None:
        """The field manager the request wrote as (``field_manager``): asked at each look for
        a change's record, so worked out once."""
        return field_manager(self.request_uri, self.user_agent)


def field_manager(request_uri: str | None, user_agent: str | None) -> str | None:
    """The field manager a write request wrote as, as the API server names it: its
    ``fieldManager`` query parameter (kubectl sends one: ``kubectl-patch``), else its user
    agent up to the first ``/``, printable characters only, at most 128; None when the
    record says neither."""
    given = parse_qs(urlsplit(request_uri or "").query).get("fieldManager")
    if given and given[0]:
        return given[0]
    if user_agent is None:
        return None
    return "".join(c for c in user_agent.split("/", 1)[0] if c.isprintable())[:128] or None


@dataclass(frozen=True)
class Join:
    """The audit record of one change, or None and the users it could have been."""

    record: AuditRecord | None
    candidates: tuple[str, ...] = ()
    squashed: bool = False  # a version seen late that holds the writes of several users: none made all of it


DELETE_VERBS = frozenset({"delete", "deletecollection"})
_SECOND = timedelta(seconds=1)  # managedFields times are to the second
JOIN_WINDOW = timedelta(seconds=2)
"""How close in time a record without a resourceVersion must be to the change it may explain."""


class AuditFeed(Protocol):
    """Where the index's records come from; the watcher asks it to catch up before it judges
    a change, and again while it waits for the record of one, ``delay`` seconds longer
    than ``audit_wait`` (how long the feed may hold a record back: a webhook's batches)."""

    delay: float

    def catch_up(self) -> int:
        """Bring what has arrived by now into the index; returns how many records came."""

    def take(self, audit_id: str) -> AuditPayload | None:
        """The record ``audit_id`` when the feed holds it back unwritten, for the change it
        explains to keep in its own event (then ``settle``); None when it is written or
        will be anyway."""

    def settle(self, audit_ids: Iterable[str]) -> None:
        """The records ``audit_ids`` that were taken are written, in their changes' events."""


class AuditIndex:
    """Recent write requests, for joining each change the watch sees to the request that
    made it. Evidence, strongest first, and nothing weaker:

    1. the change's resourceVersion is the one the request's response carried (a write that
       changed nothing answers with the version there already: a request received after
       another one carrying that version had completed did not make it; when more than one
       may have, nobody is named; a delete that finalizers hold answers with the object
       marked for deletion);
    2. for a delete, the request's object uid (its response or Status details, or the list
       a ``deletecollection`` answers with) is the uid of the object deleted;
    3. for a record with neither (audit level ``Metadata``, as policies set for Secrets): a
       request of the right verb on that object within ``JOIN_WINDOW`` of the change, and
       only when exactly one such record is there and no other change took it.

    Otherwise there is no record: the change is not credited to anyone from the audit log,
    and the users of the records that could not be told apart are the candidates. Memory is
    bounded: the oldest records go first beyond ``capacity``."""

    def __init__(self, capacity: int = 100_000, *, window: timedelta = JOIN_WINDOW) -> None:
        self._by_rv: OrderedDict[tuple[str, str], list[AuditRecord]] = OrderedDict()  # in the order read
        self._rvs: dict[str, set[str]] = {}  # key -> the resourceVersions in _by_rv of it
        # deletes (joined by uid), and records without a resourceVersion (joined by time)
        self._by_key: OrderedDict[str, list[AuditRecord]] = OrderedDict()
        self._size = 0
        # records by (audit id, object): a deletecollection is one request and a record per object
        self._used: OrderedDict[tuple[str, str], None] = OrderedDict()  # records already joined by uid or time
        self._ids: OrderedDict[tuple[str, str], None] = OrderedDict()  # records held: one that comes twice is kept once
        self._capacity = capacity
        self._window = window
        self._cond = threading.Condition()

    def add(self, rec: AuditRecord) -> None:
        if rec.changed_nothing:
            return
        with self._cond:
            if (rec.audit_id, rec.key) in self._ids:  # the same request again (two feeds, a retried webhook batch)
                return
            self._ids[(rec.audit_id, rec.key)] = None
            while len(self._ids) > 2 * self._capacity:
                self._ids.popitem(last=False)
            # a delete that finalizers hold answers with the object marked for deletion: that
            # version is the delete's (by its resourceVersion), and so is the deletion (by its uid)
            if rec.resource_version:
                self._by_rv.setdefault((rec.key, rec.resource_version), []).append(rec)
                self._rvs.setdefault(rec.key, set()).add(rec.resource_version)
                while len(self._by_rv) > self._capacity:
                    (key, rv), _ = self._by_rv.popitem(last=False)
                    left = self._rvs.get(key)
                    if left is not None:
                        left.discard(rv)
                        if not left:
                            del self._rvs[key]
            if not rec.resource_version or rec.verb in DELETE_VERBS:
                self._by_key.setdefault(rec.key, []).append(rec)
                self._by_key.move_to_end(rec.key)
                self._size += 1
                while self._size > self._capacity:
                    _, dropped = self._by_key.popitem(last=False)
                    self._size -= len(dropped)
            self._cond.notify_all()

    def find(self, key: str, resource_version: str | None, *, deleted: bool, uid: str | None = None,
             at: datetime | None = None, manager: str | None = None, written: datetime | None = None) -> Join:
        """The record of the change to ``key`` (see the class's docstring). ``at`` is when
        the change was seen; without it only the resourceVersion and the uid count.
        ``manager`` and ``written``: the field manager whose managedFields entry the change
        moved, and the entry's time, when the object says; a request that wrote as another
        manager, or was received a second or more after that time (both the API server's
        clock; the entry's is to the second), did not make it."""
        with self._cond:
            if resource_version and not deleted and (key, resource_version) in self._by_rv:
                makers = _makers(_as(manager, written, self._by_rv[(key, resource_version)]))
                if len(makers) == 1:
                    return Join(makers[0])
                if makers:
                    return Join(None, _users(makers))
            verbs = DELETE_VERBS if deleted else WRITE_VERBS - DELETE_VERBS
            pool = [r for r in self._by_key.get(key, ()) if r.verb in verbs and (r.audit_id, key) not in self._used]
            if not deleted:
                pool = _as(manager, written, pool)
            if uid is not None:
                same = [r for r in pool if r.uid == uid]
                if len(same) == 1:
                    return self._take(same[0])
                if same:
                    return Join(None, _users(same))
                pool = [r for r in pool if r.uid is None]  # a record of another uid is of another object
            if at is None:
                return Join(None)
            near = [r for r in pool if abs(r.at - at) <= self._window]
            if len(near) == 1:
                return self._take(near[0])
            return Join(None, _users(near))

    def writes_between(self, key: str, after: str, upto: str) -> list[AuditRecord]:
        """The write requests to ``key`` whose responses carried a resourceVersion after
        ``after`` and up to ``upto``: every write a version seen late (a list, a resumed
        watch) holds since the version before it. resourceVersions are compared as the
        integers etcd makes them; anything else gives no answer (an empty list)."""
        if not (after.isdigit() and upto.isdigit()):
            return []
        low, high = int(after), int(upto)
        with self._cond:
            return sorted((r for rv in self._rvs.get(key, ()) if rv.isdigit() and low < int(rv) <= high
                           for r in _makers(self._by_rv[(key, rv)])), key=lambda r: int(r.resource_version or 0))

    def _take(self, rec: AuditRecord) -> Join:
        self._used[(rec.audit_id, rec.key)] = None
        while len(self._used) > self._capacity:
            self._used.popitem(last=False)
        return Join(rec)

    def wait(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait(timeout)


def _makers(records: list[AuditRecord]) -> list[AuditRecord]:
    """Of the requests whose responses carried one resourceVersion, those that may have made
    it: not one received after another of them had completed (that request found the
    version there already, and changed nothing). Without the time a request was received
    (records before it was kept), it may have."""
    if len(records) == 1:
        return records
    return [r for r in records if r.received is None or not any(r.received > o.at for o in records if o is not r)]


def _as(manager: str | None, written: datetime | None, records: list[AuditRecord]) -> list[AuditRecord]:
    """Of ``records``, those that may have written as ``manager`` at ``written`` (to the
    second): all, where either is not known."""
    if manager is not None:
        records = [r for r in records if r.manager is None or r.manager == manager]
    if written is not None:
        records = [r for r in records if r.received is None or r.received < written + _SECOND]
    return records


def _users(records: list[AuditRecord]) -> tuple[str, ...]:
    return tuple(sorted({r.user for r in records}))


