"""The current-state table and its snapshots: the state now, and the state at any moment,
without folding the whole log.

``current_state`` holds, for each object of each source, the last event about it and
whether that event set it or removed it (a tombstone). It is written in the same
transaction as the events; it can always be rebuilt from the log (``rebuild``), and
``expected`` computes what it must hold (``gitops verify --projections``). A row only
points at its event: the object is read from that event's payload.

Every ``SNAPSHOT_EVERY`` events the table is copied into ``snapshot_entries``. The state at
a moment is then the nearest snapshot before it merged, object by object and by the higher
sequence number, with the events after it (``state_at``):
- by sequence (a commit) or recorded time: the events after the snapshot's last one;
- by valid time T: a snapshot whose latest valid time t is at most T holds only events of
  valid time <= t <= T; the events it lacks are those of valid time in (t, T], and those
  recorded after it with a valid time <= t (a back-fill records the past late). Both are
  read through indexes, and the highest sequence per object among them and the snapshot is
  exactly what a fold of every event of valid time <= T would leave.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from gitops.store.dbapi import Cursor

__all__ = ["ACTUAL_TYPES", "DESIRED_TYPES", "SETS", "SNAPSHOT_EVERY", "STATE_TYPES", "VERSION", "Side", "apply",
           "expected", "rebuild", "state_at"]

VERSION = 2  # raise it when what the tables hold changes: databases are rebuilt on open
SNAPSHOT_EVERY = 50_000  # events between snapshots: a past moment folds at most about this many
Side = Literal["desired", "actual"]

DESIRED_TYPES = ("desired.applied", "desired.removed")  # the event types that set or remove what Git desires
ACTUAL_TYPES = ("cluster.observed", "cluster.deleted")  # ... and what runs
STATE_TYPES = DESIRED_TYPES + ACTUAL_TYPES
SETS: dict[str, tuple[Side, bool]] = {  # event type -> the side it is about, whether it sets the object
    "desired.applied": ("desired", True), "desired.removed": ("desired", False),
    "cluster.observed": ("actual", True), "cluster.deleted": ("actual", False),
}
_SIDE = "CASE WHEN type LIKE 'desired.%' THEN 'desired' ELSE 'actual' END"
_ORIGIN = "coalesce(json_extract(payload, '$.origin'), '')"
_PRESENT = "type IN ('desired.applied', 'cluster.observed')"
# the last desired.*/cluster.* event of each (side, origin, resource), and whether it sets the object
_EXPECTED = f"""
SELECT side, origin, resource, seq, present FROM (
    SELECT {_SIDE} AS side, {_ORIGIN} AS origin, resource, max(seq) AS seq, {_PRESENT} AS present
    FROM events WHERE type IN {STATE_TYPES} AND resource IS NOT NULL
    GROUP BY 1, 2, 3
)
"""


def apply(cur: Cursor, appended: Sequence[Any], *, snapshot_every: int = SNAPSHOT_EVERY) -> None:
    """Bring the table up to date with ``appended`` (``store.log.Appended`` values), in the
    caller's transaction (within a batch the last event of an object wins), and take a
    snapshot when ``snapshot_every`` events have passed since the last one."""
    final: dict[tuple[str, str, str], tuple[int, int]] = {}
    for a in appended:
        change = SETS.get(a.event.type)
        if change is None or a.event.resource is None:
            continue
        side, sets = change
        final[(side, getattr(a.event.payload, "origin", "") or "", a.event.resource)] = (a.seq, int(sets))
    if final:
        cur.executemany("INSERT INTO current_state (side, origin, resource, seq, present) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (side, origin, resource) DO UPDATE SET seq = excluded.seq, "
                        "present = excluded.present", [(*k, *v) for k, v in final.items()])
    if appended:
        last = cur.execute("SELECT coalesce(max(seq), 0) FROM snapshots").fetchone()[0]
        if appended[-1].seq - last >= snapshot_every:
            _snapshot(cur)


def _snapshot(cur: Cursor) -> None:
    sid = cur.execute("INSERT INTO snapshots (seq, effective_at, recorded_at) "
                      "SELECT max(seq), max(effective_at), max(recorded_at) FROM events RETURNING id").fetchone()[0]
    cur.execute("INSERT INTO snapshot_entries (snapshot, side, origin, resource, seq, present) "
                "SELECT ?, side, origin, resource, seq, present FROM current_state", (sid,))


_EXPECTED_PG = f"""
SELECT DISTINCT ON (side, origin, resource) side, origin, resource, seq, present FROM (
    SELECT {_SIDE} AS side, coalesce(payload::jsonb ->> 'origin', '') AS origin, resource, seq,
           CASE WHEN {_PRESENT} THEN 1 ELSE 0 END AS present
    FROM events WHERE type IN {STATE_TYPES} AND resource IS NOT NULL
) AS e ORDER BY side, origin, resource, seq DESC
"""
"""``_EXPECTED`` in PostgreSQL's SQL (a cursor of ``gitops.store.postgres`` says ``postgresql``)."""


