"""Packing the payloads of a log written before packing (``gitops compact``), so an old log
gets the size of a new one (``gitops.store.pack``) with every event and hash unchanged.

- Only a log that verifies is compacted, and it must verify after with the same head:
  packing rewrites how rows are stored, so it must never launder a tampered row into a
  packed one, nor change what any row holds.
- Rows are packed in seq order, each against the last row stored whole of its object before
  it, a batch per write transaction (writers wait at most one batch); a row that deltas
  written since packing are made against stays whole. Each packed row is read back through
  the log's own read path and compared with the text it had before the batch commits.
- On SQLite the file is then vacuumed, which gives the space back; on PostgreSQL the space
  is reused by new rows (``VACUUM FULL events`` gives it back, with the table locked).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from gitops.model.errors import StoreError
from gitops.store.log import EventLog
from gitops.store.pack import PACK_MIN
from gitops.store.rows import READ, logical_row

__all__ = ["CompactResult", "compact_log"]


@dataclass(frozen=True)
class CompactResult:
    packed: int  # rows packed by this run
    before: int  # bytes their payloads took
    after: int  # bytes they take packed
    head: tuple[int, str] | None  # the chain head, the same before and after


def compact_log(log: EventLog, *, batch: int = 2_000, vacuum: bool = True,
                progress: Callable[[int, int], None] | None = None) -> CompactResult:
    """Pack every payload of ``log`` that is stored whole and big enough to pack (see the
    module's doc); ``progress(seq, last seq)`` after each batch."""
    checked = log.verify()
    if not checked.ok:
        raise StoreError(f"{log._where} does not verify ({checked.describe()}): only an intact log is compacted")
    head = (checked.last_seq, checked.head_hash) if checked.last_seq is not None and checked.head_hash else None
    last = log.last_seq()
    after, packed, before_bytes, after_bytes = 0, 0, 0, 0
    while after < last:
        with log._write() as cur:
            rows = cur.execute("SELECT seq, type, resource, payload, packed IS NOT NULL FROM events "
                               "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?", (after, last, batch)).fetchall()
            if not rows:
                break
            done: dict[int, str] = {}
            for seq, type_, resource, payload, is_packed in rows:
                if is_packed or len(payload) < PACK_MIN or cur.execute(
                        "SELECT 1 FROM events WHERE base = ? LIMIT 1", (seq,)).fetchone():
                    continue  # packed, too small, or the keyframe of deltas written since packing
                stored, blob, base = log._packer.pack(cur, seq, type_, resource, payload)
                if blob is None:
                    continue
                cur.execute("UPDATE events SET payload = ?, packed = ?, base = ? WHERE seq = ?",
                            (stored, blob, base, seq))
                done[seq] = payload
                before_bytes += len(payload)
                after_bytes += len(stored) + len(blob)
            for seq, text in done.items():  # read back as every read does, before it commits
                row = cur.execute(f"SELECT {READ} FROM events WHERE seq = ?", (seq,)).fetchone()
                if logical_row(row)["payload"] != text:
                    raise StoreError(f"{log._where}: seq {seq} does not read back as it was once packed; nothing of "
                                     "this batch was written")
            packed += len(done)
            after = int(rows[-1][0])
        if progress:
            progress(after, last)
    checked = log.verify()  # writers may have appended meanwhile: the old head must still be where it was
    row = log.row(head[0]) if head is not None else None
    if not checked.ok or (head is not None and (row is None or row["hash"] != head[1])):
        raise StoreError(f"{log._where} does not verify after it was compacted: {checked.describe()}")
    if vacuum and not log.postgresql:
        try:
            log.conn.execute("VACUUM")
            log.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the smaller file now, not at the last close
        except sqlite3.Error as e:
            raise StoreError(f"{log._where} was compacted but not vacuumed ({e}): its file keeps its size until "
                             "'gitops compact' runs again") from e
    return CompactResult(packed, before_bytes, after_bytes, head)
