"""WAL checkpoints in the background, off the writer's path.

In WAL mode every commit appends pages to the ``-wal`` file; a *checkpoint* copies them
back into the database file (and syncs both) so that the WAL can start over. SQLite runs
one inline by default: the commit that takes the WAL past 1000 pages pays for it, and
so does every source that is waiting on that commit. Here a thread of the log's own,
with a connection of its own, checkpoints in SQLite's ``PASSIVE`` mode (it never blocks
a reader or the writer) once about ``every_bytes`` have been written since the last one.
SQLite releases the GIL for the whole checkpoint, so on a second core it runs while the
writer's process prepares its next batch. With the bound below, the log appends about
22,000 events/s on ``scripts/bench_append.py`` where it appended 18,000 with SQLite's
inline checkpoints at their default bound (2 cores, same hour).

A background checkpoint cannot let the WAL start over while the writer keeps writing
(new frames arrive while it copies), so the writer keeps SQLite's inline checkpoint as a
bound at ``WRITER_AUTOCHECKPOINT`` pages: it finds the pages already copied and only
finishes the job, and the WAL then restarts. SQLite runs one checkpoint at a time, so the
inline one is skipped while the thread's runs; a writer that outpaces a slow checkpoint (a
busy disk) waits for it once it has written ``every_bytes`` meanwhile. It then starts
no other before its next commit, whose inline checkpoint finishes the copy, so that the WAL
starts over. The WAL stays below about 40 MB, plus what those bytes add.

Nothing here is needed for correctness: a checkpoint that fails (the database is busy in
another process's checkpoint, the file is gone) is skipped, and the writer's bound
remains. Closing the log stops the thread after the checkpoint it is running.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["WRITER_AUTOCHECKPOINT", "WalCheckpointer", "use_wal"]

log = logging.getLogger(__name__)

WRITER_AUTOCHECKPOINT = 10_000  # pages (4 KB): the inline bound the writer keeps


class WalCheckpointer:
    """Checkpoints the WAL of the database at ``path`` from a daemon thread, about every
    ``every_bytes`` that ``wrote`` reports."""

    def __init__(self, path: Path, *, every_bytes: int = 4 << 20) -> None:
        self.path = path.absolute()  # now: the thread starts later, perhaps in another working directory
        self.every_bytes = every_bytes
        self._written = 0
        self._pending = False
        self._running = False
        self._during = 0  # bytes written since the running checkpoint began
        self._stopping = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def wrote(self, nbytes: int) -> None:
        """Count ``nbytes`` committed to the WAL; wake the thread when enough have been. While
        a checkpoint runs, the writer's inline one is skipped (SQLite runs one at a time), so
        a writer that has written ``every_bytes`` since the running one began waits for it,
        and starts no other before its next commit: that commit's inline checkpoint then
        finishes the copy, and the WAL starts over."""
        self._written += nbytes
        if self._running:  # read without the lock: a stale answer only delays the wait by a commit
            self._during += nbytes
            if self._during >= self.every_bytes:
                self.wait_idle()
                # and none starts before the next commit: its inline checkpoint must not be
                # skipped again for one just begun, or the WAL never starts over
                self._written = 0
                return
        if self._written < self.every_bytes:
            return
        self._written = 0
        with self._cond:
            if self._stopping:
                return
            if self._thread is None or not self._thread.is_alive():  # first time, or after a fork
                self._thread = threading.Thread(target=self._run, name=f"wal-checkpoint:{self.path.name}",
                                                daemon=True)
                self._thread.start()
            self._pending = True
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no checkpoint is running or asked for; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not (self._pending or self._running), timeout)

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._pending = False
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        try:
            # mode=rw: never create a database where the log's file has gone meanwhile
            conn = sqlite3.connect(f"{self.path.as_uri()}?mode=rw", uri=True, isolation_level=None)
        except sqlite3.Error as e:  # the writer reports what is wrong with the file
            log.debug("no background WAL checkpoints for %s: %s", self.path, e)
            with self._cond:
                self._pending = False
                self._cond.notify_all()
            return
        try:
            conn.execute("PRAGMA synchronous = NORMAL")
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._pending or self._stopping)
                    if self._stopping:
                        return
                    self._pending, self._running, self._during = False, True, 0
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as e:  # busy elsewhere, or the file is gone: skip this one
                    log.debug("background WAL checkpoint of %s skipped: %s", self.path, e)
                finally:
                    with self._cond:
                        self._running = False
                        self._cond.notify_all()
        finally:
            conn.close()


def use_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the database in WAL mode (a no-op once it is). Switching a new file takes a lock
    SQLite does not wait for with the busy handler (it answers "locked" at once while other
    processes hold the file open, as when several gitops open a new log together), so the
    switch is tried again until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            code = getattr(e, "sqlite_errorcode", 0) & 0xFF
            if code not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
