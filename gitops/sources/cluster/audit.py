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
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from gitops.events.models import AuditPayload, AuditRecorded, EventSource, event_id
from gitops.model.keys import ResourceKey, canonical_group, format_key
from gitops.model.times import parse_time, utc_now
from gitops.sources.filewatch import FileWatch
from gitops.store import Checkpoint, EventLog

__all__ = ["AuditIndex", "AuditRecord", "AuditTailer", "KindResolver"]

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
KindResolver = Callable[[str, str], tuple[str, bool] | None]
"""(api group, plural resource) -> (kind, namespaced), from discovery."""


@dataclass(frozen=True)
class AuditRecord:
    audit_id: str
    key: str
    verb: str
    user: str
    resource_version: str | None
    at: datetime


class AuditIndex:
    """Recent write requests, by (key, resourceVersion) and by key for deletes."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._by_rv: OrderedDict[tuple[str, str], AuditRecord] = OrderedDict()
        self._deletes: dict[str, AuditRecord] = {}
        self._capacity = capacity
        self._cond = threading.Condition()

    def add(self, rec: AuditRecord) -> None:
        with self._cond:
            if rec.verb in ("delete", "deletecollection"):
                self._deletes[rec.key] = rec
            if rec.resource_version:
                self._by_rv[(rec.key, rec.resource_version)] = rec
                while len(self._by_rv) > self._capacity:
                    self._by_rv.popitem(last=False)
            self._cond.notify_all()

    def find(self, key: str, resource_version: str | None, *, deleted: bool) -> AuditRecord | None:
        with self._cond:
            if resource_version and (key, resource_version) in self._by_rv:
                return self._by_rv[(key, resource_version)]
            if deleted:
                return self._deletes.get(key)
            return None

    def wait(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait(timeout)


class AuditTailer:
    """Reads new lines of the audit log into ``audit`` events and the index."""

    def __init__(self, log: EventLog, path: str | Path, *, resolve: KindResolver, index: AuditIndex,
                 origin: str) -> None:
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

    # ------------------------------------------------------------------ reading

    def _open(self) -> bool:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - kept open while tailing
        except FileNotFoundError:
            return False
        inode = os.fstat(f.fileno()).st_ino
        cp = self.log.checkpoint(self.checkpoint_name)
        if self._inode is None and isinstance(cp, dict) and cp.get("inode") == inode:
            f.seek(int(cp.get("offset", 0)))  # resume where the log stopped
        self._file, self._inode, self._partial = f, inode, b""
        return True

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
        data = self._file.read()
        if not data:
            return 0
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        events: list[AuditRecorded] = []
        for line in lines:
            ev = self._event(line)
            if ev is not None:
                events.append(ev)
        offset = self._file.tell() - len(self._partial)
        self.log.append(events, checkpoint=Checkpoint(self.checkpoint_name,
                                                      {"inode": self._inode, "offset": offset}))
        return len(events)

    def _event(self, line: bytes) -> AuditRecorded | None:
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None  # a torn or foreign line: the audit log is not ours to judge
        if raw.get("stage") != "ResponseComplete" or raw.get("verb") not in WRITE_VERBS:
            return None
        ref = raw.get("objectRef") or {}
        resolved = self.resolve(str(ref.get("apiGroup", "")), str(ref.get("resource", "")))
        if resolved is None or not ref.get("name"):
            return None
        kind, namespaced = resolved
        key = format_key(ResourceKey(canonical_group(str(ref.get("apiGroup", "")), kind), kind,
                                     str(ref.get("namespace", "")) if namespaced else "", str(ref["name"])))
        response = raw.get("responseObject") or {}
        rv = (response.get("metadata") or {}).get("resourceVersion") if response.get("kind") != "Status" else None
        user = raw.get("user") or {}
        at_text = raw.get("requestReceivedTimestamp") or raw.get("stageTimestamp")
        at = parse_time(at_text) if at_text else utc_now()
        audit_id = str(raw.get("auditID"))
        rec = AuditRecord(audit_id, key, str(raw["verb"]), str(user.get("username", "")), rv, at)
        self.index.add(rec)
        return AuditRecorded(
            id=event_id("audit", self.origin, audit_id), source=EventSource.AUDIT, resource=key,
            actor=rec.user, effective_at=at, revision=rv,
            payload=AuditPayload(
                origin=self.origin, audit_id=audit_id, verb=rec.verb, user=rec.user,
                groups=[str(g) for g in user.get("groups") or []], user_agent=raw.get("userAgent"),
                source_ips=[str(ip) for ip in raw.get("sourceIPs") or []], request_uri=str(raw.get("requestURI", "")),
                response_code=(raw.get("responseStatus") or {}).get("code"), resource_version=rv,
                api_version=ref.get("apiVersion"),
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
            except Exception as e:  # handed to the owner, which stops and reports it
                if on_error is None:
                    raise
                on_error(e)
                return
            time.sleep(0.01)

    def stop(self) -> None:
        self._stopped.set()
        self._trigger.set()
        if self._watch is not None:
            self._watch.stop()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