def _expected_sql(cur: Cursor) -> str:
    return _EXPECTED_PG if getattr(cur, "postgresql", False) else _EXPECTED


def expected(cur: Cursor) -> set[tuple[str, str, str, int, int]]:
    """What the table must hold, computed from the log alone."""
    return {(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in cur.execute(_expected_sql(cur))}


def rebuild(cur: Cursor) -> None:
    """Rebuild the table from the log, in the caller's transaction, and record its version.
    Snapshots are dropped and start again from here."""
    cur.execute("DELETE FROM current_state")
    cur.execute(f"INSERT INTO current_state (side, origin, resource, seq, present) {_expected_sql(cur)}")
    cur.execute("DELETE FROM snapshot_entries")
    cur.execute("DELETE FROM snapshots")
    cur.execute("INSERT INTO projections (name, version) VALUES ('current_state', ?) "
                "ON CONFLICT (name) DO UPDATE SET version = excluded.version", (VERSION,))


def state_at(cur: Cursor, side: Side, *, until_seq: int | None = None, at: str | None = None,
             axis: Literal["effective", "recorded"] = "effective",
             origin: str | None = None, postgresql: bool = False) -> tuple[str, list[Any]]:
    """The SQL (and its parameters) that selects the seqs of the events that set each object
    present on ``side`` after event ``until_seq``, or at time ``at`` (RFC 3339, as stored)
    on ``axis``; of ``origin`` only when given (``postgresql``: in its SQL). One query: the
    nearest snapshot's entries and the events after it, the highest seq per object, its
    tombstones dropped."""
    if until_seq is not None:
        snap = cur.execute("SELECT id, seq FROM snapshots WHERE seq <= ? ORDER BY seq DESC LIMIT 1",
                           (until_seq,)).fetchone()
        after, params = "seq > ? AND seq <= ?", [snap[1] if snap else 0, until_seq]
    elif axis == "recorded":
        snap = cur.execute("SELECT id, seq FROM snapshots WHERE recorded_at <= ? ORDER BY seq DESC LIMIT 1",
                           (at,)).fetchone()
        after, params = "seq > ? AND recorded_at <= ?", [snap[1] if snap else 0, at]
    else:
        snap = cur.execute("SELECT id, seq, effective_at FROM snapshots WHERE effective_at <= ? "
                           "ORDER BY seq DESC LIMIT 1", (at,)).fetchone()
        if snap is None:
            after, params = "effective_at <= ?", [at]
        else:
            after = "((effective_at > ? AND effective_at <= ?) OR (seq > ? AND effective_at <= ?))"
            params = [snap[2], at, snap[1], snap[2]]
    types = DESIRED_TYPES if side == "desired" else ACTUAL_TYPES
    if postgresql:  # the same, in PostgreSQL's words: DISTINCT ON keeps each object's highest seq
        sql = f"""
        WITH candidates (origin, resource, seq, present) AS (
            SELECT origin, resource, seq, present FROM snapshot_entries WHERE snapshot = ? AND side = ?
            UNION ALL
            SELECT coalesce(payload::jsonb ->> 'origin', ''), resource, seq, CASE WHEN {_PRESENT} THEN 1 ELSE 0 END
            FROM events WHERE type IN (?, ?) AND resource IS NOT NULL AND {after}
        ),
        last AS (
            SELECT DISTINCT ON (origin, resource) origin, resource, seq, present FROM candidates
            ORDER BY origin, resource, seq DESC
        )
        SELECT seq FROM last WHERE present = 1{' AND origin = ?' if origin is not None else ''}"""
        return sql, [snap[0] if snap else 0, side, *types, *params, *([origin] if origin is not None else [])]
    sql = f"""
        WITH candidates (origin, resource, seq, present) AS (
            SELECT origin, resource, seq, present FROM snapshot_entries WHERE snapshot = ? AND side = ?
            UNION ALL
            SELECT {_ORIGIN}, resource, seq, {_PRESENT} FROM events
            WHERE type IN (?, ?) AND resource IS NOT NULL AND {after}
        ),
        last (origin, resource, seq, present) AS (  -- max(): SQLite takes present from that row
            SELECT origin, resource, max(seq), present FROM candidates GROUP BY origin, resource
        )
        SELECT seq FROM last WHERE present{' AND origin = ?' if origin is not None else ''}"""
    return sql, [snap[0] if snap else 0, side, *types, *params, *([origin] if origin is not None else [])]
