"""The event log on PostgreSQL (psycopg 3): the same log, rows and hashes as the SQLite
file, on a server that many writers share (a fleet: ``gitops run`` per cluster, ``watch``,
``ingest``).

What it shares with the SQLite adapter: every statement of the write path (the inserts,
the idempotency lookup, the chain head, the checkpoints, the current-state, change and
Merkle projections; ``gitops.store.dbapi``) and the read methods whose SQL both engines
accept; what it says in PostgreSQL's own words is here (the schema, state at T, the
filters, the audit read).

**One gapless order with many writers.** Each append transaction starts with
``LOCK TABLE events IN EXCLUSIVE MODE``, as pyeventsourcing's PostgreSQL recorder does:
appenders queue on the lock, readers (ACCESS SHARE) never wait. A writer takes the next
``seq`` from the last committed row only once it holds the lock, and the lock is released
by its commit, so ``seq`` is gapless (no sequence object whose numbers a rollback would
lose) and equal to commit order: a reader tailing ``seq > cursor`` sees event n only after
event n-1 is committed, and never skips one. The same lock makes the chain one chain: each
append links to the head it read under the lock. (A ``SELECT … FOR UPDATE`` of the head row
would serialise as well, but the head row does not exist until the first event, and
``check_head`` reads it as evidence, not as a lock.)

Connection strings are never printed whole: errors name the server by host, port and
database only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from gitops.model.errors import ReadOnlyLogError, StoreError
from gitops.model.times import format_time
from gitops.store import current as current_state
from gitops.store import tree as merkle_tree
from gitops.store.filters import MANAGED, OUT_OF_BAND_PG, select
from gitops.store.integrity import VerifyResult, verify_rows
from gitops.store.log import AUDIT_FACTS, AuditRecord, EventLog, end_read
from gitops.store.pack import Packer, packed_columns
from gitops.store.pg_connection import Connection, NoWal, Rows, where
from gitops.store.rows import READ, to_recorded, unpacked

if TYPE_CHECKING:
    from gitops.events.models import Recorded

__all__ = ["PostgresEventLog", "where"]

SCHEMA = Path(__file__).resolve().parent / "postgresql.sql"
SCHEMA_VERSION = 2
_UPGRADES = {  # version -> what brings a database of that version to the next
    1: "CREATE DOMAIN blob AS BYTEA; ALTER TABLE events ADD COLUMN packed BYTEA; "
       "ALTER TABLE events ADD COLUMN base BIGINT; CREATE INDEX events_base ON events (base) WHERE base IS NOT NULL",
}
_SCHEMA_LOCK = int.from_bytes(b"gitops")  # an advisory lock key of our own, any fixed number
_FACTS = "json_build_array(" + ", ".join(f"p.j -> '{f}'" for f in AUDIT_FACTS) + ")::text"  # p.j: parsed once


class PostgresEventLog(EventLog):
    """The event log in the PostgreSQL database ``dsn`` names. ``create``: make its tables
    when the database has none (a command that only reads never does)."""

    postgresql = True

    def __init__(self, dsn: str, *, create: bool = True, busy_timeout: float = 30.0,
                 snapshot_every: int = current_state.SNAPSHOT_EVERY, read_only: bool = False,
                 immutable: bool = False) -> None:
        self.path = Path(".")  # no file: see ``dsn``
        self.dsn = dsn
        self.snapshot_every = snapshot_every
        self._where = where(dsn)
        self._hooks = []
        self._packer = Packer()
        self.read_only = read_only or immutable
        self.immutable = immutable
        self._busy_timeout = busy_timeout
        if self.read_only and create:
            raise ReadOnlyLogError(f"{self._where} is opened read-only (--read-only): this command writes to the log")
        self._pg_conn = Connection(dsn, self._where, busy_timeout, read_only=self.read_only)
        self.conn = cast(Any, self._pg_conn)  # the shared methods speak DB-API through it
        self.db = cast(Any, Rows(self._pg_conn))  # what sqlite-utils' query() gives the shared read methods
        self._wal = cast(Any, NoWal())
        try:
            version = self._schema_version()
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self._where} has schema version {version}, newer than this gitops knows")
            if version < SCHEMA_VERSION and create:
                self._migrate()
            elif version == 0:
                raise StoreError(f"{self._where} holds no gitops log; create one with 'gitops init --db …'")
            elif version < SCHEMA_VERSION:
                raise StoreError(f"{self._where} has schema version {version}; run 'gitops init --db …' to upgrade it")
            if create:
                self._projections(cast(Any, self._pg_conn))  # rebuilt where another version wrote them
        except BaseException:
            self._pg_conn.close()
            raise

    @property
    def location(self) -> str:
        return self.dsn

    def _schema_version(self) -> int:
        row = self._pg_conn.execute("SELECT to_regclass('gitops_schema') IS NOT NULL").fetchone()
        if not row[0]:
            return 0
        return int(self._pg_conn.execute("SELECT coalesce(max(version), 0) FROM gitops_schema").fetchone()[0])

    def _migrate(self) -> None:
        """Make the tables, or bring those of an older gitops to this schema, once:
        concurrent first opens queue on an advisory lock, taken before the transaction that
        looks at the schema. (Taken inside it, the look would not see tables another process
        made meanwhile: a backend reads the catalog's changes at the start of a transaction,
        not after waiting on an advisory lock.)"""
        cur = self._pg_conn.cursor()
        cur.execute("SELECT pg_advisory_lock(?)", (_SCHEMA_LOCK,))
        try:
            cur.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            if not cur.execute("SELECT to_regclass('gitops_schema') IS NOT NULL").fetchone()[0]:
                cur.script(SCHEMA.read_text())
                cur.executemany("INSERT INTO projections (name, version) VALUES (?, ?)",
                                [("current_state", current_state.VERSION), ("changes", _changes_version()),
                                 ("merkle", _tree_version())])
            else:  # another process may have upgraded it meanwhile: then there is nothing to do
                version = int(cur.execute("SELECT coalesce(max(version), 0) FROM gitops_schema").fetchone()[0])
                for v in range(version, SCHEMA_VERSION):
                    cur.script(_UPGRADES[v])
                cur.execute("DELETE FROM gitops_schema")
            cur.execute("INSERT INTO gitops_schema (version) VALUES (?)", (SCHEMA_VERSION,))
            cur.execute("COMMIT")
        except BaseException:
            end_read(self.conn)
            raise
        finally:
            cur.execute("SELECT pg_advisory_unlock(?)", (_SCHEMA_LOCK,))

    def close(self) -> None:
        self._pg_conn.close()

    @contextmanager
    def _write(self) -> Iterator[Any]:
        if self.read_only:
            raise ReadOnlyLogError(f"{self._where} is opened read-only: nothing is written to it")
        cur = self._pg_conn.cursor()
        cur.execute("BEGIN ISOLATION LEVEL READ COMMITTED")  # each statement sees what committed before it
        try:
            cur.execute("LOCK TABLE events IN EXCLUSIVE MODE")  # appends in one order: see the module's doc
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            end_read(self.conn)
            self._packer.settle(committed=False)
            raise
        self._packer.settle(committed=True)

    def verify(self, *, at_sizes: Collection[int] = (), parallel: bool = True) -> VerifyResult:
        """``EventLog.verify``, the rows streamed from the server (a 1M-event log is never
        held in memory), all read in one snapshot, in one pass (``parallel`` is for files)."""
        cur = self._pg_conn.cursor()
        try:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            head = cur.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
            tree = merkle_tree.MerkleTree(self._pg_conn)
            stored = (tree.size, tree.root())
            rows = cur.stream(f"SELECT {READ} FROM events ORDER BY seq")
            try:
                return verify_rows(unpacked(rows), head, tree=stored, at_sizes=at_sizes)
            finally:
                rows.close()  # a check that stopped at a bad row: the rest is drained before the rollback
        finally:
            end_read(self.conn)

    @contextmanager
    def verify_meanwhile(self, *, at_sizes: Collection[int] = ()) -> Iterator[Callable[[], VerifyResult]]:
        """``verify`` in one pass, when the callable is called (a report on PostgreSQL runs its
        whole integrity check in a process of its own instead: ``gitops.query.report``)."""
        yield lambda: self.verify(at_sizes=at_sizes)

    def state_at(self, side: current_state.Side, *, at: datetime | None = None,
                 axis: Literal["effective", "recorded"] = "effective", until_seq: int | None = None,
                 origin: str | None = None) -> Iterator[Recorded]:
        cur = self._pg_conn.cursor()
        try:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")  # one snapshot for the whole answer
            sql, params = current_state.state_at(cur, side, until_seq=until_seq, axis=axis, origin=origin,
                                                 at=format_time(at) if at is not None else None, postgresql=True)
            cur.execute(f"SELECT e.*, {packed_columns('e')} FROM ({sql}) s JOIN events e ON e.seq = s.seq "
                        "ORDER BY e.resource, e.seq", params)
            yield from map(to_recorded, cur.dicts())
        finally:
            end_read(self.conn)

    def known_resources(self, prefix: str = "", suffix: str = "", *, limit: int = 10_000) -> list[str]:
        sql, params = "SELECT DISTINCT resource FROM current_state WHERE TRUE", list[Any]()
        if prefix:
            sql += " AND resource >= ? AND resource < ?"
            params += [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]
        if suffix:
            sql += " AND right(resource, ?) = ?"
            params += [len(suffix), suffix]
        return [r[0] for r in self._pg_conn.execute(f"{sql} ORDER BY resource LIMIT ?", (*params, limit))]

    def kind_samples(self) -> list[str]:
        sql = "SELECT min(resource) FROM current_state GROUP BY split_part(resource, '/', 1)"
        return [r[0] for r in self._pg_conn.execute(sql)]

    def read_audit(self, *, limit: int | None = None, descending: bool = False,
                   **filters: Any) -> Iterator[AuditRecord]:
        f = select(**filters, postgresql=True)
        oob = "1" if filters.get("out_of_band") else f"CASE WHEN ({OUT_OF_BAND_PG}) AND {MANAGED} THEN 1 ELSE 0 END"
        sql = (f"SELECT seq, effective_at, type, source, resource, actor, revision, {oob}, "
               f"(SELECT fields FROM changes WHERE changes.seq = events.seq), {_FACTS} "
               f"FROM events CROSS JOIN LATERAL (SELECT events.payload::jsonb AS j) AS p{f.where()} "
               f"ORDER BY seq{' DESC' if descending else ''}{f' LIMIT {int(limit)}' if limit is not None else ''}")
        yield from map(AuditRecord._make, self._pg_conn.execute(sql, f.params))

    def first_applied(self, *, start: datetime | None = None, end: datetime | None = None) -> dict[str, datetime]:
        f = select(types=["reconcile.action"], start=start, end=end, result="succeeded", postgresql=True)
        removed_by = ("(SELECT r.revision FROM events r WHERE r.resource = events.resource "
                      "AND r.type = 'desired.removed' AND r.seq < events.seq ORDER BY r.seq DESC LIMIT 1)")
        sql = (f"SELECT c, min(effective_at) FROM (SELECT coalesce(payload::jsonb ->> 'commit', CASE WHEN "
               f"(payload::jsonb ->> 'action') = 'prune' THEN {removed_by} END) AS c, effective_at "
               f"FROM events{f.where()}) a WHERE c IS NOT NULL GROUP BY c")
        return {str(c): datetime.fromisoformat(t.replace("Z", "+00:00"))
                for c, t in self._pg_conn.execute(sql, f.params)}



def _changes_version() -> int:
    from gitops.store import changes

    return changes.VERSION


def _tree_version() -> int:
    from gitops.store import tree

    return tree.VERSION
