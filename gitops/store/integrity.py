"""What the log can say about its own integrity, and the guard every writer passes.

- ``verify_rows`` recomputes the hash chain over every row (``gitops.store.chain``) and, in
  the same pass, the Merkle tree's root (``gitops.store.tree``): it names the first row that
  was modified, removed or moved, a tail cut off the end (the recorded head is further on),
  and a tree that does not match the events (its stored root, or the roots at the sizes
  asked for, such as a signed checkpoint's).
- ``check_head`` runs in every append transaction before anything is written: when the
  last event and the recorded head disagree, the append is refused (``TamperedLogError``),
  so that no writer re-anchors the chain on a cut tail and erases the evidence. The
  operator's way on is to record the finding (``gitops verify --acknowledge``: an
  ``integrity.acknowledged`` event saying what was found, which moves the head on); the
  evidence stays in the log, and in every signed checkpoint published before.

The chain proves nothing to someone who does not trust the file's writer: whoever can
write the file can recompute it. Signed checkpoints published elsewhere do
(``gitops.query.integrity``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from gitops.model.errors import TamperedLogError
from gitops.model.merkle import frontier_root, node_hash
from gitops.store.chain import GENESIS, row_hash
from gitops.store.dbapi import Cursor

__all__ = ["Chunk", "Fault", "Problem", "VerifyResult", "check_chunk", "check_head", "fault", "finish", "join",
           "last_event", "verify_rows"]

Problem = Literal["modified", "missing", "reordered", "truncated", "tree"]
_ONE_CHUNK = 64  # verify_rows' chunk is of 2**64 seqs: never whole, so its compact range is the log's


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    last_seq: int | None
    first_bad_seq: int | None = None
    reason: Problem | None = None
    detail: str = ""
    head_hash: str | None = None  # the last intact row's hash
    root: bytes | None = None  # the Merkle root of the rows checked (when they all were)
    roots: dict[int, bytes] = field(default_factory=dict)  # the root at each size asked for

    def describe(self) -> str:
        if self.ok and self.last_seq is None:
            return "log intact: no events yet"
        if self.ok:
            return f"log intact: {self.checked} events, chain valid up to seq {self.last_seq}"
        return f"log tampered at seq {self.first_bad_seq}: {self.reason}: {self.detail}"


def last_event(cur: Cursor) -> tuple[int, str, str] | None:
    """(seq, hash, recorded_at) of the log's last event, or None when it holds none."""
    row = cur.execute("SELECT seq, hash, recorded_at FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


def check_head(cur: Cursor, where: str, *, doing: str = "write") -> tuple[int, str, str] | None:
    """Refuse to write when the log's last event and its recorded head disagree; else the
    last event (``last_event``), which the append goes on from."""
    last = last_event(cur)
    head = cur.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
    if (last is None and head is None) or (last is not None and head is not None and last[:2] == tuple(head)):
        return last
    if last is None or head is None:
        found = "it has no recorded head" if head is None else f"it holds no events but its head is seq {head[0]}"
    elif last[0] < head[0]:
        found = f"it ends at seq {last[0]} but its recorded head is seq {head[0]}: events were cut off the end"
    else:
        found = f"its last event (seq {last[0]}) is not its recorded head (seq {head[0]})"
    raise TamperedLogError(f"refusing to {doing} {where}: {found}; the log was changed outside gitops. "
                           "'gitops verify' says what; 'gitops verify --acknowledge' records it and lets writers "
                           "go on")


def verify_rows(rows: Iterable[tuple[Any, ...]], head: tuple[int, str] | None, *,
                tree: tuple[int, bytes] | None = None, at_sizes: Collection[int] = ()) -> VerifyResult:
    """Check ``rows`` (seq, FIELDS values..., prev_hash, hash, in seq order) against each
    other, the recorded ``head`` (seq, hash) and the stored ``tree`` (size, root): in one
    pass, as one chunk of every row (``gitops.store.verify_pool`` checks many chunks at once)."""
    return join([check_chunk(rows, at_sizes)], _ONE_CHUNK, head, tree=tree)


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


def fault(reason: Problem, seq: int, prev_seq: int, prev_hash: str, checked: int) -> VerifyResult:
    """What verify says of the first bad row, ``seq``: its fault, after ``checked`` intact
    rows, the last of them ``prev_seq`` (0: none) of hash ``prev_hash``."""
    if reason == "modified":
        return VerifyResult(False, checked, prev_seq or None, seq, "modified",
                            "the row's content does not match its hash", prev_hash)
    if reason == "missing":
        missing = f"{prev_seq + 1}" if seq == prev_seq + 2 else f"{prev_seq + 1}..{seq - 1}"
        return VerifyResult(False, checked, prev_seq or None, prev_seq + 1, "missing",
                            f"seq {missing} absent before seq {seq}", prev_hash)
    return VerifyResult(False, checked, prev_seq or None, seq, "reordered",
                        f"the row is intact but does not follow seq {prev_seq} in the chain", prev_hash)


def finish(checked: int, prev_seq: int, prev_hash: str, frontier: list[bytes], roots: dict[int, bytes],
           head: tuple[int, str] | None, tree: tuple[int, bytes] | None) -> VerifyResult:
    """What verify says once every row was intact: whether they end at the recorded head,
    and make the stored tree (``frontier``: their compact range)."""
    root = frontier_root(frontier)
    if head is not None and (head[0] != prev_seq or head[1] != prev_hash):
        return VerifyResult(False, checked, prev_seq or None, prev_seq + 1, "truncated",
                            f"the log ends at seq {prev_seq} but its recorded head is seq {head[0]}", prev_hash,
                            root, roots)
    if head is None and prev_seq:
        return VerifyResult(False, checked, prev_seq, prev_seq, "modified", "the recorded chain head is missing",
                            prev_hash, root, roots)
    if tree is not None and (tree[0] != checked or tree[1] != root):
        return VerifyResult(False, checked, prev_seq or None, prev_seq or None, "tree",
                            f"the stored Merkle tree ({tree[0]} leaves) does not match the events' ({checked})",
                            prev_hash, root, roots)
    return VerifyResult(True, checked, prev_seq or None, head_hash=prev_hash if prev_seq else None, root=root,
                        roots=roots)
