"""The read side of the event log's SQLite adapter: the queries the commands ask (events by
filter, the state now and at any moment, the audit rows, what is known of objects and
clusters), each in SQL through the indexes, never by loading the log. ``EventLog`` (the
write side, integrity and lifecycle: ``gitops.store.log``) is one of these; the PostgreSQL
adapter inherits them, overriding where its SQL differs."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import orjson

from gitops.model.errors import (
    CorruptDatabaseError,
    DatabaseLockedError,
    NotAGitOpsDatabaseError,
    ReadOnlyLogError,
    StoreError,
)
from gitops.model.times import format_time
from gitops.store import current as current_state
from gitops.store.damage import find_damage
from gitops.store.filters import MANAGED, OUT_OF_BAND, payload_field, select
from gitops.store.pack import packed_columns
from gitops.store.rows import LIGHT, READ, Stored, payload_value, to_recorded, to_stored

if TYPE_CHECKING:
    from gitops.events.models import Recorded

__all__ = ["AUDIT_FACTS", "AuditFacts", "AuditRecord", "LogReads", "end_read", "map_error"]


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
_FACTS = f"json_extract(payload, {', '.join(repr('$.' + f) for f in AUDIT_FACTS)})"  # one parse, an array


def map_error(e: sqlite3.Error, where: str) -> StoreError:
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


def end_read(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any; on a damaged file, the error already raised
    says so and this one would only hide it."""
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


