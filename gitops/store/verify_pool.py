"""``verify`` of a big SQLite log on every core: the rows in chunks, each checked by a
process of its own, the chunks' answers joined here into exactly what one pass over the
rows says (``gitops.store.integrity.verify_rows``).

Hashing and unpacking each row in Python is most of a verify (10 s of a 1M-event log on
one core), and each row's hash depends only on the row (its stored ``prev_hash`` is part
of it), so chunks are checked apart:

- A chunk is the rows of a range of ``2**k`` seqs, the ranges aligned on ``2**k``: with no
  row missing, its leaves make one perfect subtree of the log's Merkle tree (RFC 9162), so
  its compact range is a part of the whole log's, and the chunks' ranges join into it.
- A worker checks each row of its chunk against its own hash, and each row after the
  first against the row before it; it returns the chunk's first row (seq, prev_hash), its
  last (seq, hash), its compact range, the ranges at the sizes asked for inside it, and
  the first fault it found.
- Joined in order: the first row of each chunk is checked against the last of the chunk
  before; the first fault of the first chunk that has one is the log's first fault.

Workers open the file read-only, in snapshots of their own: rows are only ever appended
(seqs past the head read here are not asked for), so every worker reads the same rows. A
log too small to gain from it, or a machine where no second process can be had, is
verified in one pass.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
from collections.abc import Collection, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, NamedTuple

from gitops.model.merkle import frontier_root, node_hash
from gitops.store.chain import GENESIS, row_hash
from gitops.store.files import read_only_uri
from gitops.store.integrity import Problem, VerifyResult, fault, finish
from gitops.store.rows import READ, unpacked

__all__ = ["CHUNK_BITS", "PARALLEL_MIN", "Chunk", "check_chunk", "join", "verify_file"]

CHUNK_BITS = 16  # a chunk is 65,536 seqs: 16 of a 1M-event log, for two or more workers to share
PARALLEL_MIN = 250_000  # rows below which starting processes costs more than it saves


class Fault(NamedTuple):
    at: int  # rows of the chunk before the bad one
    reason: Problem
    seq: int
    prev_seq: int  # the row before it, in the chunk (at > 0)
    prev_hash: str


class Chunk(NamedTuple):
    intact: int  # rows checked intact
    first: tuple[int, str] | None  # the first row's (seq, stored prev_hash)
    last: tuple[int, str] | None  # the last intact row's (seq, hash)
    frontier: list[bytes]  # the compact range of the intact rows' leaves
    at: dict[int, list[bytes]]  # rows into the chunk -> the compact range there
    fault: Fault | None


def check_chunk(rows: Iterable[tuple[Any, ...]], offsets: Collection[int] = ()) -> Chunk:
    """Check the rows of one chunk (as ``verify_rows`` takes them), up to the first fault;
    the first row is checked against its own hash only (``join`` checks it against the
    chunk before)."""
    count, first, prev_seq, prev_hash = 0, None, 0, GENESIS
    frontier: list[bytes] = []
    at: dict[int, list[bytes]] = {}
    sha = hashlib.sha256
    for row in rows:
        seq, values, stored_prev, stored_hash = row[0], row[1:-2], row[-2], row[-1]
        problem: Problem | None = None
        if row_hash(stored_prev, values) != stored_hash:
            problem = "modified"
        elif first is not None and seq != prev_seq + 1:
            problem = "missing"
        elif first is not None and stored_prev != prev_hash:
            problem = "reordered"
        if problem is not None:
            return Chunk(count, first, (prev_seq, prev_hash) if count else None, frontier, at,
                         Fault(count, problem, seq, prev_seq, prev_hash))
        if first is None:
            first = (seq, stored_prev)
        carry, size = sha(b"\x00" + bytes.fromhex(stored_hash)).digest(), count
        while size & 1:
            carry = node_hash(frontier.pop(), carry)
            size >>= 1
        frontier.append(carry)
        prev_seq, prev_hash = seq, stored_hash
        count += 1
        if count in offsets:
            at[count] = list(frontier)
    return Chunk(count, first, (prev_seq, prev_hash) if count else None, frontier, at, None)


def join(chunks: Iterable[Chunk], bits: int, head: tuple[int, str] | None, *,
         tree: tuple[int, bytes] | None = None) -> VerifyResult:
    """What one pass over the rows says, from the chunks of ``2**bits`` seqs each, in order."""
    checked, prev_seq, prev_hash = 0, 0, GENESIS
    frontier: list[bytes] = []
    roots: dict[int, bytes] = {}
    for c in chunks:
        if c.fault is not None and c.fault.at == 0:  # its first row: its own hash is checked first
            return fault(c.fault.reason, c.fault.seq, prev_seq, prev_hash, checked)
        if c.first is None:
            continue  # no row in the range: the next row found says what is missing
        if c.first[0] != prev_seq + 1:
            return fault("missing", c.first[0], prev_seq, prev_hash, checked)
        if c.first[1] != prev_hash:
            return fault("reordered", c.first[0], prev_seq, prev_hash, checked)
        if c.fault is not None:
            return fault(c.fault.reason, c.fault.seq, c.fault.prev_seq, c.fault.prev_hash, checked + c.fault.at)
        for offset, part in c.at.items():
            roots[checked + offset] = frontier_root(frontier + part)
        if c.intact == 1 << bits:  # a whole chunk: one perfect subtree, pushed as a leaf one level up
            carry, size = c.frontier[0], checked >> bits
            while size & 1:
                carry = node_hash(frontier.pop(), carry)
                size >>= 1
            frontier.append(carry)
        else:  # short: the last one (rows after it would be missing rows, found above)
            frontier.extend(c.frontier)
        checked += c.intact
        assert c.last is not None
        prev_seq, prev_hash = c.last
    return finish(checked, prev_seq, prev_hash, frontier, roots, head, tree)


def _check_range(path: str, immutable: bool, first: int, last: int, offsets: tuple[int, ...]) -> Chunk:
    """A worker's task: the chunk of seqs ``first..last`` of the file at ``path``."""
    conn = sqlite3.connect(read_only_uri(Path(path), immutable), uri=True)
    try:
        rows = conn.execute(f"SELECT {READ} FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last))
        return check_chunk(unpacked(rows), offsets)
    finally:
        conn.close()


def verify_file(path: Path, immutable: bool, last_seq: int, head: tuple[int, str] | None, *,
                tree: tuple[int, bytes] | None, at_sizes: Collection[int] = (), bits: int = CHUNK_BITS,
                workers: int | None = None) -> VerifyResult | None:
    """Verify the rows of seq 1..``last_seq`` of the SQLite file at ``path`` in chunks of
    ``2**bits`` seqs, on ``workers`` processes (default: the cores there are); None where no
    second process can be had (then the caller verifies in one pass)."""
    spans = [(start, min(start + (1 << bits) - 1, last_seq)) for start in range(1, last_seq + 1, 1 << bits)]
    tasks = [(str(path), immutable, a, b, tuple(s - a + 1 for s in at_sizes if a <= s <= b)) for a, b in spans]
    try:
        pool = ProcessPoolExecutor(max_workers=workers or max(2, os.cpu_count() or 2),
                                   mp_context=multiprocessing.get_context("spawn"))
    except (OSError, ImportError, NotImplementedError):
        return None
    try:
        return join(pool.map(_check_range, *zip(*tasks, strict=True)), bits, head, tree=tree)
    except BrokenProcessPool:
        return None
    finally:  # a fault found: the chunks after it are not checked
        pool.shutdown(wait=True, cancel_futures=True)
