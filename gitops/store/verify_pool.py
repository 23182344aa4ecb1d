"""``verify`` of a big SQLite log on every core: the rows in chunks, each checked by a
process of its own (``gitops.store.integrity.check_chunk``), the chunks' answers joined
(``integrity.join``) into exactly what one pass over the rows says: ``verify_rows`` is
the same check over one chunk of every row.

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

``SharedCheck`` is the same check started on one worker while this process does other
work (a report makes its tables), which then joins in: it checks here, from the last
chunk back, the chunks the worker has not started.

Workers open the file read-only, in snapshots of their own: rows are only ever appended
(seqs past the head read here are not asked for), so every worker reads the same rows. A
log too small to gain from it, or a machine where no second process can be had, is
verified in one pass.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Collection, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from gitops.store.files import read_only_uri
from gitops.store.integrity import Chunk, VerifyResult, check_chunk, join
from gitops.store.rows import READ, unpacked

__all__ = ["CHUNK_BITS", "PARALLEL_MIN", "SharedCheck", "verify_file"]

CHUNK_BITS = 16  # a chunk is 65,536 seqs: 16 of a 1M-event log, for two or more workers to share
PARALLEL_MIN = 250_000  # rows below which starting processes costs more than it saves


def _check_range(path: str, immutable: bool, first: int, last: int, offsets: tuple[int, ...]) -> Chunk:
    """A worker's task: the chunk of seqs ``first..last`` of the file at ``path``."""
    conn = sqlite3.connect(read_only_uri(Path(path), immutable), uri=True)
    try:
        rows = conn.execute(f"SELECT {READ} FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last))
        return check_chunk(unpacked(rows), offsets)
    finally:
        conn.close()


def _tasks(path: Path, immutable: bool, last_seq: int, at_sizes: Collection[int],
           bits: int) -> list[tuple[str, bool, int, int, tuple[int, ...]]]:
    """``_check_range``'s arguments for each chunk of ``2**bits`` seqs of 1..``last_seq``."""
    spans = [(start, min(start + (1 << bits) - 1, last_seq)) for start in range(1, last_seq + 1, 1 << bits)]
    return [(str(path), immutable, a, b, tuple(s - a + 1 for s in at_sizes if a <= s <= b)) for a, b in spans]


def verify_file(path: Path, immutable: bool, last_seq: int, head: tuple[int, str] | None, *,
                tree: tuple[int, bytes] | None, at_sizes: Collection[int] = (), bits: int = CHUNK_BITS,
                workers: int | None = None) -> VerifyResult | None:
    """Verify the rows of seq 1..``last_seq`` of the SQLite file at ``path`` in chunks of
    ``2**bits`` seqs, on ``workers`` processes (default: the cores there are); None where no
    second process can be had (then the caller verifies in one pass)."""
    tasks = _tasks(path, immutable, last_seq, at_sizes, bits)
    width = workers or max(2, os.cpu_count() or 2)
    try:
        pool = ProcessPoolExecutor(max_workers=width, mp_context=multiprocessing.get_context("spawn"))
    except (OSError, ImportError, NotImplementedError):
        return None
    try:
        return join(_in_order(pool, tasks, 2 * width), bits, head, tree=tree)
    except BrokenProcessPool:
        return None
    finally:  # a fault found: no chunk after it is begun, and the few begun run out (none is cancelled)
        pool.shutdown(wait=True)


def _in_order(pool: ProcessPoolExecutor, tasks: list[tuple[str, bool, int, int, tuple[int, ...]]],
              ahead: int) -> Iterator[Chunk]:
    """The chunks' answers in order, ``ahead`` of them submitted at a time (every worker has
    the next one at hand), each next one submitted as one is taken. Submitted as they are
    needed rather than all at once, none has to be cancelled when the caller stops early:
    with a cancelled future, a worker that dies then makes Python 3.11's executor fail on it
    and print a thread's traceback."""
    waiting: deque[Future[Chunk]] = deque()
    left = iter(tasks)
    for task in left:
        waiting.append(pool.submit(_check_range, *task))
        if len(waiting) == ahead:
            break
    while waiting:
        done = waiting.popleft().result()
        following = next(left, None)
        if following is not None:
            waiting.append(pool.submit(_check_range, *following))
        yield done


class SharedCheck:
    """``verify_file`` shared between one worker process and this one: ``start`` hands the
    worker the chunks one at a time from the first (a thread of this process feeds it) while
    this process does other work; ``finish`` then checks here, from the last back, the chunks
    the worker has not begun, and joins them all. Nothing is cancelled: a cancelled future
    of a pool that breaks later stops Python 3.11's executor from failing the others."""

    def __init__(self, pool: ProcessPoolExecutor, tasks: list[tuple[str, bool, int, int, tuple[int, ...]]],
                 bits: int, head: tuple[int, str] | None, tree: tuple[int, bytes] | None) -> None:
        self._pool, self._tasks, self._bits, self._head, self._tree = pool, tasks, bits, head, tree
        self._lock = threading.Lock()
        self._todo = deque(range(len(tasks)))  # the chunks nobody has begun
        self._given: dict[int, Future[Chunk]] = {}  # the worker's
        self._feeder = threading.Thread(target=self._feed, name="gitops-verify-feeder", daemon=True)
        self._feeder.start()
        self.here = 0  # how many chunks ``finish`` checked in this process

    @classmethod
    def start(cls, path: Path, immutable: bool, last_seq: int, head: tuple[int, str] | None, *,
              tree: tuple[int, bytes] | None, at_sizes: Collection[int] = (),
              bits: int | None = None) -> SharedCheck | None:
        """Start it, in chunks of ``2**bits`` seqs (default: small enough to share, about 16,
        of 1,024 seqs or more); None where no second process can be had (then the caller
        verifies in one pass)."""
        bits = bits or max(10, min(CHUNK_BITS, last_seq.bit_length() - 4))
        try:
            pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        except (OSError, ImportError, NotImplementedError):
            return None
        try:
            return cls(pool, _tasks(path, immutable, last_seq, at_sizes, bits), bits, head, tree)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise

    def _feed(self) -> None:
        """Give the worker the first chunk nobody has begun, wait for it, again; a pool that
        cannot take one (broken, shut down) leaves the rest to ``finish``."""
        while True:
            with self._lock:
                if not self._todo:
                    return
                i = self._todo.popleft()
                try:
                    self._given[i] = future = self._pool.submit(_check_range, *self._tasks[i])
                except (BrokenProcessPool, RuntimeError):
                    self._todo.appendleft(i)
                    return
            if future.exception() is not None:  # waits for it; a failed chunk fails the join
                return

    def finish(self) -> VerifyResult | None:
        """The answer ``verify`` gives; None when the worker died (then verify in one pass)."""
        mine: dict[int, Chunk] = {}
        while True:
            with self._lock:
                if not self._todo:
                    break
                i = self._todo.pop()
            mine[i] = _check_range(*self._tasks[i])
        self.here = len(mine)
        try:
            return join((mine[i] if i in mine else self._given[i].result() for i in range(len(self._tasks))),
                        self._bits, self._head, tree=self._tree)
        except BrokenProcessPool:
            return None

    def close(self) -> None:
        with self._lock:
            self._todo.clear()  # the feeder gives no more
        self._pool.shutdown(wait=True, cancel_futures=False)
        self._feeder.join()