class LogReads:
    """The queries of a log, over its connection (``conn``, and sqlite-utils' ``db`` for rows
    by column name); ``postgresql`` says which SQL the filters are written in."""

    conn: Any  # sqlite3.Connection, or the PostgreSQL adapter's connection of the same shape
    db: Any  # sqlite_utils.Database, or the PostgreSQL adapter's rows by name
    postgresql: bool
    _where: str

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
            raise map_error(e, self._where) from e

    def current_payloads(self, side: current_state.Side, *, origin: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(resource, payload) of what ``current(side, origin=origin)`` reads, the payload as
        stored, without building models: for a source comparing what it sees with what the
        log holds (every object, on every pass), where only a few fields are read."""
        sql = (f"SELECT e.seq, e.type, e.resource, e.payload, {packed_columns('e')} FROM current_state c "
               "JOIN events e ON e.seq = c.seq WHERE c.side = ? AND c.present = 1 AND c.origin = ? ORDER BY c.resource")
        try:
            for seq, type_, resource, payload, *packed in self.conn.execute(sql, (side, origin)):
                yield resource, payload_value(seq, type_, payload, *packed)
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e

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
            raise map_error(e, self._where) from e
        finally:
            end_read(self.conn)

    def distinct_resources(self, types: Sequence[str]) -> list[str]:
        """Every ResourceKey string that events of ``types`` name (for source selection)."""
        marks = ", ".join("?" * len(types))
        sql = f"SELECT DISTINCT resource FROM events WHERE resource IS NOT NULL AND type IN ({marks})"
        return [r[0] for r in self.conn.execute(sql, list(types))]

    def managed_resources(self) -> set[str]:
        """The objects the current-state table says Git has desired at some time (``MANAGED``,
        the out-of-band test, reads the same rows)."""
        try:
            return {r[0] for r in self.conn.execute("SELECT DISTINCT resource FROM current_state WHERE side = "
                                                    "'desired'")}
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e

    def known_ids(self, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` the log holds an event of."""
        out: set[str] = set()
        try:
            for i in range(0, len(ids), 500):
                chunk = list(ids[i:i + 500])
                out.update(r[0] for r in self.conn.execute(
                    f"SELECT id FROM events WHERE id IN ({', '.join('?' * len(chunk))})", chunk))
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e
        return out

    def current_events(self, side: current_state.Side, *, origin: str,
                       resources: Sequence[str]) -> dict[str, tuple[str, str, str | None]]:
        """For each of ``resources`` the current-state table has an entry for (on ``side``, of
        ``origin``), the event it points at (the last one recorded about it, a tombstone too):
        its id, type and revision."""
        out: dict[str, tuple[str, str, str | None]] = {}
        try:
            for i in range(0, len(resources), 500):
                chunk = list(resources[i:i + 500])
                out.update((r[0], (r[1], r[2], r[3])) for r in self.conn.execute(
                    "SELECT c.resource, e.id, e.type, e.revision FROM current_state c JOIN events e ON e.seq = c.seq "
                    f"WHERE c.side = ? AND c.origin = ? AND c.resource IN ({', '.join('?' * len(chunk))})",
                    [side, origin, *chunk]))
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e
        return out

    def holds(self, resource: str) -> bool:
        """Whether any event names ``resource`` (a canonical key)."""
        try:
            return self.conn.execute("SELECT 1 FROM events WHERE resource = ? LIMIT 1", (resource,)).fetchone() \
                is not None
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e

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
            raise map_error(e, self._where) from e

    def last_state_seq(self, side: current_state.Side) -> int:
        """The seq of the last event that changed ``side`` (0: none): whether it moved, cheaply."""
        try:
            row = self.conn.execute("SELECT max(seq) FROM current_state WHERE side = ?", (side,)).fetchone()
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e
        return int(row[0] or 0)

    def clusters(self) -> list[str]:
        """The origins of the clusters the log holds objects of (``cluster:NAME``), sorted."""
        try:
            return [r[0] for r in self.conn.execute(
                "SELECT DISTINCT origin FROM current_state WHERE side = 'actual' ORDER BY origin")]
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e

    def kind_samples(self) -> list[str]:
        """One key of each kind the log holds objects of (its kind, group and scope)."""
        sql = ("SELECT min(resource) FROM current_state GROUP BY substr(resource, 1, instr(resource, '/') - 1)")
        try:
            return [r[0] for r in self.conn.execute(sql)]
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e

    def last_seq(self) -> int:
        try:
            row = self.conn.execute("SELECT max(seq) FROM events").fetchone()
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e
        return int(row[0] or 0)

    def seq_recorded_before(self, t: datetime) -> int:
        """The last seq this log recorded before ``t`` (0 when none): where a reader that wants
        what was recorded since ``t`` starts. One index lookup: ``recorded_at`` never
        decreases with seq."""
        try:
            row = self.conn.execute("SELECT seq FROM events WHERE recorded_at >= ? ORDER BY recorded_at, seq "
                                    "LIMIT 1", (format_time(t),)).fetchone()
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e
        return int(row[0]) - 1 if row is not None else self.last_seq()

    def count(self) -> int:
        try:
            return int(self.conn.execute("SELECT count(*) FROM events").fetchone()[0])
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e

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
            raise map_error(e, self._where) from e
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
            raise map_error(e, self._where) from e

    def read_stored(self, *, limit: int | None = None, descending: bool = False,
                    **filters: Any) -> Iterator[Stored]:
        """The events ``read(...)`` gives, as stored: no event model is built
        (``gitops.store.rows.Stored``)."""
        f = select(**filters, postgresql=self.postgresql)
        sql = f"SELECT {LIGHT} FROM events{f.where()} ORDER BY seq{' DESC' if descending else ''}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        try:
            yield from map(to_stored, self.conn.execute(sql, f.params))
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e

    def count_where(self, **filters: Any) -> int:
        """How many events ``read(**filters)`` would give, counted in SQL."""
        f = select(**filters, postgresql=self.postgresql)
        try:
            return int(self.conn.execute(f"SELECT count(*) FROM events{f.where()}", f.params).fetchone()[0])
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e

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
            raise map_error(e, self._where) from e

    def commit_objects(self, *, start: datetime | None = None) -> Iterator[
            tuple[str, str, str, Literal["created", "updated", "removed"]]]:
        """(commit, origin, resource, change) of each ``desired.*`` event from ``start`` on
        valid time: what each commit did to which object in the desired state of which Git
        source (one commit read by two sources, as two applications' paths of one branch,
        did something else to each), without building events. ``change``: removed;
        updated where the change projection has a row for it; else created. Told apart in
        SQL: a month of a busy log is hundreds of thousands of rows."""
        f = select(types=["desired.applied", "desired.removed"], start=start, postgresql=self.postgresql)
        f.add("revision IS NOT NULL AND resource IS NOT NULL")
        origin = payload_field("origin", self.postgresql)
        sql = (f"SELECT revision, coalesce({origin}, ''), resource, CASE WHEN type = 'desired.removed' THEN 'removed' "
               "WHEN EXISTS "
               "(SELECT 1 FROM changes WHERE changes.seq = events.seq) THEN 'updated' ELSE 'created' END "
               f"FROM events{f.where()} ORDER BY seq")
        try:
            yield from self.conn.execute(sql, f.params)
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e

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
            raise map_error(e, self._where) from e
