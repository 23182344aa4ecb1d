"""The event log: one append-only, hash-chained table in a real SQLite file.

Guarantees:
- ``append`` writes a batch of events and the source checkpoints that produced them in
  one transaction: after a crash both are there or neither is.
- Appending is idempotent by event ``id``: what is already in the log is skipped, and
  the result says what was new.
- ``seq`` strictly increases; ``recorded_at`` never decreases with it.
- Every row is chained to the one before by SHA-256 (``gitops.store.chain``);
  ``verify`` finds the first row that was modified, removed or moved.
- Reads are iterators over a cursor: the log is never loaded whole (the queries:
  ``gitops.store.reads``, which ``EventLog`` inherits).

The recorder idiom: public methods own the transaction and hand the cursor to private
``_insert_*`` functions and to registered in-transaction hooks, so that checkpoints now
and projection tables later are written with the events that change them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from gitops.events.names import EventSource
from gitops.model.bulk import cyclic_gc_paused
from gitops.model.errors import (
    CheckpointMovedError,
    CorruptDatabaseError,
    NotAGitOpsDatabaseError,
    ReadOnlyLogError,
    StoreError,
)
from gitops.model.times import format_time, utc_now
from gitops.store import changes, migrate
from gitops.store import current as current_state
from gitops.store import tree as merkle_tree
from gitops.store.chain import GENESIS, row_hash
from gitops.store.checks import LogChecks
from gitops.store.files import read_only_uri, writable
from gitops.store.integrity import VerifyResult, check_head, last_event
from gitops.store.pack import Packer
from gitops.store.reads import AUDIT_FACTS, AuditFacts, AuditRecord, LogReads, end_read, map_error
from gitops.store.rows import INSERT
from gitops.store.wal import WRITER_AUTOCHECKPOINT, WalCheckpointer, use_wal

if TYPE_CHECKING:  # the models are imported by what builds or reads events: a table of rows needs none
    from gitops.events.models import AnyEvent

__all__ = ["AUDIT_FACTS", "Appended", "AuditFacts", "AuditRecord", "Checkpoint", "EventLog", "Hook", "VerifyResult",
           "end_read"]

_CHUNK = 500  # bound on SQL parameters per id lookup
_SOURCES = {s: s.value for s in EventSource}  # a dict lookup is cheaper than Enum.value
_ROW_OVERHEAD = 300  # bytes a row adds to the WAL besides its payload (columns, indexes), roughly


class Checkpoint(NamedTuple):
    """Where a source stopped, e.g. ``Checkpoint("git:/repo#main", {"commit": sha})``; a
    value of None removes the checkpoint (a pass under way that ended)."""

    name: str
    value: Any


class Appended(NamedTuple):
    """One event the log did not have before ``append``, with what the log gave it."""

    seq: int
    recorded_at: str
    hash: str
    event: AnyEvent
    payload: str  # the payload's JSON as stored (what a projection computed from the log reads)


Hook = Callable[[sqlite3.Cursor, list[Appended]], None]


_PROJECTIONS: dict[str, Any] = {"current_state": current_state, "changes": changes,
                                "merkle": merkle_tree}  # name -> module
"""The projection tables, each a module with ``VERSION`` and ``rebuild(cur)``; the order
is the order of rebuilds (changes reads none of the others when it rebuilds)."""
class EventLog(LogReads, LogChecks):
    """The event log in the SQLite file at ``path``. With ``create=False`` (the commands
    that only read) the file must already be a gitops database of this version: it is
    neither created, nor migrated, nor changed in any way by opening it."""

    postgresql = False  # which SQL the filters are written in (gitops.store.postgres says True)

    def __init__(self, path: str | Path, *, create: bool = True, busy_timeout: float = 30.0,
                 snapshot_every: int = current_state.SNAPSHOT_EVERY, read_only: bool = False,
                 immutable: bool = False) -> None:
        self.path = Path(path)
        self.snapshot_every = snapshot_every
        self._where = str(self.path)
        self._hooks: list[Hook] = []
        self._packer = Packer()
        if not create and not self.path.exists():
            raise StoreError(f"no gitops database at {self._where}; create one with 'gitops init'")
        self.read_only = read_only or immutable or (not create and not writable(self.path))
        self.immutable = immutable
        if self.read_only and create:
            raise ReadOnlyLogError(f"{self._where} is read-only (a read-only copy, or --read-only): this command "
                                   "writes to the log; the commands that only read it work on it")
        try:
            # Autocommit mode: every transaction below is opened and closed explicitly.
            conn = sqlite3.connect(read_only_uri(self.path, immutable) if self.read_only else str(self.path),
                                   isolation_level=None, timeout=busy_timeout, check_same_thread=False,
                                   uri=self.read_only)
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e
        self.conn = conn
        try:
            version = migrate.check(conn, self._where)
            if not create and version < migrate.latest_version():
                # opened to read: a database is never created or changed by a command that reads
                raise (NotAGitOpsDatabaseError(f"{self._where} is empty, not a gitops database; create one with "
                                               "'gitops init'") if version == 0 else
                       StoreError(f"{self._where} has schema version {version}; run 'gitops init' to upgrade it"))
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            if create:
                use_wal(conn, busy_timeout)
            if not self.read_only:
                conn.execute("PRAGMA synchronous = NORMAL")  # WAL: atomic and consistent on crash
                conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT}")  # see gitops.store.wal
            if create:
                migrate.migrate(conn, self._where)
                self._projections(conn)
        except sqlite3.Error as e:
            conn.close()
            raise map_error(e, self._where) from e
        except BaseException:
            conn.close()
            raise
        self._wal = WalCheckpointer(self.path)

    def _projections(self, conn: sqlite3.Connection) -> None:
        """Rebuild each projection table that was written by another version (or, after the
        migration that made it, never filled): once, under the write lock."""
        for name, projection in _PROJECTIONS.items():

            def stale(name: str = name, version: int = projection.VERSION) -> bool:
                row = conn.execute("SELECT version FROM projections WHERE name = ?", (name,)).fetchone()
                return row is None or row[0] != version

            if stale():
                with self._write() as cur:
                    if stale():  # not done by another process meanwhile
                        projection.rebuild(cur)

    # ------------------------------------------------------------------ lifecycle

    @property
    def location(self) -> str:
        """What opens this log again (``gitops.store.open_log``): the file's path."""
        return str(self.path)

    def close(self) -> None:
        self._wal.close()
        self.conn.close()

    def wal_idle(self, timeout: float | None = None) -> bool:
        """Wait until the background WAL checkpoint (``gitops.store.wal``) is idle; False
        on timeout. Appends never need this; benchmarks and tests do."""
        return self._wal.wait_idle(timeout)

    @cached_property
    def db(self) -> Any:
        """sqlite-utils over the connection, for reads of rows by name (``LogReads``); made
        when first asked: a command that reads none (``gitops log``'s table) does not import
        it (60 ms)."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_hook(self, hook: Hook) -> None:
        """Run ``hook(cursor, appended)`` inside every append transaction that adds events."""
        self._hooks.append(hook)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        if self.read_only:
            raise ReadOnlyLogError(f"{self._where} is opened read-only: nothing is written to it")
        try:
            cur = self.conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException as e:
            end_read(self.conn)  # the rollback of what this wrote
            self._packer.settle(committed=False)
            if isinstance(e, sqlite3.Error):
                raise map_error(e, self._where) from e
            raise
        self._packer.settle(committed=True)

    # ------------------------------------------------------------------ writing

    def append(
        self,
        events: Iterable[AnyEvent],
        *,
        checkpoint: Checkpoint | Sequence[Checkpoint] | None = None,
        expect: Checkpoint | None = None,
    ) -> list[Appended]:
        """Append ``events`` not already in the log, and ``checkpoint``, atomically.
        Returns the events that were new, in the order they were appended. With ``expect``,
        only if that checkpoint still holds that value (None: it is not set) in the
        transaction, else ``CheckpointMovedError`` and nothing is written: a source whose
        events depend on where it read the log from (another process moved it meanwhile)."""
        batch = list(events)
        if isinstance(checkpoint, Checkpoint):
            checkpoints: Sequence[Checkpoint] = [checkpoint]
        else:
            checkpoints = checkpoint or []
        with self._write() as cur:
            last = check_head(cur, self._where)  # never re-anchor the chain on a cut tail: see gitops.store.integrity
            if expect is not None:
                row = cur.execute("SELECT value FROM checkpoints WHERE name = ?", (expect.name,)).fetchone()
                held = None if row is None else _checkpoint_value(expect.name, row[0])
                if held != json.loads(json.dumps(expect.value, sort_keys=True)):  # as stored: tuples are lists
                    raise CheckpointMovedError(f"the checkpoint {expect.name} moved while this writer read from it")
            with cyclic_gc_paused():  # see gitops.model.bulk
                appended, nbytes = _insert_events(cur, batch, last, self._packer)
            _insert_checkpoints(cur, checkpoints)
            if appended:
                self._project(cur, appended)
                for hook in self._hooks:
                    hook(cur, appended)
        self._wal.wrote(nbytes)
        return appended

    # ------------------------------------------------------------------ the operator's record, checkpoints, projections

    def acknowledge(self, event: AnyEvent) -> list[Appended]:
        """Append ``event`` (an operator's record of what ``verify`` found) even to a log whose
        head disagrees with its last event: chained after the last row there is, the recorded
        head and the Merkle tree made to follow the rows (the tree is rebuilt from them). The
        one write ``check_head`` lets through, since it is the evidence, not an erasure."""
        with self._write() as cur:
            merkle_tree.rebuild(cur)
            appended, nbytes = _insert_events(cur, [event], last_event(cur), self._packer)
            if appended:
                self._project(cur, appended)
        self._wal.wrote(nbytes)
        return appended

    def _project(self, cur: sqlite3.Cursor, appended: list[Appended]) -> None:
        """The projection tables follow what was appended, in its transaction."""
        changes.apply(cur, appended)  # first: it finds the previous versions through current_state
        current_state.apply(cur, appended, snapshot_every=self.snapshot_every)
        merkle_tree.apply(cur, appended)

    def checkpoint(self, name: str) -> Any | None:
        try:
            row = self.conn.execute("SELECT value FROM checkpoints WHERE name = ?", (name,)).fetchone()
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e
        return None if row is None else _checkpoint_value(name, row[0])

    def claim(self, name: str, value: Any) -> Any:
        """Set checkpoint ``name`` to ``value`` unless it is set; return what it holds then
        (the first claimant's value, whoever that was, among many processes)."""
        with self._write() as cur:
            cur.execute("INSERT INTO checkpoints (name, value, seq, updated_at) SELECT ?, ?, coalesce(max(seq), 0), ? "
                        "FROM events WHERE TRUE ON CONFLICT (name) DO NOTHING",  # WHERE: SQLite's upsert after a SELECT
                        (name, json.dumps(value, sort_keys=True), format_time(utc_now())))
            row = cur.execute("SELECT value FROM checkpoints WHERE name = ?", (name,)).fetchone()
        return _checkpoint_value(name, row[0])

    def checkpoints(self, prefix: str = "") -> dict[str, Any]:
        """Every checkpoint whose name starts with ``prefix`` (exactly: no character of it is a wildcard)."""
        try:
            rows = self.conn.execute("SELECT name, value FROM checkpoints WHERE substr(name, 1, ?) = ? "
                                     "ORDER BY name", (len(prefix), prefix)).fetchall()
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e
        return {name: _checkpoint_value(name, value) for name, value in rows}

    def rebuild_projections(self, only: Collection[str] = ()) -> None:
        """Rebuild the projection tables from the log (``gitops init --rebuild-projections``,
        the repair for what ``verify_projections`` finds); ``only``: those named (as
        ``"merkle"``, the tree of a log written before it existed)."""
        unknown = set(only) - set(_PROJECTIONS)
        if unknown:
            raise ValueError(f"no projection named {', '.join(sorted(unknown))}")
        with self._write() as cur:
            for name, projection in _PROJECTIONS.items():
                if not only or name in only:
                    projection.rebuild(cur)

    def verify_projections(self) -> list[str]:
        """How the stored projection tables (current state, changes) differ from what the
        log says they must hold (empty when they do not): for ``gitops verify --projections``."""
        cur = self.conn.cursor()
        try:
            cur.execute("BEGIN")
            stored = {(r[0], r[1], r[2], int(r[3]), int(r[4]))
                      for r in cur.execute("SELECT side, origin, resource, seq, present FROM current_state")}
            want = current_state.expected(cur)
            differ = changes.differences(cur)
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e
        finally:
            end_read(self.conn)
        wanted = {w[:3]: w[3:] for w in want}
        out = [f"{side} {resource} ({origin}): the table says seq {seq}, the log says "
               f"{wanted[(side, origin, resource)][0] if (side, origin, resource) in wanted else 'absent'}"
               for side, origin, resource, seq, _ in sorted(stored - want)]
        kept = {s[:3] for s in stored}
        out += [f"{side} {resource} ({origin}): seq {seq} is missing from the table"
                for side, origin, resource, seq, _ in sorted(want - stored) if (side, origin, resource) not in kept]
        return out + differ


def _insert_events(cur: sqlite3.Cursor, batch: list[AnyEvent], head: tuple[int, str, str] | None,
                   packer: Packer) -> tuple[list[Appended], int]:
    """Insert what is new in ``batch`` after the last event ``head`` (seq, hash, recorded_at;
    ``_last_event``); returns it and about how many bytes that wrote."""
    if not batch:
        return [], 0
    from gitops.events.models import payload_json  # loaded already: the batch's events are its models

    seen: set[str] = set()
    ids = [e.id for e in batch]
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        q = f"SELECT id FROM events WHERE id IN ({', '.join('?' * len(chunk))})"
        seen.update(r[0] for r in cur.execute(q, chunk))
    seq, prev = (head[0], head[1]) if head else (0, GENESIS)
    packer.prepare(cur, seq, {(e.type, e.resource) for e in batch if e.resource is not None and e.id not in seen})
    now = format_time(utc_now())
    recorded_at = max(now, head[2]) if head else now  # non-decreasing even if the clock steps back
    rows: list[tuple[Any, ...]] = []
    appended: list[Appended] = []
    nbytes = 0
    add_row, add_appended, mark_seen = rows.append, appended.append, seen.add  # the hot loop
    for ev in batch:
        if ev.id in seen:
            continue
        mark_seen(ev.id)
        seq += 1
        payload = payload_json(ev)
        values = (ev.id, ev.type, _SOURCES[ev.source], ev.resource, ev.actor, format_time(ev.effective_at),
                  recorded_at, ev.revision, payload)
        row_prev, prev = prev, row_hash(prev, values)
        stored, packed, base = packer.pack(cur, seq, ev.type, ev.resource, payload)
        nbytes += len(stored) + (len(packed) if packed is not None else 0)
        add_row((seq, *values[:-1], stored, row_prev, prev, packed, base))
        add_appended(Appended(seq, recorded_at, prev, ev, payload))
    if rows:
        cur.executemany(INSERT, rows)
        cur.execute("INSERT INTO chain_head (id, seq, hash) VALUES (1, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash", (seq, prev))
    return appended, nbytes + _ROW_OVERHEAD * len(rows)


def _insert_checkpoints(cur: sqlite3.Cursor, checkpoints: Sequence[Checkpoint]) -> None:
    if not checkpoints:
        return
    seq = cur.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    now = format_time(utc_now())
    cur.executemany("DELETE FROM checkpoints WHERE name = ?", [(c.name,) for c in checkpoints if c.value is None])
    cur.executemany(
        "INSERT INTO checkpoints (name, value, seq, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value, seq = excluded.seq, "
        "updated_at = excluded.updated_at",
        [(c.name, json.dumps(c.value, sort_keys=True), seq, now) for c in checkpoints if c.value is not None],
    )


def _checkpoint_value(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise CorruptDatabaseError(f"the checkpoint {name!r} is not JSON: the database was changed outside "
                                   "gitops") from None
