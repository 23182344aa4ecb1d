"""How a big payload is stored: as a delta against an earlier version of the same object,
given back as the very text that was hashed.

A cluster change or a Git version of an object repeats almost all of the version before it
(a new image, a new resourceVersion, a new time), so:

- A **keyframe** is a row stored whole, as every row was before packing: the first version
  of an object (of one event type), and any version too unlike its keyframe.
- A **delta** is a payload of ``PACK_MIN`` bytes or more deflated (zlib, RFC 1950) with its
  keyframe's payload text as the preset dictionary (zlib's ``zdict``), so what it repeats
  of that version costs a few bytes: ``packed`` holds it, ``base`` the keyframe's seq.
  A delta is always against a keyframe, so reading any row inflates at most once; a
  version becomes a new keyframe when its delta would be more than a quarter of its text.
- The ``payload`` column of a delta keeps only the top-level fields that SQL reads
  (``SQL_FIELDS``, those not null), so the filters, the audit queries and the partial
  indexes read it as they read a whole payload. ``verify`` checks that it is what the
  packed text holds, so it cannot be edited to hide a row from a query.

A first version costs nothing more to append than before (no compression: the back-fill
of a repository and the first list of a cluster are all first versions); a later one
costs one deflate. The hash chain is over the payload text (``gitops.store.chain``),
which unpacking gives back byte for byte: packing changes how a row is stored, never what
was hashed. ``gitops compact`` packs the rows of a log written before packing.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sized
from typing import Any, TypeVar

import orjson

from gitops.model.errors import CorruptDatabaseError
from gitops.store.dbapi import Cursor

__all__ = ["PACK_MIN", "SQL_FIELDS", "Packer", "packed_columns", "residual", "unpack"]

_T = TypeVar("_T")
PACK_MIN = 384  # bytes: shorter payloads are stored whole (a delta would save too little)
_KEYFRAMES = 8192  # keyframe texts cached per log (about 2 KB each)
SQL_FIELDS = frozenset({
    # read by SQL (gitops.store.filters, the audit facts of gitops.store.log, the current
    # state's origin, the out-of-band index): a packed row's payload column keeps these
    "origin", "cluster", "attribution", "candidates", "change", "action", "result", "error", "message", "via",
    "dry_run", "mode", "control_plane", "uid", "commit",
})


def residual(payload: str) -> str:
    """What the payload column of a packed row holds: the SQL-read fields of ``payload``
    that are not null, in their order."""
    full = orjson.loads(payload)
    return orjson.dumps({k: v for k, v in full.items() if k in SQL_FIELDS and v is not None}).decode()


def _deflate(text: bytes, zdict: bytes) -> bytes:
    c = zlib.compressobj(6, zdict=zdict)
    return c.compress(text) + c.flush()


class Packer:
    """Packs payloads on one log's write path. Keyframes found or made by a transaction
    are remembered only when it commits (``settle``): a rolled-back keyframe's seq may
    later hold another event."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], tuple[int, bytes]] = {}  # (type, resource) -> keyframe (seq, text)
        self._pending: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._absent: set[tuple[str, str]] = set()  # objects of no row before this transaction's batch

    def prepare(self, cur: Cursor, before: int, wanted: Iterable[tuple[str, str]]) -> None:
        """Find the keyframes of the objects (type, resource) a batch appended after seq
        ``before`` is about, in a few queries for the whole batch: asked per event, each
        would be a round trip to a PostgreSQL server."""
        todo = {k for k in wanted if k not in self._pending and k not in self._absent}
        cached = {k: self._keys[k] for k in todo if k in self._keys and self._keys[k][0] <= before}
        still = {int(r[0]) for r in _by_seq(cur, "SELECT seq FROM events WHERE packed IS NULL AND",
                                            {v[0] for v in cached.values()})}  # compact may have packed one since
        for k, v in cached.items():
            if v[0] in still:
                self._pending[k] = v
                todo.discard(k)
        for chunk in _chunks(sorted(todo)):
            # the object's last row before the batch, through its own rows (events_resource): ``type || ''``
            # keeps SQLite from walking every row of the type newest first instead (events_type)
            rows = cur.execute(
                "SELECT r.column1, r.column2, (SELECT e.seq FROM events e WHERE e.resource = r.column2 AND "
                "e.type || '' = r.column1 AND e.seq <= ? ORDER BY e.seq DESC LIMIT 1) "
                f"FROM (VALUES {', '.join(['(?, ?)'] * len(chunk))}) AS r",
                [before, *(v for k in chunk for v in k)]).fetchall()
            last = {(str(t), str(r)): int(s) for t, r, s in rows if s is not None}
            self._absent.update(k for k in chunk if k not in last)
            key_of = {int(s): int(s) if b is None else int(b)  # a row's keyframe: itself when whole, else its base
                      for s, b in _by_seq(cur, "SELECT seq, base FROM events WHERE", set(last.values()))}
            texts = {int(s): str(p).encode()
                     for s, p in _by_seq(cur, "SELECT seq, payload FROM events WHERE packed IS NULL AND",
                                         set(key_of.values()))}
            for k, s in last.items():
                if key_of.get(s) not in texts:
                    raise _not_a_keyframe(key_of.get(s, s))
                self._pending[k] = (key_of[s], texts[key_of[s]])

    def pack(self, cur: Cursor, seq: int, type_: str, resource: str | None,
             payload: str) -> tuple[str, bytes | None, int | None]:
        """How event ``seq``'s ``payload`` is stored: (payload column, packed, base)."""
        if resource is None:
            return payload, None, None
        text = payload.encode()
        key = self._keyframe(cur, seq, type_, resource) if len(text) >= PACK_MIN else None
        if key is not None:
            delta = _deflate(text, key[1])
            if len(delta) * 4 <= len(text):
                return residual(payload), delta, key[0]
        self._pending[(type_, resource)] = (seq, text)  # stored whole: the keyframe of the versions after it
        return payload, None, None

    def settle(self, committed: bool) -> None:
        """The transaction that packed ended: keep what it made if it committed."""
        if committed:
            if len(self._keys) + len(self._pending) > _KEYFRAMES:
                self._keys.clear()
            self._keys.update(self._pending)
        self._pending.clear()
        self._absent.clear()

    def _keyframe(self, cur: Cursor, seq: int, type_: str, resource: str) -> tuple[int, bytes] | None:
        """The keyframe a delta of event ``seq`` is made against: the last one of the object
        before it (``prepare`` finds it when no batch looked it up: ``gitops compact``)."""
        key = (type_, resource)
        if key not in self._pending and key not in self._absent:
            self.prepare(cur, seq - 1, [key])
        found = self._pending.get(key)
        return found if found is not None and found[0] < seq else None


