"""The Merkle tree of RFC 9162 (Certificate Transparency v2) §2.1, as pure functions.

- ``leaf_hash(entry) = SHA-256(0x00 || entry)``, ``node_hash(l, r) = SHA-256(0x01 || l || r)``;
  the root of an empty tree is ``SHA-256("")``. A tree of n leaves splits at the largest
  power of two below n (MTH, §2.1.1).
- **Compact range** (the "frontier"): the roots of the perfect subtrees that make up a tree
  of n leaves, one per set bit of n, largest first. Appending a leaf is O(log n), and the
  root is a fold of it: how the log keeps its tree current at every append without reading
  what came before (``frontier_extend``, ``frontier_root``).
- **Proofs** (§2.1.3, §2.1.4): ``inclusion_proof`` and ``consistency_proof`` are built from
  any function that gives the root of a range of leaves (the log's stored tree does), and
  ``verify_inclusion`` / ``verify_consistency`` check them with nothing but the hashes:
  what an auditor runs without the database.

Checked against the RFC 6962 test vectors of the transparency-dev/merkle project
(``tests/vectors/``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

__all__ = ["EMPTY_ROOT", "Subtree", "consistency_proof", "frontier_extend", "frontier_root", "inclusion_proof",
           "leaf_hash", "node_hash", "root_of", "split", "verify_consistency", "verify_inclusion"]

EMPTY_ROOT = hashlib.sha256(b"").digest()

Subtree = Callable[[int, int], bytes]
"""``mth(start, end)``: the root of the leaves ``[start, end)`` (0-based, ``end > start``)."""


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1): where MTH splits n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH of leaf hashes (not entries), the definition itself: for small ranges and tests."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:  # pairs left to right, an odd one carried up: the same tree as MTH's split
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


# ---------------------------------------------------------------------------- the compact range


def frontier_extend(size: int, frontier: list[bytes], entries_hex: Iterable[str],
                    nodes: list[tuple[int, int, bytes]], *, keep_from: int = 0) -> int:
    """Append the leaves of ``entries_hex`` (entries in hex: the log's event hashes) to a tree
    of ``size`` leaves whose compact range is ``frontier``, which changes in place; add to
    ``nodes`` each perfect subtree of level ``keep_from`` or more that they complete, as
    (level, index at that level, hash), a leaf itself being level 0. The new size.

    The log's hot loop (every append, every rebuild): ``leaf_hash`` and ``node_hash``
    inlined."""
    sha, fromhex, pop, push, keep = hashlib.sha256, bytes.fromhex, frontier.pop, frontier.append, nodes.append
    for h in entries_hex:
        carry = sha(b"\x00" + fromhex(h)).digest()
        if keep_from == 0:
            keep((0, size, carry))
        level = 0
        while size >> level & 1:
            carry = sha(b"\x01" + pop() + carry).digest()
            level += 1
            if level >= keep_from:
                keep((level, ((size + 1) >> level) - 1, carry))
        push(carry)
        size += 1
    return size


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    if not frontier:
        return EMPTY_ROOT
    root = frontier[-1]
    for h in reversed(frontier[:-1]):
        root = node_hash(h, root)
    return root


# ---------------------------------------------------------------------------- proofs


def inclusion_proof(index: int, size: int, mth: Subtree) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 §2.1.3.1, leaf to root."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    out: list[bytes] = []

    def path(m: int, start: int, n: int) -> None:
        if n == 1:
            return
        k = split(n)
        if m < k:
            path(m, start, k)
            out.append(mth(start + k, start + n))
        else:
            path(m - k, start + k, n - k)
            out.append(mth(start, start + k))

    path(index, 0, size)
    return out


def consistency_proof(old: int, new: int, mth: Subtree) -> list[bytes]:
    """PROOF(old, D[new]) of RFC 9162 §2.1.4.1; empty when ``old`` is 0 or ``new``."""
    if not 0 <= old <= new:
        raise ValueError(f"a tree of {old} is not a prefix of one of {new}")
    if old in (0, new):
        return []
    out: list[bytes] = []

    def sub(m: int, start: int, n: int, whole: bool) -> None:
        if m == n:
            if not whole:
                out.append(mth(start, start + n))
            return
        k = split(n)
        if m <= k:
            sub(m, start, k, whole)
            out.append(mth(start + k, start + n))
        else:
            sub(m - k, start + k, n - k, False)
            out.append(mth(start, start + k))

    sub(old, 0, new, True)
    return out


def _hashes(*values: bytes) -> bool:
    return all(len(v) == 32 for v in values)


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree of ``size`` whose
    root is ``root`` (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size or not _hashes(leaf, root, *proof):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` shows the tree of ``old`` leaves (``old_root``) is a prefix of the tree
    of ``new`` leaves (``new_root``) (RFC 9162 §2.1.4.2)."""
    if not 0 < old <= new:
        return False  # from the empty tree a proof means nothing (RFC 9162: 0 < first)
    if old == new:
        return not proof and old_root == new_root
    if not proof or not _hashes(old_root, new_root, *proof):
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old tree is itself a node of the new one
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root
