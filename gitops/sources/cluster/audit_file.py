"""The API server's audit log file: ``AuditTailer`` follows it (JSON lines) with watchdog,
survives rotation (the file renamed away and a new one created), and turns each completed
write request into a record of the index the cluster watcher joins changes to and an
``audit`` event (``gitops.sources.cluster.audit_records``). Where it stopped is a
checkpoint written with the events: a restart resumes there, and a file rotated away or
cut while nothing read it is recorded as an evidence gap (``source.error audit-gap``).

With ``hold``, a record's event is held back that many seconds: the cluster writer folds
the record of the change it joins into that change's event (``take``, then ``settle``
once that event is written), so the log keeps one event per change instead of two. A
record nobody took by then (a write the watch did not see, or saw too late) is written as
its own ``audit`` event; so is, at once, one no change can take (a refused request, a dry
run, one of no object or of several: a ``deletecollection``). With ``stale``, a record read
more than that many seconds after it was made is written at once (a service's backlog at
start: thousands of records coming due together would stall the writer, which waits for
the tailer at each change). The checkpoint never passes a record still held: after a
crash the file is read again from the first of them, and what was folded already comes
back as an ``audit`` event (the same evidence twice, never none).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gitops.events.models import (
    AuditPayload,
    AuditRecorded,
    EventSource,
    SourceErrorEvent,
    SourceErrorPayload,
    event_id,
)
from gitops.model.errors import GitOpsError
from gitops.model.times import utc_now
from gitops.sources.cluster.audit import AuditIndex, AuditRecord
from gitops.sources.cluster.audit_records import AuditReader, KindResolver, Malformed, Read
from gitops.sources.filewatch import FileWatch
from gitops.store import Checkpoint, EventLog

__all__ = ["HOLD", "AuditTailer"]

_CHUNK = 4 << 20  # bytes read and written at a time
_MAX_LINE = 16 << 20
HOLD = 10.0
"""Seconds the cluster source's tailer holds a record for the change it explains (the writer
waits ``audit_wait``, 0.5 s by default, for a change's record: this leaves room for a
watch that lags)."""
_MAX_HELD = 10_000  # records held at most: beyond it the oldest are written (a backlog read at start)
_BATCH = 500  # held records written in one transaction at most


@dataclass
class _Held:
    event: AuditRecorded
    start: int  # where its line begins in the file: the checkpoint stays there while it is held
    read_at: float  # time.monotonic()
    taken: bool = False  # folded into a change's event not yet written


def _joinable(record: AuditRecord | None) -> bool:
    """Whether a change may keep this record: one of an object that changed something. The
    others are written at once, not held for nothing: an alert on refused requests sees
    them as they are read."""
    return record is not None and not record.changed_nothing


class AuditTailer:
    """Reads new lines of the audit log into the index and ``audit`` events (held back
    ``hold`` seconds for the cluster writer to fold, see the module's doc)."""

    delay = 0.0  # the API server writes each record as the request completes

    def __init__(self, log: EventLog, path: str | Path, *, resolve: KindResolver, index: AuditIndex,
                 origin: str, chunk_bytes: int = _CHUNK, hold: float = 0.0, stale: float | None = None) -> None:
        self.log = log
        self.path = Path(path)
        self.reader = AuditReader(resolve=resolve, origin=origin)
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
        self.records = 0  # completed write requests read: kept in changes' events, or written on their own
        self.chunk_bytes = chunk_bytes
        self.hold = hold
        self.stale = stale  # records made more than this many seconds before they are read are not held
        self._held: OrderedDict[str, _Held] = OrderedDict()  # by audit ID, in the file's order
        self._pos = 0  # where the last whole line read ends
        self._written: dict[str, Any] | None = None  # the checkpoint as last written
        self._wrote_at = float("-inf")  # when (time.monotonic())

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
            self._written = cp
        elif self._inode is None and isinstance(cp, dict) and cp.get("inode") is not None:
            # rotated away (or cut) while nothing read it: what came after the offset was not seen
            self.log.append([self._gap(cp, inode, rotated=cp.get("inode") != inode)])
        elif inode == self._inode and self._pos <= stat.st_size:  # opened again after stop: on from where it was
            f.seek(self._pos)
        self._file, self._inode, self._partial, self._pos = f, inode, b"", f.tell()
        self._wrote_at = float("-inf")  # a new file's checkpoint is written at once: the old one names another file
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
                n += self._write_all()  # a checkpoint cannot point into the old file
                self._file.close()
                self._file = None
                if self._open():
                    n += self._drain()
            return n + self._write([])  # what was held long enough

    def take(self, audit_id: str) -> AuditPayload | None:
        """The record ``audit_id`` if it is held and nobody took it: the caller keeps it in
        the event of the change it explains, and calls ``settle`` once that is written."""
        with self._lock:
            held = self._held.get(audit_id)
            if held is None or held.taken:
                return None
            held.taken = True
            return held.event.payload

    def settle(self, audit_ids: Iterable[str]) -> None:
        """The records ``audit_ids`` (taken) are in the log, in their changes' events."""
        with self._lock:
            for a in audit_ids:
                self._held.pop(a, None)

    def flush(self) -> int:
        """Write every record still held (at stop, and at the end of a one-shot pass);
        returns how many were written."""
        with self._lock:
            return self._write_all() if self._inode is not None else 0

    def _write_all(self) -> int:
        n = self._write([], everything=True)
        while self._held:
            n += self._write([], everything=True)
        return n

    def close(self) -> None:
        """At the source's stop, once its writer is done: write every record still held, and
        close the log. Records that cannot be written (the log refuses writes: the source
        stopped for that) stay past the checkpoint, and are read again at the next start."""
        with contextlib.suppress(GitOpsError):
            self.flush()
        self.log.close()

    def _write(self, events: list[AuditRecorded | SourceErrorEvent], *, everything: bool = False) -> int:
        """Append ``events``, the held records due (held ``hold`` seconds, beyond
        ``_MAX_HELD``, or all of them), and the checkpoint: the first record still held, else
        the end of the last whole line read. At most ``_BATCH`` held records at a time: the
        cluster writer waits for this (it asks for records at each change), and a backlog
        read at start comes due all at once. With nothing to append, the checkpoint alone is
        written at most once every ``hold`` seconds (one transaction per record read would
        slow the cluster writer, which asks for records per change): it may lag behind, never
        pass a record held. Returns the audit events appended."""
        now = time.monotonic()
        excess = len(self._held) - _MAX_HELD
        due: list[_Held] = []
        left = None  # the first record still held after this: asked at each change, so only the due are looked at
        for h in self._held.values():
            if len(due) >= _BATCH or (not everything and len(due) >= excess and now - h.read_at < self.hold):
                left = h
                break
            due.append(h)
        if len(due) >= _BATCH:
            self._trigger.set()  # more are due: the tailer's thread comes back for them at once
        out = [*events, *(h.event for h in due)]
        cp = {"inode": self._inode, "offset": left.start if left is not None else self._pos}
        if not out and (cp == self._written or (not everything and now - self._wrote_at < self.hold)):
            return 0
        appended = self.log.append(out, checkpoint=Checkpoint(self.checkpoint_name, cp))
        for h in due:
            del self._held[h.event.payload.audit_id]
        self._written, self._wrote_at = cp, now
        return sum(1 for a in appended if isinstance(a.event, AuditRecorded))

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
            now, wall = time.monotonic(), utc_now()
            out: list[AuditRecorded | SourceErrorEvent] = []
            for line in lines:
                read = self._read(line, offset)
                self.records += isinstance(read, list)
                if isinstance(read, list) and len(read) == 1 and _joinable(read[0][0]) and (
                        self.stale is None or (wall - read[0][1].effective_at).total_seconds() <= self.stale):
                    # one change's record: held for that change to keep (read twice: its first place)
                    self._held.setdefault(read[0][1].payload.audit_id, _Held(read[0][1], offset, now))
                elif isinstance(read, list):  # a record of long ago (a backlog: its change is recorded
                    # already), one no change can keep, or of several (a deletecollection)
                    out.extend(event for _, event in read)
                elif read is not None:  # one that cannot be read
                    out.append(read)
                offset += len(line) + 1
            if len(self._partial) > _MAX_LINE:  # no line of a real audit log is this long: skip it
                out.append(self._malformed(offset, f"a line of over {_MAX_LINE} bytes"))
                offset += len(self._partial)
                self._partial = b""
            self._pos = offset
            n += self._write(out)

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

    def _read(self, line: bytes, offset: int) -> Read | SourceErrorEvent | None:
        """The records of one line, each with its ``audit`` event (one for most requests,
        see ``AuditReader.read``), put in the index; None for a record of no interest (a
        read, an unwatched kind), or a ``source.error`` for one that cannot be read."""
        if not line.strip():
            return None
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            return self._malformed(offset, "not JSON")
        read = self.reader.read(raw)
        if read is None:
            return None
        if isinstance(read, Malformed):
            return self._malformed(offset, read)
        for record, _ in read:
            if record is not None:
                self.index.add(record)
        return read

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
