"""The log's Merkle tree (RFC 9162, ``gitops.model.merkle``), kept in the same transaction
as the events: the leaf of event seq s is ``SHA-256(0x00 || its hash)`` at index s-1.

- ``apply`` (an append): the compact range is read, the new leaves are added to it, and it
  is written back with the perfect subtrees of 2^TILE leaves or more that they completed:
  O(log n) per append, whatever the size of the log.
- ``MerkleTree`` (reads): the root of the tree of any size, inclusion and consistency
  proofs. A subtree's root is a stored node when it is one, else it is computed from the
  nodes and leaves below it (a range below 2^TILE leaves reads its events' hashes): a proof
  reads O(log n) rows and at most a few hundred hashes.
- ``rebuild``: the tree of an existing log, in one pass over its hashes.

The tree proves nothing by itself: whoever can rewrite the events can rebuild it. What it
gives is roots to sign (``gitops checkpoint``) and proofs that anyone holding a signed root
checks without the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gitops.model.errors import CorruptDatabaseError
from gitops.model.merkle import (
    consistency_proof,
    frontier_extend,
    frontier_root,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    split,
)
from gitops.store.dbapi import Connection, Cursor

__all__ = ["TILE", "VERSION", "MerkleTree", "apply", "rebuild"]

VERSION = 1
TILE = 8  # subtrees of 2^8 = 256 leaves and more are stored; smaller ones are computed
_HASH = 32


def _frontier(cur: Cursor) -> tuple[int, list[bytes]]:
    row = cur.execute("SELECT size, hashes FROM merkle_frontier WHERE id = 1").fetchone()
    if row is None:
        return 0, []
    size, blob = int(row[0]), bytes(row[1])
    return size, [blob[i:i + _HASH] for i in range(0, len(blob), _HASH)]


def _write(cur: Cursor, size: int, frontier: list[bytes], nodes: list[tuple[int, int, bytes]]) -> None:
    if nodes:
        cur.executemany("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?) "
                        "ON CONFLICT (level, idx) DO UPDATE SET hash = excluded.hash", nodes)
    cur.execute("INSERT INTO merkle_frontier (id, size, hashes) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE "
                "SET size = excluded.size, hashes = excluded.hashes", (size, b"".join(frontier)))


def apply(cur: Cursor, appended: Sequence[Any]) -> None:
    """Add ``appended`` (``store.log.Appended`` values, in seq order) to the tree."""
    size, frontier = _frontier(cur)
    if appended[0].seq != size + 1:
        raise CorruptDatabaseError(f"the Merkle tree holds {size} events but the log's next is seq "
                                   f"{appended[0].seq}: the database was changed outside gitops; "
                                   "'gitops verify' checks it")
    nodes: list[tuple[int, int, bytes]] = []
    size = frontier_extend(size, frontier, [a.hash for a in appended], nodes, keep_from=TILE)
    _write(cur, size, frontier, nodes)


def rebuild(cur: Cursor) -> None:
    """The tree of every event the log holds, from their hashes in one pass."""
    cur.execute("DELETE FROM merkle_nodes")
    cur.execute("DELETE FROM merkle_frontier")
    size, frontier = 0, list[bytes]()
    rows = cur.connection.execute("SELECT hash FROM events ORDER BY seq")
    while batch := rows.fetchmany(10_000):
        nodes: list[tuple[int, int, bytes]] = []
        size = frontier_extend(size, frontier, [r[0] for r in batch], nodes, keep_from=TILE)
        if nodes:
            cur.executemany("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
    _write(cur, size, frontier, [])
    cur.execute("INSERT INTO projections (name, version) VALUES ('merkle', ?) "
                "ON CONFLICT (name) DO UPDATE SET version = excluded.version", (VERSION,))


class MerkleTree:
    """The stored tree read through ``conn`` (proofs and roots; never writes)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.size, self._frontier = _frontier(conn.cursor())

    def leaves(self, start: int, end: int) -> list[bytes]:
        """The leaf hashes of ``[start, end)``, from the events' hashes."""
        rows = self.conn.execute("SELECT seq, hash FROM events WHERE seq > ? AND seq <= ? ORDER BY seq",
                                 (start, end)).fetchall()
        if len(rows) != end - start or (rows and rows[0][0] != start + 1):
            raise CorruptDatabaseError(f"the log lacks events between seq {start + 1} and {end}; "
                                       "'gitops verify' checks it")
        return [leaf_hash(bytes.fromhex(h)) for _, h in rows]

    def subtree(self, start: int, end: int) -> bytes:
        """MTH of the leaves ``[start, end)``."""
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:  # a perfect, aligned subtree
            level = n.bit_length() - 1
            if level < TILE:
                return root_of(self.leaves(start, end))
            row = self.conn.execute("SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?",
                                    (level, start >> level)).fetchone()
            if row is None:
                raise CorruptDatabaseError(f"the Merkle tree lacks its node {level}/{start >> level}; "
                                           "'gitops init --rebuild-projections' rebuilds it")
            return bytes(row[0])
        k = split(n)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        """The root of the tree of ``size`` leaves (default: all of them)."""
        if size is None or size == self.size:
            return frontier_root(self._frontier)
        if not 0 < size <= self.size:
            raise ValueError(f"the tree has {self.size} leaves, not {size}")
        return self.subtree(0, size)

    def inclusion(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, size or self.size, self.subtree)

    def consistency(self, old: int, new: int | None = None) -> list[bytes]:
        return consistency_proof(old, new or self.size, self.subtree)
