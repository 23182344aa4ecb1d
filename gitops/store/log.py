"""The event log: one append-only, hash-chained table in a real SQLite file.

Guarantees:
- ``append`` writes a batch of events and the source checkpoints that produced them in
  one transaction: after a crash both are there or neither is.
- Appending is idempotent by event ``id``: what is already in the log is skipped, and
  the result says what was new.
- ``seq`` strictly increases; ``recorded_at`` never decreases with it.
- Every row is chained to the one before by SHA-256 (``gitops.store.chain``);
  ``verify`` finds the first row that was modified, removed or moved.
- Reads are iterators over a cursor: the log is never loaded whole.

The recorder idiom: public methods own the transaction and hand the cursor to private
``_insert_*`` functions and to registered in-transaction hooks, so that checkpoints now
and projection tables later are written with the events that change them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson
import sqlite_utils

from gitops.events.models import AnyEvent, EventSource, Recorded, payload_json
from gitops.model.bulk import cyclic_gc_paused
from gitops.model.errors import (
    CorruptDatabaseError,
    DatabaseLockedError,
    NotAGitOpsDatabaseError,
    ReadOnlyLogError,
    StoreError,
)
from gitops.model.times import format_time, utc_now
from gitops.store import changes, migrate
from gitops.store import current as current_state
from gitops.store import tree as merkle_tree
from gitops.store.chain import GENESIS, row_hash
from gitops.store.damage import find_damage
from gitops.store.files import read_only_uri, writable
from gitops.store.filters import MANAGED, OUT_OF_BAND, select
from gitops.store.integrity import VerifyResult, check_head, last_event, verify_rows
from gitops.store.pack import Packer, packed_columns, unpack
from gitops.store.rows import INSERT, LIGHT, READ, Stored, logical_row, to_recorded, to_stored, unpacked, unreadable
from gitops.store.wal import WRITER_AUTOCHECKPOINT, WalCheckpointer, use_wal

__all__ = ["Appended", "AuditFacts", "AuditRecord", "Checkpoint", "EventLog", "Hook", "VerifyResult"]

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


class AuditRecord(NamedTuple):
    """An event as an audit shows it, read from its columns without building its model:
    whether it is out of band (``OUT_OF_BAND``, about an object Git manages), what it
    changed (the change projection's row, for ``changes.decode``: None where it has none)
    and the payload's fields an audit row names (``payload_facts()``)."""

    seq: int
    effective_at: str  # RFC 3339, as stored
    type: str
    source: str
    resource: str | None
    actor: str | None
    revision: str | None
    out_of_band: int  # 1 or 0
    changes: str | None
    facts: str  # the payload's AuditFacts, as a JSON array

    def payload_facts(self) -> AuditFacts:
        return AuditFacts._make(orjson.loads(self.facts))


class AuditFacts(NamedTuple):
    """The fields of an event's payload an audit row names, None where it has none."""

    attribution: str | None  # cluster changes: how the actor is known
    candidates: list[str] | None  # cluster changes: who it may have been
    change: str | None  # cluster.observed: added, modified, relisted
    action: str | None  # reconcile.action
    result: str | None  # reconcile.action
    error: str | None  # reconcile.action
    message: str | None  # git.commit and others
    via: str | None  # cluster changes and audit records: who impersonated the actor
    dry_run: bool | None  # reconcile.action: what a dry run would have done, nothing done
    origin: str | None  # the source that recorded it (cluster:NAME for a cluster's)
    cluster: str | None  # the reconciler's events: the cluster acted on


AUDIT_FACTS = AuditFacts._fields


_PROJECTIONS: dict[str, Any] = {"current_state": current_state, "changes": changes,
                                "merkle": merkle_tree}  # name -> module
"""The projection tables, each a module with ``VERSION`` and ``rebuild(cur)``; the order
is the order of rebuilds (changes reads none of the others when it rebuilds)."""
_FACTS = f"json_extract(payload, {', '.join(repr('$.' + f) for f in AUDIT_FACTS)})"  # one parse, an array


def _map_error(e: sqlite3.Error, where: str) -> StoreError:
    """SQLite's error, by its result code (not its message text), as one of ours."""
    code = getattr(e, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None  # extended codes keep the primary in the low byte
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return DatabaseLockedError(f"{where}: the database stayed locked by another process ({e})")
    if primary == sqlite3.SQLITE_READONLY:
        return ReadOnlyLogError(f"{where} cannot be written (a read-only file or mount): {e}")
    if primary == sqlite3.SQLITE_NOTADB:
        return NotAGitOpsDatabaseError(f"{where} is not a gitops database (not an SQLite file)")
    if primary == sqlite3.SQLITE_CORRUPT:
        found = find_damage(where)
        return CorruptDatabaseError(f"{where} is damaged {found}: {e}" if found else f"{where} is damaged: {e}")
    return StoreError(f"{where}: {e}")


class EventLog:
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
            raise _map_error(e, self._where) from e
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
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
            raise _map_error(e, self._where) from e
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
            raise _map_error(e, self._where) from e
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException as e:
            _end_read(self.conn)  # the rollback of what this wrote
            self._packer.settle(committed=False)
            if isinstance(e, sqlite3.Error):
                raise _map_error(e, self._where) from e
            raise
        self._packer.settle(committed=True)

    # ------------------------------------------------------------------ writing

    def append(
        self,
        events: Iterable[AnyEvent],
        *,
        checkpoint: Checkpoint | Sequence[Checkpoint] | None = None,
    ) -> list[Appended]:
        """Append ``events`` not already in the log, and ``checkpoint``, atomically.
        Returns the events that were new, in the order they were appended."""
        batch = list(events)
        if isinstance(checkpoint, Checkpoint):
            checkpoints: Sequence[Checkpoint] = [checkpoint]
        else:
            checkpoints = checkpoint or []
        with self._write() as cur:
            last = check_head(cur, self._where)  # never re-anchor the chain on a cut tail: see gitops.store.integrity
            with cyclic_gc_paused():  # see gitops.model.bulk
                appended, nbytes = _insert_events(cur, batch, last, self._packer)
            _insert_checkpoints(cur, checkpoints)
            if appended:
                self._project(cur, appended)
                for hook in self._hooks:
                    hook(cur, appended)
        self._wal.wrote(nbytes)
        return appended

    # ------------------------------------------------------------------ reading

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
            raise _map_error(e, self._where) from e
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
            raise _map_error(e, self._where) from e
        return {name: _checkpoint_value(name, value) for name, value in rows}

    def current(self, side: current_state.Side, *, origin: str | None = None) -> Iterator[Recorded]:
        """The events that set each object's current state on ``side`` (desired or actual),
        of one source when ``origin`` is given, by resource: the state now, read in
        O(objects) from the current-state table rather than by folding the log."""
        sql = (f"SELECT e.*, {packed_columns('e')} FROM current_state c JOIN events e ON e.seq = c.seq "
               "WHERE c.side = ? AND c.present = 1"
               + (" AND c.origin = ?" if origin is not None else "") + " ORDER BY c.resource, c.origin")
        params = [side] if origin is None else [side, origin]
        try:
            for row in self.db.query(sql, params):
                yield to_recorded(row)
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e

    def current_payloads(self, side: current_state.Side, *, origin: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(resource, payload) of what ``current(side, origin=origin)`` reads, the payload as
        stored, without building models: for a source comparing what it sees with what the
        log holds (every object, on every pass), where only a few fields are read."""
        sql = (f"SELECT e.seq, e.type, e.resource, e.payload, {packed_columns('e')} FROM current_state c "
               "JOIN events e ON e.seq = c.seq WHERE c.side = ? AND c.present = 1 AND c.origin = ? ORDER BY c.resource")
        try:
            for seq, type_, resource, payload, *packed in self.conn.execute(sql, (side, origin)):
                try:
                    value = orjson.loads(unpack(seq, payload, *packed))
                except ValueError as e:
                    raise unreadable(seq, type_, e) from None
                yield resource, value
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e

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
            raise _map_error(e, self._where) from e
        finally:
            _end_read(self.conn)
        wanted = {w[:3]: w[3:] for w in want}
        out = [f"{side} {resource} ({origin}): the table says seq {seq}, the log says "
               f"{wanted[(side, origin, resource)][0] if (side, origin, resource) in wanted else 'absent'}"
               for side, origin, resource, seq, _ in sorted(stored - want)]
        kept = {s[:3] for s in stored}
        out += [f"{side} {resource} ({origin}): seq {seq} is missing from the table"
                for side, origin, resource, seq, _ in sorted(want - stored) if (side, origin, resource) not in kept]
        return out + differ

    def state_at(self, side: current_state.Side, *, at: datetime | None = None,
                 axis: Literal["effective", "recorded"] = "effective", until_seq: int | None = None,
                 origin: str | None = None) -> Iterator[Recorded]:
        """The events that set each object present on ``side`` at time ``at`` (on ``axis``)
        or after event ``until_seq``, by resource: the nearest snapshot and the events after
        it (``gitops.store.current``), not a fold of the whole log. Rows are read as they are
        consumed, in one read transaction (one snapshot) held until the iterator ends: consume
        one such read before starting another on the same log."""
        cur = self.conn.cursor()
        try:
            cur.execute("BEGIN")  # one snapshot of the database for the whole answer
            sql, params = current_state.state_at(cur, side, until_seq=until_seq, axis=axis, origin=origin,
                                                 at=format_time(at) if at is not None else None)
            for row in self.db.query(f"SELECT e.*, {packed_columns('e')} FROM ({sql}) s JOIN events e ON e.seq = s.seq "
                                     "ORDER BY e.resource, e.seq", params):
                yield to_recorded(row)
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e
        finally:
            _end_read(self.conn)

    def distinct_resources(self, types: Sequence[str]) -> list[str]:
        """Every ResourceKey string that events of ``types`` name (for source selection)."""
        marks = ", ".join("?" * len(types))
        sql = f"SELECT DISTINCT resource FROM events WHERE resource IS NOT NULL AND type IN ({marks})"
        return [r[0] for r in self.conn.execute(sql, list(types))]

    def holds(self, resource: str) -> bool:
        """Whether any event names ``resource`` (a canonical key)."""
        try:
            return self.conn.execute("SELECT 1 FROM events WHERE resource = ? LIMIT 1", (resource,)).fetchone() \
                is not None
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e

    def known_resources(self, prefix: str = "", suffix: str = "", *, limit: int = 10_000) -> list[str]:
        """Up to ``limit`` keys that Git or the cluster ever set or removed, starting with
        ``prefix`` and ending with ``suffix`` (``current_state``, one row per object and
        source): what names are completed and suggested from."""
        sql = "SELECT DISTINCT resource FROM current_state WHERE 1"
        params: list[Any] = []
        if prefix:  # a range of the (resource, side) index
            sql += " AND resource >= ? AND resource < ?"
            params += [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]
        if suffix:
            sql += " AND substr(resource, -?) = ?"
            params += [len(suffix), suffix]
        try:
            return [r[0] for r in self.conn.execute(f"{sql} ORDER BY resource LIMIT ?", (*params, limit))]
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e

    def last_state_seq(self, side: current_state.Side) -> int:
        """The seq of the last event that changed ``side`` (0: none): whether it moved, cheaply."""
        try:
            row = self.conn.execute("SELECT max(seq) FROM current_state WHERE side = ?", (side,)).fetchone()
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e
        return int(row[0] or 0)

    def clusters(self) -> list[str]:
        """The origins of the clusters the log holds objects of (``cluster:NAME``), sorted."""
        try:
            return [r[0] for r in self.conn.execute(
                "SELECT DISTINCT origin FROM current_state WHERE side = 'actual' ORDER BY origin")]
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e

    def kind_samples(self) -> list[str]:
        """One key of each kind the log holds objects of (its kind, group and scope)."""
        sql = ("SELECT min(resource) FROM current_state GROUP BY substr(resource, 1, instr(resource, '/') - 1)")
        try:
            return [r[0] for r in self.conn.execute(sql)]
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e

    def last_seq(self) -> int:
        try:
            row = self.conn.execute("SELECT max(seq) FROM events").fetchone()
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e
        return int(row[0] or 0)

    def seq_recorded_before(self, t: datetime) -> int:
        """The last seq this log recorded before ``t`` (0 when none): where a reader that wants
        what was recorded since ``t`` starts. One index lookup: ``recorded_at`` never
        decreases with seq."""
        try:
            row = self.conn.execute("SELECT seq FROM events WHERE recorded_at >= ? ORDER BY recorded_at, seq "
                                    "LIMIT 1", (format_time(t),)).fetchone()
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e
        return int(row[0]) - 1 if row is not None else self.last_seq()

    def count(self) -> int:
        try:
            return int(self.conn.execute("SELECT count(*) FROM events").fetchone()[0])
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e

    def first_time(self, time_axis: Literal["effective", "recorded"] = "effective") -> datetime | None:
        """The earliest valid (or transaction) time in the log; None when it is empty."""
        return self._time("min", time_axis)

    def last_time(self, time_axis: Literal["effective", "recorded"] = "effective") -> datetime | None:
        """The latest valid (or transaction) time in the log; None when it is empty."""
        return self._time("max", time_axis)

    def _time(self, which: Literal["min", "max"], time_axis: Literal["effective", "recorded"]) -> datetime | None:
        column = "effective_at" if time_axis == "effective" else "recorded_at"  # both indexed
        try:
            row = self.conn.execute(f"SELECT {which}({column}) FROM events").fetchone()
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e
        return datetime.fromisoformat(row[0].replace("Z", "+00:00")) if row and row[0] else None

    def read(self, *, limit: int | None = None, descending: bool = False, **filters: Any) -> Iterator[Recorded]:
        """Stream events in seq order (``descending``: newest first), filtered by
        ``filters`` (the keyword arguments of ``select``), at most ``limit``."""
        f = select(**filters, postgresql=self.postgresql)
        sql = f"SELECT {READ} FROM events{f.where()} ORDER BY seq{' DESC' if descending else ''}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        try:
            for row in self.db.query(sql, f.params):
                yield to_recorded(row)
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e

    def read_stored(self, **filters: Any) -> Iterator[Stored]:
        """The events ``read(**filters)`` gives, in seq order, as stored: no event model is
        built (``gitops.store.rows.Stored``)."""
        f = select(**filters, postgresql=self.postgresql)
        try:
            yield from map(to_stored, self.conn.execute(f"SELECT {LIGHT} FROM events{f.where()} ORDER BY seq",
                                                        f.params))
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e

    def count_where(self, **filters: Any) -> int:
        """How many events ``read(**filters)`` would give, counted in SQL."""
        f = select(**filters, postgresql=self.postgresql)
        try:
            return int(self.conn.execute(f"SELECT count(*) FROM events{f.where()}", f.params).fetchone()[0])
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e

    def read_audit(self, *, limit: int | None = None, descending: bool = False,
                   **filters: Any) -> Iterator[AuditRecord]:
        """The events ``read(**filters)`` gives, in seq order, as ``AuditRecord`` values, in
        one query: the out-of-band test is looked up by SQLite per row through indexes, what
        the event changed is read from the change projection (``gitops.store.changes``),
        and no event model is built (an audit may return a month of rows)."""
        f = select(**filters, postgresql=self.postgresql)
        oob = "1" if filters.get("out_of_band") else f"({OUT_OF_BAND}) AND {MANAGED}"
        sql = (f"SELECT seq, effective_at, type, source, resource, actor, revision, {oob}, "
               f"(SELECT fields FROM changes WHERE changes.seq = events.seq), {_FACTS} FROM events{f.where()} "
               f"ORDER BY seq{' DESC' if descending else ''}{f' LIMIT {int(limit)}' if limit is not None else ''}")
        try:
            yield from map(AuditRecord._make, self.conn.execute(sql, f.params))
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e

    def commit_objects(self, *, start: datetime | None = None) -> Iterator[tuple[str, str, str, bool]]:
        """(commit, resource, type, changed) of each ``desired.*`` event from ``start`` on valid
        time: what each commit did to which object, without building events. ``changed``:
        the change projection has a row for it (an update; a creation or removal has none)."""
        f = select(types=["desired.applied", "desired.removed"], start=start, postgresql=self.postgresql)
        f.add("revision IS NOT NULL AND resource IS NOT NULL")
        sql = (f"SELECT revision, resource, type, EXISTS (SELECT 1 FROM changes WHERE changes.seq = events.seq) "
               f"FROM events{f.where()} ORDER BY seq")
        try:
            for revision, resource, type_, changed in self.conn.execute(sql, f.params):
                yield str(revision), str(resource), str(type_), bool(changed)
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e

    def first_applied(self, *, start: datetime | None = None, end: datetime | None = None) -> dict[str, datetime]:
        """Commit sha -> when the reconciler first applied something of it (succeeded): an
        apply of its manifest, or the prune of an object it removed from Git (a commit whose
        only effect was a prune is applied too)."""
        f = select(types=["reconcile.action"], start=start, end=end)
        f.add("json_extract(payload, '$.result') = ?", "succeeded")
        removed_by = ("(SELECT r.revision FROM events r WHERE r.resource = events.resource "
                      "AND r.type = 'desired.removed' AND r.seq < events.seq ORDER BY r.seq DESC LIMIT 1)")
        sql = (f"SELECT coalesce(json_extract(payload, '$.commit'), CASE WHEN json_extract(payload, '$.action') = "
               f"'prune' THEN {removed_by} END) AS c, min(effective_at) FROM events{f.where()} "
               "GROUP BY c HAVING c IS NOT NULL")
        try:
            return {str(c): datetime.fromisoformat(t.replace("Z", "+00:00"))
                    for c, t in self.conn.execute(sql, f.params)}
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e

    # ------------------------------------------------------------------ integrity

    def row(self, seq: int) -> dict[str, Any] | None:
        """Event ``seq``'s stored row (its hashed fields, prev_hash, hash), or None."""
        try:
            r = self.conn.execute(f"SELECT {READ} FROM events WHERE seq = ?", (seq,)).fetchone()
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e
        return None if r is None else logical_row(r)

    def tree_head(self) -> tuple[int, bytes, tuple[int, str] | None]:
        """(size, Merkle root, chain head (seq, hash)) read in one snapshot: what a
        checkpoint signs."""
        cur = self.conn.cursor()
        try:
            cur.execute("BEGIN")
            check_head(cur, self._where, doing="sign")  # never sign the stored tree of a cut log
            tree = merkle_tree.MerkleTree(self.conn)
            head = cur.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
            if tree.size != (head[0] if head else 0):
                raise CorruptDatabaseError(f"{self._where}: the Merkle tree holds {tree.size} events but the log "
                                           f"{head[0] if head else 0}; 'gitops init --rebuild-projections' "
                                           "rebuilds it")
            return tree.size, tree.root(), (int(head[0]), str(head[1])) if head else None
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e
        finally:
            cur.close()
            _end_read(self.conn)

    def tree(self) -> merkle_tree.MerkleTree:
        """The Merkle tree, for proofs (read it in one transaction with what it proves)."""
        return merkle_tree.MerkleTree(self.conn)

    def verify(self, *, at_sizes: Collection[int] = ()) -> VerifyResult:
        """Recompute the chain and the Merkle root over every row, in bounded memory; stop at
        the first fault (``gitops.store.integrity``). ``at_sizes``: also give the root of
        the tree of each of these sizes (to check signed checkpoints against)."""
        cur = self.conn.cursor()
        try:
            cur.execute("BEGIN")  # one snapshot for the rows, the recorded head and the tree
            head = cur.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
            tree = merkle_tree.MerkleTree(self.conn)
            stored = (tree.size, tree.root())
            rows = cur.execute(f"SELECT {READ} FROM events ORDER BY seq")
            return verify_rows(unpacked(rows), head, tree=stored, at_sizes=at_sizes)
        except sqlite3.Error as e:
            raise _map_error(e, self._where) from e
        finally:
            cur.close()
            _end_read(self.conn)


def _end_read(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any; on a damaged file, the error already raised
    says so and this one would only hide it."""
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _insert_events(cur: sqlite3.Cursor, batch: list[AnyEvent], head: tuple[int, str, str] | None,
                   packer: Packer) -> tuple[list[Appended], int]:
    """Insert what is new in ``batch`` after the last event ``head`` (seq, hash, recorded_at;
    ``_last_event``); returns it and about how many bytes that wrote."""
    if not batch:
        return [], 0
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
