"""What a log says of its own integrity: one stored row, whether the change projection's
rows of some events match the log, the Merkle tree's head and the tree itself (for
checkpoints and proofs), and ``verify`` (``gitops.store.integrity``; on every core:
``gitops.store.verify_pool``). ``EventLog`` inherits it; the PostgreSQL adapter overrides
``verify`` and ``verify_meanwhile``."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gitops.model.errors import CorruptDatabaseError
from gitops.store import changes
from gitops.store import tree as merkle_tree
from gitops.store.integrity import VerifyResult, check_head, verify_rows
from gitops.store.reads import end_read, map_error
from gitops.store.rows import READ, logical_row, unpacked

__all__ = ["LogChecks"]


class LogChecks:
    """The integrity reads of a log over its connection ``conn`` (its file at ``path``)."""

    conn: Any  # sqlite3.Connection, or the PostgreSQL adapter's connection of the same shape
    path: Path
    immutable: bool
    _where: str

    def row(self, seq: int) -> dict[str, Any] | None:
        """Event ``seq``'s stored row (its hashed fields, prev_hash, hash), or None."""
        try:
            r = self.conn.execute(f"SELECT {READ} FROM events WHERE seq = ?", (seq,)).fetchone()
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e
        return None if r is None else logical_row(r)

    def check_changes(self, seqs: Collection[int]) -> list[str]:
        """How the change projection's rows of the events ``seqs`` differ from what the log
        says (``changes.check``; empty when they do not): the fields a command shows."""
        cur = self.conn.cursor()
        try:
            cur.execute("BEGIN")
            return changes.check(cur, seqs)
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e
        finally:
            cur.close()
            end_read(self.conn)

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
            raise map_error(e, self._where) from e
        finally:
            cur.close()
            end_read(self.conn)

    def tree(self) -> merkle_tree.MerkleTree:
        """The Merkle tree, for proofs (read it in one transaction with what it proves)."""
        return merkle_tree.MerkleTree(self.conn)

    def verify(self, *, at_sizes: Collection[int] = (), parallel: bool = True) -> VerifyResult:
        """Recompute the chain and the Merkle root over every row, in bounded memory; stop at
        the first fault (``gitops.store.integrity``). ``at_sizes``: also give the root of
        the tree of each of these sizes (to check signed checkpoints against). A big log is
        checked in chunks on every core (``gitops.store.verify_pool``) unless ``parallel``
        is False; the answer is the same."""
        cur = self.conn.cursor()
        try:
            cur.execute("BEGIN")  # one snapshot for the rows, the recorded head and the tree
            head, stored, last = _verify_start(cur, self.conn)
            from gitops.store.verify_pool import PARALLEL_MIN, verify_file  # imported by verify alone

            if parallel and last >= PARALLEL_MIN:
                found = verify_file(self.path, self.immutable, last, head, tree=stored, at_sizes=at_sizes)
                if found is not None:
                    return found
            rows = cur.execute(f"SELECT {READ} FROM events ORDER BY seq")
            return verify_rows(unpacked(rows), head, tree=stored, at_sizes=at_sizes)
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e
        finally:
            cur.close()
            end_read(self.conn)

    @contextmanager
    def verify_meanwhile(self, *, at_sizes: Collection[int] = ()) -> Iterator[Callable[[], VerifyResult]]:
        """``verify`` started on a second process while this one does other work (a report
        makes its tables: ``gitops.query.report``); the callable yielded then checks here the
        chunks the other has not begun (``verify_pool.SharedCheck``). The same answer."""
        from gitops.store.verify_pool import SharedCheck

        cur = self.conn.cursor()
        try:
            cur.execute("BEGIN")
            head, stored, last = _verify_start(cur, self.conn)
        except sqlite3.Error as e:
            raise map_error(e, self._where) from e
        finally:
            cur.close()
            end_read(self.conn)
        check = SharedCheck.start(self.path, self.immutable, last, head, tree=stored, at_sizes=at_sizes)
        if check is None:
            yield lambda: self.verify(at_sizes=at_sizes, parallel=False)
            return

        def result() -> VerifyResult:
            try:
                found = check.finish()
            except sqlite3.Error as e:  # raised by a chunk's read (here or in the worker): a damaged page, say
                raise map_error(e, self._where) from e
            return found if found is not None else self.verify(at_sizes=at_sizes, parallel=False)

        try:
            yield result
        finally:
            check.close()


def _verify_start(cur: sqlite3.Cursor, conn: sqlite3.Connection) -> tuple[tuple[int, str] | None, tuple[int, bytes],
                                                                          int]:
    """What a verify checks the rows against, read in its snapshot: the recorded head, the
    stored tree (size, root), and the last seq."""
    head = cur.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
    tree = merkle_tree.MerkleTree(conn)
    last = int(cur.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
    return (None if head is None else (int(head[0]), str(head[1]))), (tree.size, tree.root()), last
