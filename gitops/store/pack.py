"""How a big payload is stored: packed, and given back as the very text that was hashed.

A cluster change or a Git version of an object repeats almost all of the version before it
(a new image, a new resourceVersion, a new time), so a payload of ``PACK_MIN`` bytes or
more is stored compressed, as a delta where it can be:

- A **keyframe** is the payload deflated on its own (zlib, RFC 1950), ``base`` NULL.
- A **delta** is the payload deflated with a keyframe's payload text as the preset
  dictionary (zlib's ``zdict``): what it repeats of that version costs a few bytes.
  ``base`` is that keyframe's seq: the last keyframe of the same object and event type.
  A delta is always against a keyframe, so reading any row inflates at most two; a new
  keyframe starts when the delta would be more than half the keyframe's size.
- The ``payload`` column of a packed row keeps only the top-level fields that SQL reads
  (``SQL_FIELDS``, those not null), so the filters, the audit queries and the partial
  indexes read it as they read a whole payload. ``verify`` checks that it is what the
  packed text holds, so it cannot be edited to hide a row from a query.

The hash chain is over the payload text (``gitops.store.chain``), which unpacking gives back
byte for byte: packing changes how a row is stored, never what was hashed.
``gitops compact`` packs the rows of a log written before packing.
"""

from __future__ import annotations

import zlib

import orjson

from gitops.model.errors import CorruptDatabaseError
from gitops.store.dbapi import Cursor

__all__ = ["PACK_MIN", "SQL_FIELDS", "Packer", "packed_columns", "residual", "unpack"]

PACK_MIN = 384  # bytes: shorter payloads stay plain text (packing them saves too little)
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


def _deflate(text: bytes, zdict: bytes | None) -> bytes:
    c = zlib.compressobj(6, zdict=zdict) if zdict is not None else zlib.compressobj(6)
    return c.compress(text) + c.flush()


class Packer:
    """Packs payloads on one log's write path. Keyframes found or made by a transaction
    are remembered only when it commits (``settle``): a rolled-back keyframe's seq may
    later hold another event."""

    def __init__(self) -> None:
        self._texts: dict[int, bytes] = {}  # keyframe seq -> its payload text (committed rows only)
        self._keys: dict[tuple[str, str], tuple[int, int]] = {}  # (type, resource) -> (keyframe seq, its size)
        self._pending_texts: dict[int, bytes] = {}
        self._pending_keys: dict[tuple[str, str], tuple[int, int]] = {}

    # ------------------------------------------------------------------ writing

    def pack(self, cur: Cursor, seq: int, type_: str, resource: str | None,
             payload: str) -> tuple[str, bytes | None, int | None]:
        """How event ``seq``'s ``payload`` is stored: (payload column, packed, base)."""
        if len(payload) < PACK_MIN:
            return payload, None, None
        text = payload.encode()
        key = self._keyframe(cur, type_, resource) if resource is not None else None
        kept = residual(payload)
        if key is not None:
            base, size = key
            delta = _deflate(text, self._text(cur, base))
            if len(delta) * 2 <= size:
                return kept, delta, base
        packed = _deflate(text, None)
        if len(kept) + len(packed) >= len(text):  # packing would not make it smaller
            return payload, None, None
        if resource is not None:
            self._pending_keys[(type_, resource)] = (seq, len(packed))
            self._pending_texts[seq] = text
        return kept, packed, None

    def settle(self, committed: bool) -> None:
        """The transaction that packed ended: keep what it made if it committed."""
        if committed:
            if len(self._texts) + len(self._pending_texts) > _KEYFRAMES:
                self._texts.clear()
                self._keys.clear()
            self._texts.update(self._pending_texts)
            self._keys.update(self._pending_keys)
        self._pending_texts.clear()
        self._pending_keys.clear()

    def _keyframe(self, cur: Cursor, type_: str, resource: str) -> tuple[int, int] | None:
        found = self._pending_keys.get((type_, resource)) or self._keys.get((type_, resource))
        if found is not None:
            return found
        row = cur.execute("SELECT seq, base, length(packed) FROM events WHERE resource = ? AND type = ? "
                          "AND packed IS NOT NULL ORDER BY seq DESC LIMIT 1", (resource, type_)).fetchone()
        if row is None:
            return None
        if row[1] is None:
            found = (int(row[0]), int(row[2]))
        else:
            size = cur.execute("SELECT length(packed) FROM events WHERE seq = ?", (row[1],)).fetchone()
            found = (int(row[1]), int(size[0])) if size and size[0] is not None else None
        if found is not None:
            self._pending_keys[(type_, resource)] = found
        return found

    def _text(self, cur: Cursor, seq: int) -> bytes:
        """Keyframe ``seq``'s payload text, for a delta against it."""
        text = self._pending_texts.get(seq) or self._texts.get(seq)
        if text is None:
            row = cur.execute("SELECT packed, base FROM events WHERE seq = ?", (seq,)).fetchone()
            text = unpack(seq, "", row[0] if row else None, row[1] if row else None, None, keyframe=True).encode()
            if len(self._texts) >= _KEYFRAMES:
                self._texts.clear()
            self._texts[seq] = text
        return text


def packed_columns(table: str = "events") -> str:
    """The columns a read selects besides the hashed ones to unpack a row of ``table`` (the
    table's name or alias in the query): its own and its keyframe's ``packed``, in one query,
    as blobs whatever was written there (SQLite keeps text put in by hand as text, which
    would not decode; PostgreSQL's schema names bytea ``blob`` for this one statement)."""
    return (f"CAST({table}.packed AS BLOB) AS packed, {table}.base AS base, "
            f"(SELECT CAST(k.packed AS BLOB) FROM events k WHERE k.seq = {table}.base) AS base_packed")


def unpack(seq: int, payload: str, packed: bytes | None, base: int | None, base_packed: bytes | None, *,
           keyframe: bool = False) -> str:
    """Event ``seq``'s payload text from its stored columns: ``payload``, ``packed``, ``base``
    and its keyframe's ``packed`` (``base_packed``: see ``packed_columns``). ``keyframe``: the
    row must be one (a delta's base)."""
    if packed is None:
        if keyframe:
            raise _not_a_keyframe(seq)
        return payload
    if base is None:
        return _inflate(seq, bytes(packed), None).decode()
    if keyframe or base_packed is None:
        raise _not_a_keyframe(int(base) if not keyframe else seq)
    return _inflate(seq, bytes(packed), _inflate(int(base), bytes(base_packed), None)).decode()


def _not_a_keyframe(seq: int) -> CorruptDatabaseError:
    return CorruptDatabaseError(f"the packed payload of an event names seq {seq} as its keyframe, which is not "
                                "one: the database was changed outside gitops")


def _inflate(seq: int, packed: bytes, zdict: bytes | None) -> bytes:
    try:
        d = zlib.decompressobj(zdict=zdict) if zdict is not None else zlib.decompressobj()
        text = d.decompress(packed) + d.flush()
        if not d.eof:
            raise zlib.error("the packed payload is cut short")
        return text
    except zlib.error as e:
        raise CorruptDatabaseError.unreadable_event(seq, f"its packed payload does not unpack ({e})") from None