def _chunks(items: list[_T], size: int = 400) -> Iterator[list[_T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _marks(items: Sized) -> str:
    return ", ".join("?" * len(items))


def _by_seq(cur: Cursor, select: str, seqs: set[int]) -> list[Any]:
    """The rows of ``select`` (ending in WHERE or AND) whose seq is one of ``seqs``."""
    ordered = sorted(seqs)
    return [row for chunk in _chunks(ordered) for row in
            cur.execute(f"{select} seq IN ({_marks(chunk)})", chunk).fetchall()]


def packed_columns(table: str = "events") -> str:
    """The columns a read selects besides the hashed ones to unpack a row of ``table`` (the
    table's name or alias in the query): its ``packed`` and ``base``, and its keyframe's
    payload text, in one query. ``packed`` as a blob whatever was written there (SQLite
    keeps text put in by hand as text, which would not decode; PostgreSQL's schema names
    bytea ``blob`` for this one statement)."""
    return (f"CAST({table}.packed AS BLOB) AS packed, {table}.base AS base, "
            f"(SELECT k.payload FROM events k WHERE k.seq = {table}.base AND k.packed IS NULL) AS base_payload")


def unpack(seq: int, payload: str, packed: bytes | None, base: int | None, base_payload: str | None) -> str:
    """Event ``seq``'s payload text from its stored columns: ``payload``, ``packed``, ``base``
    and its keyframe's payload text (``base_payload``: see ``packed_columns``)."""
    if packed is None:
        return payload
    if base is None or base_payload is None:
        raise _not_a_keyframe(seq if base is None else int(base))
    try:
        d = zlib.decompressobj(zdict=base_payload.encode())
        text = d.decompress(bytes(packed)) + d.flush()
        if not d.eof:
            raise zlib.error("the packed payload is cut short")
        return text.decode()
    except (zlib.error, UnicodeDecodeError) as e:
        raise CorruptDatabaseError.unreadable_event(seq, f"its packed payload does not unpack ({e})") from None


def _not_a_keyframe(seq: int) -> CorruptDatabaseError:
    return CorruptDatabaseError(f"the packed payload of an event names seq {seq} as its keyframe, which is not "
                                "one (a row stored whole): the database was changed outside gitops")
