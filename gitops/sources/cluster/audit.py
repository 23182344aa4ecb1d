"""The Kubernetes audit log: who really made a change.

``AuditTailer`` follows the API server's audit log file (JSON lines) with watchdog,
survives rotation (the file renamed away and a new one created), and turns each
completed write request into an ``audit`` event: user, groups, user agent, source IPs,
verb, object, and the resourceVersion of the response. Request and response bodies are
never kept: only the resourceVersion is read out of the response.

``AuditIndex`` holds recent write requests by (object, resourceVersion) so the cluster
watcher can join each change it sees to the request that caused it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gitops.events.models import (
    AuditPayload,
    AuditRecorded,
    EventSource,
    SourceErrorEvent,
    SourceErrorPayload,
    event_id,
)
from gitops.model.errors import first_error
from gitops.model.keys import ResourceKey, canonical_group, format_key
from gitops.model.times import utc_now
from gitops.sources.filewatch import FileWatch
from gitops.store import Checkpoint, EventLog

__all__ = ["AuditIndex", "AuditRecord", "AuditTailer", "Join", "KindResolver"]

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
KindResolver = Callable[[str, str], tuple[str, bool] | None]
"""(api group, plural resource) -> (kind, namespaced), from discovery."""


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


@dataclass(frozen=True)
class Join:
    """The audit record of one change, or None and the users it could have been."""

    record: AuditRecord | None
    candidates: tuple[str, ...] = ()
    squashed: bool = False  # a version seen late that holds the writes of several users: none made all of it


DELETE_VERBS = frozenset({"delete", "deletecollection"})
JOIN_WINDOW = timedelta(seconds=2)
"""How close in time a record without a resourceVersion must be to the change it may explain."""


class AuditIndex:
    """Recent write requests, for joining each change the watch sees to the request that
    made it. Evidence, strongest first, and nothing weaker:

    1. the change's resourceVersion is the one the request's response carried;
    2. for a delete, the request's object uid (its response or Status details) is the uid
       of the object deleted;
    3. for a record with neither (audit level ``Metadata``, as policies set for Secrets): a
       request of the right verb on that object within ``JOIN_WINDOW`` of the change, and
       only when exactly one such record is there and no other change took it.

    Otherwise there is no record: the change is not credited to anyone from the audit log,
    and the users of the records that could not be told apart are the candidates. Memory is
    bounded: the oldest records go first beyond ``capacity``."""

    def __init__(self, capacity: int = 100_000, *, window: timedelta = JOIN_WINDOW) -> None:
        self._by_rv: OrderedDict[tuple[str, str], AuditRecord] = OrderedDict()
        self._rvs: dict[str, set[str]] = {}  # key -> the resourceVersions in _by_rv of it
        self._by_key: OrderedDict[str, list[AuditRecord]] = OrderedDict()  # records without a resourceVersion
        self._size = 0
        self._used: OrderedDict[str, None] = OrderedDict()  # audit ids already joined by uid or time
        self._capacity = capacity
        self._window = window
        self._cond = threading.Condition()

    def add(self, rec: AuditRecord) -> None:
        with self._cond:
            if rec.resource_version and rec.verb not in DELETE_VERBS:
                self._by_rv[(rec.key, rec.resource_version)] = rec
                self._rvs.setdefault(rec.key, set()).add(rec.resource_version)
                while len(self._by_rv) > self._capacity:
                    (key, rv), _ = self._by_rv.popitem(last=False)
                    left = self._rvs.get(key)
                    if left is not None:
                        left.discard(rv)
                        if not left:
                            del self._rvs[key]
            else:
                self._by_key.setdefault(rec.key, []).append(rec)
                self._by_key.move_to_end(rec.key)
                self._size += 1
                while self._size > self._capacity:
                    _, dropped = self._by_key.popitem(last=False)
                    self._size -= len(dropped)
            self._cond.notify_all()

    def find(self, key: str, resource_version: str | None, *, deleted: bool, uid: str | None = None,
             at: datetime | None = None) -> Join:
        """The record of the change to ``key`` (see the class's docstring). ``at`` is when
        the change was seen; without it only the resourceVersion and the uid count."""
        with self._cond:
            if resource_version and not deleted and (key, resource_version) in self._by_rv:
                return Join(self._by_rv[(key, resource_version)])
            verbs = DELETE_VERBS if deleted else WRITE_VERBS - DELETE_VERBS
            pool = [r for r in self._by_key.get(key, ()) if r.verb in verbs and r.audit_id not in self._used]
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
            return sorted((self._by_rv[(key, rv)] for rv in self._rvs.get(key, ()) if rv.isdigit()
                           and low < int(rv) <= high), key=lambda r: int(r.resource_version or 0))

    def _take(self, rec: AuditRecord) -> Join:
        self._used[rec.audit_id] = None
        while len(self._used) > self._capacity:
            self._used.popitem(last=False)
        return Join(rec)

    def wait(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait(timeout)


def _users(records: list[AuditRecord]) -> tuple[str, ...]:
    return tuple(sorted({r.user for r in records}))


_CHUNK = 4 << 20  # bytes read and written at a time
_MAX_LINE = 16 << 20


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Ref(_Lenient):
    resource: str = ""
    namespace: str = ""
    name: str = ""
    apiGroup: str = ""
    apiVersion: str | None = None
    uid: str | None = None


class _User(_Lenient):
    username: str = ""
    groups: list[str] = Field(default_factory=list)


class _Status(_Lenient):
    code: int | None = None


class _AuditLine(_Lenient):
    """The fields of an audit event (audit.k8s.io/v1 Event) that are read, with their types:
    a record that does not fit is skipped and reported, never fatal."""

    auditID: str
    verb: str
    requestURI: str = ""
    user: _User = Field(default_factory=_User)
    impersonatedUser: _User | None = None
    objectRef: _Ref | None = None
    responseObject: dict[str, Any] | None = None
    responseStatus: _Status | None = None
    sourceIPs: list[str] = Field(default_factory=list)
    userAgent: str | None = None
    requestReceivedTimestamp: datetime | None = None
    stageTimestamp: datetime | None = None


class AuditTailer:
    """Reads new lines of the audit log into ``audit`` events and the index."""

    def __init__(self, log: EventLog, path: str | Path, *, resolve: KindResolver, index: AuditIndex,
                 origin: str, chunk_bytes: int = _CHUNK) -> None:
        self.log = log
        self.path = Path(path)
        self.resolve = resolve
        self.index = index
        self.origin = origin
        self.checkpoint_name = f"audit:{self.path}"
        self._lock = threading.Lock()
        self._file: Any = None
        self._inode: int | None = None
        self._partial = b""
        self._trigger = threading.Event()
        self._stopped = threading.Event()
        self._watch: FileWatch | None = None
        self.malformed = 0  # records skipped because they could not be read
        self.chunk_bytes = chunk_bytes

    # ------------------------------------------------------------------ reading

    def _open(self) -> bool:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - kept open while tailing
        except FileNotFoundError:
            return False
        stat = os.fstat(f.fileno())
        inode = stat.st_ino
        cp = self.log.checkpoint(self.checkpoint_name)
        if self._inode is None and isinstance(cp, dict) and cp.get("inode") == inode \
                and int(cp.get("offset", 0)) <= stat.st_size:
            f.seek(int(cp.get("offset", 0)))  # resume where the log stopped
        elif self._inode is None and isinstance(cp, dict) and cp.get("inode") is not None:
            # rotated away (or cut) while nothing read it: what came after the offset was not seen
            self.log.append([self._gap(cp, inode, rotated=cp.get("inode") != inode)])
        self._file, self._inode, self._partial = f, inode, b""
        return True

    def _gap(self, cp: dict[str, Any], inode: int, *, rotated: bool) -> SourceErrorEvent:
        how = "rotated away" if rotated else "cut shorter than where reading stopped"
        return SourceErrorEvent(
            id=event_id("source.error", self.origin, "audit-gap", str(self.path), str(cp.get("inode")),
                        str(cp.get("offset")), str(inode)),
            source=EventSource.AUDIT, effective_at=utc_now(),
            payload=SourceErrorPayload(
                code="audit-gap", origin=self.origin, path=str(self.path),
                message=f"{self.path} was {how} while nothing read it: the records after byte {cp.get('offset')} "
                        f"of the earlier file were not read, and changes then are named by no audit record",
                detail={"inode": str(cp.get("inode")), "offset": str(cp.get("offset"))}))

    def catch_up(self) -> int:
        """Read the file to its end now (and the rotated-away file's rest); returns the
        number of audit events appended. Safe to call from any thread."""
        with self._lock:
            n = 0
            if self._file is None and not self._open():
                return 0
            n += self._drain()
            try:
                rotated = os.stat(self.path).st_ino != self._inode
            except FileNotFoundError:
                rotated = False
            if rotated:
                n += self._drain()  # the rest of the old file, then the new one from the top
                self._file.close()
                self._file = None
                if self._open():
                    n += self._drain()
            return n

    def _drain(self) -> int:
        """Read what the file holds past the last position, in chunks of ``chunk_bytes``, each
        written in a transaction of its own with the position after it: a 1 GB backlog is
        neither held in memory nor written at once. Returns the audit events appended."""
        n = 0
        while True:
            data = self._file.read(self.chunk_bytes)
            if not data:
                return n
            offset = self._file.tell() - len(data) - len(self._partial)  # where the first whole line starts
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()
            events: list[AuditRecorded | SourceErrorEvent] = []
            for line in lines:
                ev = self._event(line, offset)
                if ev is not None:
                    events.append(ev)
                offset += len(line) + 1
            if len(self._partial) > _MAX_LINE:  # no line of a real audit log is this long: skip it
                events.append(self._malformed(offset, f"a line of over {_MAX_LINE} bytes"))
                offset += len(self._partial)
                self._partial = b""
            appended = self.log.append(events, checkpoint=Checkpoint(self.checkpoint_name,
                                                                     {"inode": self._inode, "offset": offset}))
            n += sum(1 for a in appended if isinstance(a.event, AuditRecorded))

    def _malformed(self, offset: int, why: str) -> SourceErrorEvent:
        """A record that cannot be read: skipped, counted, and recorded once for its place."""
        self.malformed += 1
        return SourceErrorEvent(
            id=event_id("source.error", self.origin, "audit-malformed", str(self.path), str(self._inode), str(offset)),
            source=EventSource.AUDIT, effective_at=utc_now(),
            payload=SourceErrorPayload(code="audit-malformed", message=f"{self.path} at byte {offset}: {why}; "
                                       "the record was skipped", origin=self.origin, path=str(self.path),
                                       detail={"offset": str(offset)}),
        )

    def _event(self, line: bytes, offset: int) -> AuditRecorded | SourceErrorEvent | None:
        """The ``audit`` event of one line, None for a record of no interest (a read, an
        unwatched kind), or a ``source.error`` for one that cannot be read."""
        if not line.strip():
            return None
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            return self._malformed(offset, "not JSON")
        if not isinstance(raw, dict):
            return self._malformed(offset, f"a JSON {type(raw).__name__}, not an audit event")
        if raw.get("stage") != "ResponseComplete" or raw.get("verb") not in WRITE_VERBS:
            return None
        try:
            rec = _AuditLine.model_validate(raw)
        except ValidationError as e:
            return self._malformed(offset, f"an audit event of the wrong shape ({first_error(e)})")
        ref = rec.objectRef
        resolved = self.resolve(ref.apiGroup, ref.resource) if ref is not None else None
        if ref is None or resolved is None or not ref.name:
            return None
        kind, namespaced = resolved
        key = format_key(ResourceKey(canonical_group(ref.apiGroup, kind), kind, ref.namespace if namespaced else "",
                                     ref.name))
        response = rec.responseObject or {}
        status = response.get("kind") == "Status"
        meta = response.get("details") if status else response.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        rv = None if status else (str(meta["resourceVersion"]) if meta.get("resourceVersion") else None)
        uid = ref.uid or (str(meta["uid"]) if meta.get("uid") else None)
        # ResponseComplete's stageTimestamp: when the change was made (the request completed)
        at = rec.stageTimestamp or rec.requestReceivedTimestamp or utc_now()
        # impersonation (kubectl --as, a dashboard or proxy acting for its users): the change is
        # the impersonated user's, made through the user that authenticated, who is kept as via
        acting = rec.impersonatedUser if rec.impersonatedUser is not None and rec.impersonatedUser.username else None
        user = acting.username if acting is not None else rec.user.username
        via = rec.user.username if acting is not None else None
        record = AuditRecord(rec.auditID, key, rec.verb, user, rv, at, uid, rec.userAgent, via)
        self.index.add(record)
        return AuditRecorded(
            id=event_id("audit", self.origin, rec.auditID), source=EventSource.AUDIT, resource=key,
            actor=record.user, effective_at=at, revision=rv,
            payload=AuditPayload(
                origin=self.origin, audit_id=rec.auditID, verb=rec.verb, user=record.user, via=via,
                groups=(acting or rec.user).groups, user_agent=rec.userAgent, source_ips=rec.sourceIPs,
                request_uri=rec.requestURI, response_code=rec.responseStatus.code if rec.responseStatus else None,
                resource_version=rv, api_version=ref.apiVersion,
            ),
        )

    # ------------------------------------------------------------------ following

    def start(self) -> None:
        self._watch = FileWatch([self.path], self._trigger)
        self._trigger.set()

    def run(self, *, poll: float = 5.0, on_error: Callable[[Exception], None] | None = None) -> None:
        """Read on every change of the file (and every ``poll`` seconds) until ``stop()``.
        A failure to record is handed to ``on_error`` and ends the loop."""
        while not self._stopped.is_set():
            self._trigger.wait(poll)
            self._trigger.clear()
            if self._stopped.is_set():
                break
            try:
                self.catch_up()
            except Exception as e:  # handed to the owner, which stops: a store error in one line, a bug loudly
                if on_error is None:
                    raise
                on_error(e)
                return

    def stop(self) -> None:
        self._stopped.set()
        self._trigger.set()
        if self._watch is not None:
            self._watch.stop()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
