"""Copying a log to another store (``gitops copy``: a SQLite file up to PostgreSQL, or back)
with every row exactly as it is: same seq, same times, same payload (packed or not), same hashes, so
that the copy's chain head and Merkle root are the original's and every signed checkpoint
of the original verifies against the copy.

- Rows go over in batches, each in one transaction of the target with the projections it
  moves (current state, changes, Merkle tree), so a copy killed at any point resumes where
  its last batch committed: it starts after the target's last event, once it has checked
  that the target holds exactly the source's events up to there (same hash at that seq).
- Every row is checked against the chain as it is read (its own hash, its link to the one
  before): a damaged or tampered source is refused at its first bad row, not carried over.
- The source's checkpoints (where each source stopped) go over with the last batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gitops.model.errors import StoreError
from gitops.store.chain import GENESIS, row_hash
from gitops.store.integrity import check_head
from gitops.store.log import Appended, EventLog
from gitops.store.rows import COLUMNS, INSERT, READ, STORED, to_recorded, unpacked

__all__ = ["CopyResult", "copy_log"]


@dataclass(frozen=True)
class CopyResult:
    copied: int  # events copied by this run
    resumed_after: int  # the seq the target already held when it started
    head: tuple[int, str] | None  # the target's chain head after it


def copy_log(source: EventLog, target: EventLog, *, batch: int = 5_000,
             progress: Callable[[int, int], None] | None = None) -> CopyResult:
    """Copy the events of ``source`` that ``target`` lacks (see the module's doc);
    ``progress(done, total)`` after each batch."""
    start = target.last_seq()
    total = source.last_seq()
    if start:
        theirs, ours = target.row(start), source.row(start)
        if ours is None or theirs is None or theirs["hash"] != ours["hash"]:
            raise StoreError(f"{target._where} is not a copy of {source._where}: it holds {start} events and they "
                             f"differ at seq {start} (copy into an empty log)")
    prev = GENESIS if start == 0 else str(target.row(start)["hash"])  # type: ignore[index]
    after, copied = start, 0
    while after < total:
        stored = source.conn.execute(f"SELECT {READ} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                     (after, batch)).fetchall()
        if not stored:
            break
        rows = list(unpacked(stored))  # as hashed: a packed payload as its text (stored as it is, packed)
        for r in rows:
            seq, values, prev_hash, hash_ = r[0], r[1:-2], r[-2], r[-1]
            if seq != after + 1 or prev_hash != prev or row_hash(prev_hash, values) != hash_:
                raise StoreError(f"{source._where} is not intact at seq {seq}: 'gitops verify' says what; nothing "
                                 f"after seq {after} was copied")
            prev, after = hash_, seq
        last_batch = after >= total
        with target._write() as cur:
            head = check_head(cur, target._where)
            if (head[0] if head else 0) != int(rows[0][0]) - 1:
                raise StoreError(f"{target._where} was written to while it was copied into (it is at seq "
                                 f"{head[0] if head else 0})")
            cur.executemany(INSERT, [tuple(r[:len(STORED)]) for r in stored])
            cur.execute("INSERT INTO chain_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE "
                        "SET seq = excluded.seq, hash = excluded.hash", (after, prev))
            target._project(cur, [_appended(r) for r in rows])
            if last_batch:
                checkpoints = source.conn.execute("SELECT name, value, seq, updated_at FROM checkpoints").fetchall()
                cur.executemany("INSERT INTO checkpoints (name, value, seq, updated_at) VALUES (?, ?, ?, ?) "
                                "ON CONFLICT (name) DO UPDATE SET value = excluded.value, seq = excluded.seq, "
                                "updated_at = excluded.updated_at", [tuple(c) for c in checkpoints])
        copied += len(rows)
        if progress:
            progress(after, total)
    return CopyResult(copied, start, (after, prev) if after else None)


def _appended(row: tuple[object, ...]) -> Appended:
    """A stored row as the projections take it (what an append hands them)."""
    named = dict(zip(COLUMNS, row, strict=True))
    recorded = to_recorded(named)
    return Appended(recorded.seq, str(named["recorded_at"]), recorded.hash, recorded.event, str(named["payload"]))

