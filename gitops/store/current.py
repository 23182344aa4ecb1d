"""The current-state table: for each object of each source, the event that set what is
desired (from ``desired.*``) or what runs (from ``cluster.*``) now.

It is written in the same transaction as the events that change it, so it is never behind
the log; it can always be rebuilt from the log (``rebuild``), and ``expected`` computes
what it must hold, for ``gitops verify --projections``. A row only points at its event: the
object is read from that event's payload, so keeping the table costs a small row per
change, not a second copy of each manifest.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Literal

__all__ = ["VERSION", "Side", "apply", "expected", "rebuild"]

VERSION = 1  # raise it when what the table holds changes: databases are rebuilt on open
Side = Literal["desired", "actual"]

_SETS: dict[str, tuple[Side, bool]] = {
    "desired.applied": ("desired", True), "desired.removed": ("desired", False),
    "cluster.observed": ("actual", True), "cluster.deleted": ("actual", False),
}
# the last desired.*/cluster.* event of each (side, origin, resource), if it sets the object
_EXPECTED = """
SELECT side, origin, resource, seq FROM (
    SELECT CASE WHEN type LIKE 'desired.%' THEN 'desired' ELSE 'actual' END AS side,
           coalesce(json_extract(payload, '$.origin'), '') AS origin, resource, max(seq) AS seq, type
    FROM events
    WHERE type IN ('desired.applied', 'desired.removed', 'cluster.observed', 'cluster.deleted')
      AND resource IS NOT NULL
    GROUP BY 1, 2, 3
) WHERE type IN ('desired.applied', 'cluster.observed')
"""


def apply(cur: sqlite3.Cursor, appended: Sequence[Any]) -> None:
    """Bring the table up to date with ``appended`` (``store.log.Appended`` values), in the
    caller's transaction. Within a batch the last event of an object wins."""
    final: dict[tuple[str, str, str], int | None] = {}
    for a in appended:
        change = _SETS.get(a.event.type)
        if change is None or a.event.resource is None:
            continue
        side, sets = change
        origin = getattr(a.event.payload, "origin", "") or ""
        final[(side, origin, a.event.resource)] = a.seq if sets else None
    if not final:
        return
    upserts = [(*k, seq) for k, seq in final.items() if seq is not None]
    deletes = [k for k, seq in final.items() if seq is None]
    if upserts:
        cur.executemany("INSERT INTO current_state (side, origin, resource, seq) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (side, origin, resource) DO UPDATE SET seq = excluded.seq", upserts)
    if deletes:
        cur.executemany("DELETE FROM current_state WHERE side = ? AND origin = ? AND resource = ?", deletes)


def expected(cur: sqlite3.Cursor) -> set[tuple[str, str, str, int]]:
    """What the table must hold, computed from the log alone."""
    return {(r[0], r[1], r[2], int(r[3])) for r in cur.execute(_EXPECTED)}


def rebuild(cur: sqlite3.Cursor) -> None:
    """Rebuild the table from the log, in the caller's transaction, and record its version."""
    cur.execute("DELETE FROM current_state")
    cur.execute(f"INSERT INTO current_state (side, origin, resource, seq) {_EXPECTED}")
    cur.execute("INSERT INTO projections (name, version) VALUES ('current_state', ?) "
                "ON CONFLICT (name) DO UPDATE SET version = excluded.version", (VERSION,))
