"""The change projection: for each event that changes an object its source had already set
(same side and origin, as ``current_state`` keys them), the changed fields against that
previous version (``gitops.model.changes.field_changes``), stored as JSON ``[[path, old,
new], ...]``. An event that sets or removes an object and has no row created or removed it
(``decode``): most events of a first sync and every removal cost no diff and no row.

Written in the same transaction as the events (``apply``, before ``current_state.apply``
moves the table past them); both versions are read as stored (the payload's JSON), so an
append and a ``rebuild`` from the log compute the same text, and ``expected`` can check it.
The previous versions are found through ``current_state`` (the last event of each object)
and read by seq, a batch at a time: an append costs one diff per changed object, a read of
an audit row none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson

from gitops.model.changes import CREATED, DELETED, FieldChange, field_changes
from gitops.model.errors import CorruptDatabaseError
from gitops.store.current import ACTUAL_TYPES, DESIRED_TYPES, SETS, STATE_TYPES
from gitops.store.dbapi import Cursor
from gitops.store.pack import packed_columns, unpack

__all__ = ["VERSION", "apply", "check", "decode", "differences", "expected", "rebuild"]

VERSION = 1  # raise it when what the table holds changes: databases are rebuilt on open
_CHUNK = 300  # keys or seqs per lookup (3 parameters a key)
_REBUILD_BATCH = 5_000

Key = tuple[str, str, str]  # side, origin, resource
Row = tuple[int, str, str | None, str | None, str]  # seq, type, resource, origin, payload (as stored)
StateEvent = tuple[int, Key, bool, str]  # seq, key, whether it sets the object, payload


def decode(type_: str, fields: str | None) -> tuple[FieldChange, ...]:
    """What an event of type ``type_`` changed, from its row's ``fields`` (None: it has no
    row): the stored fields; else the whole object created or removed, for an event that
    sets or removes one; else nothing."""
    if fields is not None:
        try:
            return tuple(FieldChange(path, old, new) for path, old, new in orjson.loads(fields))
        except (ValueError, TypeError):  # not JSON (orjson's error is a ValueError), or not [[path, old, new], ...]
            raise CorruptDatabaseError(f"the change projection holds {fields[:60]!r}, not a list of changes: "
                                       "'gitops verify --projections' lists such rows, 'gitops init "
                                       "--rebuild-projections' rebuilds the table from the log") from None
    state = SETS.get(type_)
    return () if state is None else (CREATED,) if state[1] else (DELETED,)


def _encode(changes: list[FieldChange]) -> str:
    return orjson.dumps([(c.path, c.old, c.new) for c in changes]).decode()  # a NamedTuple is not a tuple to orjson


def _manifest(seq: int, payload: str) -> Any:
    """The manifest in event ``seq``'s stored payload; a row changed outside gitops is a
    CorruptDatabaseError, not a crash."""
    try:
        manifest = orjson.loads(payload)["manifest"]
    except (ValueError, TypeError, KeyError):
        manifest = None
    if not isinstance(manifest, dict):
        raise CorruptDatabaseError.unreadable_event(seq, "it holds no manifest")
    return manifest


def _manifests(cur: Cursor, seqs: Iterable[int]) -> dict[int, Any]:
    wanted = sorted(set(seqs))
    out: dict[int, Any] = {}
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i:i + _CHUNK]
        for seq, payload, *packed in cur.execute(f"SELECT seq, payload, {packed_columns()} FROM events "
                                                 f"WHERE seq IN ({', '.join('?' * len(chunk))})", chunk):
            out[seq] = _manifest(seq, unpack(seq, payload, *packed))
    return out


def _state_events(rows: Iterable[Row]) -> list[StateEvent]:
    """(seq, key, whether it sets the object, payload) of the events of ``rows`` that set or
    remove an object, keyed as ``current_state`` keys them."""
    return [(seq, (SETS[t][0], origin or "", resource), SETS[t][1], payload)
            for seq, t, resource, origin, payload in rows if t in SETS and resource is not None]


def _compute(cur: Cursor, batch: Sequence[StateEvent], last: dict[Key, int]) -> list[tuple[int, str]]:
    """(seq, stored fields) of each event of ``batch`` (``_state_events``, in seq order) that
    changes an object its source had set; ``last`` holds the seq of the version that set each
    object before them (objects removed or never set are absent), and is moved past them. A
    payload is parsed only when its object changes again: a creation or a removal needs no
    diff."""
    known = _manifests(cur, {last[k] for _, k, _, _ in batch if k in last})
    texts: dict[int, str] = {}  # versions of this batch, parsed if a later one needs them
    out = []
    for seq, key, sets, payload in batch:
        before = last.get(key)
        if not sets:
            last.pop(key, None)
            continue
        if before is not None:
            old = known[before] if before in known else _manifest(before, texts[before])
            new = known[seq] = _manifest(seq, payload)
            out.append((seq, _encode(field_changes(old, new))))
        last[key] = seq
        texts[seq] = payload
    return out


def _last(cur: Cursor, keys: set[Key]) -> dict[Key, int]:
    """The seq of the event that set each of ``keys`` now (current_state, present rows)."""
    out: dict[Key, int] = {}
    ordered = sorted(keys)
    for i in range(0, len(ordered), _CHUNK):
        chunk = ordered[i:i + _CHUNK]
        values = ", ".join("(?, ?, ?)" for _ in chunk)
        sql = (f"WITH k (side, origin, resource) AS (VALUES {values}) "  # a primary-key lookup per key
               "SELECT c.side, c.origin, c.resource, c.seq FROM k JOIN current_state AS c "
               "ON c.side = k.side AND c.origin = k.origin AND c.resource = k.resource WHERE c.present = 1")
        out.update(((s, o, r), q) for s, o, r, q in cur.execute(sql, [v for k in chunk for v in k]))
    return out


def apply(cur: Cursor, appended: Sequence[Any]) -> None:
    """Store the changes of ``appended`` (``store.log.Appended`` values, with their stored
    payloads), in the caller's transaction, before ``current_state`` moves past them."""
    batch = _state_events((a.seq, a.event.type, a.event.resource, getattr(a.event.payload, "origin", None), a.payload)
                          for a in appended)
    if not batch:
        return
    last = _last(cur, {key for _, key, _, _ in batch})
    cur.executemany("INSERT INTO changes (seq, fields) VALUES (?, ?)", _compute(cur, batch, last))


def _all(cur: Cursor) -> Iterator[list[Row]]:
    """The state events of the log in seq order, a batch at a time (bounded memory)."""
    after = 0
    while True:
        stored = cur.execute(f"SELECT seq, type, resource, payload, {packed_columns()} FROM events WHERE seq > ? "
                             f"AND type IN {STATE_TYPES} ORDER BY seq LIMIT ?", (after, _REBUILD_BATCH)).fetchall()
        if not stored:
            return
        # the origin from the payload here, not in SQL: the same on both engines (a rebuild is rare)
        texts = [(seq, type_, resource, unpack(seq, payload, *packed)) for seq, type_, resource, payload, *packed
                 in stored]
        yield [(seq, type_, resource, _origin(seq, text), text) for seq, type_, resource, text in texts]
        after = stored[-1][0]


def _origin(seq: int, payload: str) -> str | None:
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise CorruptDatabaseError.unreadable_event(seq, "its payload is not JSON") from None
    origin = value.get("origin") if isinstance(value, dict) else None
    return origin if isinstance(origin, str) else None


def expected(cur: Cursor) -> Iterator[tuple[int, str]]:
    """What the table must hold, computed from the log alone, in seq order."""
    last: dict[Key, int] = {}
    for rows in _all(cur):
        yield from _compute(cur, _state_events(rows), last)


def rebuild(cur: Cursor) -> None:
    """Recompute the table from the log, in the caller's transaction, and record its version."""
    cur.execute("DELETE FROM changes")
    cur.connection.cursor().executemany("INSERT INTO changes (seq, fields) VALUES (?, ?)", expected(cur))
    cur.execute("INSERT INTO projections (name, version) VALUES ('changes', ?) "
                "ON CONFLICT (name) DO UPDATE SET version = excluded.version", (VERSION,))


def differences(cur: Cursor) -> list[str]:
    """How the stored table differs from what the log says it must hold (empty: it does not),
    both read in seq order side by side (bounded memory)."""
    out = []
    want = expected(cur)
    w = next(want, None)
    for seq, fields in cur.connection.execute("SELECT seq, fields FROM changes ORDER BY seq"):
        while w is not None and w[0] < seq:
            out.append(f"changes of seq {w[0]}: missing from the table")
            w = next(want, None)
        if w is not None and w[0] == seq:
            if w[1] != fields:
                out.append(f"changes of seq {seq}: the table says {fields[:80]}, the log says {w[1][:80]}")
            w = next(want, None)
        else:
            out.append(f"changes of seq {seq}: in the table, but that event changed no object its source had set")
    while w is not None:
        out.append(f"changes of seq {w[0]}: missing from the table")
        w = next(want, None)
    return out


def check(cur: Cursor, seqs: Iterable[int]) -> list[str]:
    """How the stored rows of the events ``seqs`` differ from what the log says (empty: they
    do not), in ``differences``' words: for what a command shows (an audit's rows), not the
    whole table. Each event's previous version from the same source is found by its
    resource (an index lookup), and the fields computed again."""
    out = []
    wanted = sorted(set(seqs))
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i:i + _CHUNK]
        rows = cur.execute(f"SELECT e.seq, e.type, e.resource, e.payload, {packed_columns('e')}, c.fields "
                           f"FROM events e LEFT JOIN changes c ON c.seq = e.seq WHERE e.seq IN "
                           f"({', '.join('?' * len(chunk))}) AND e.type IN {STATE_TYPES} ORDER BY e.seq",
                           chunk).fetchall()
        for seq, type_, resource, payload, *packed, fields in rows:
            want = _expected_one(cur, seq, type_, resource, unpack(seq, payload, *packed))
            if want != fields:
                out.append(f"changes of seq {seq}: the table says {'nothing' if fields is None else fields[:80]}, "
                           f"the log says {'nothing' if want is None else want[:80]}")
    return out


def _expected_one(cur: Cursor, seq: int, type_: str, resource: str | None, text: str) -> str | None:
    """The stored fields event ``seq`` must have (None: no row): against the last version
    before it with the same side and origin, when that version set the object."""
    side, sets = SETS[type_]
    if not sets or resource is None:
        return None
    origin = _origin(seq, text) or ""
    types = DESIRED_TYPES if side == "desired" else ACTUAL_TYPES
    earlier = cur.execute(f"SELECT seq, type, payload, {packed_columns()} FROM events WHERE resource = ? AND seq < ? "
                          "AND type IN (?, ?) ORDER BY seq DESC", (resource, seq, *types))
    for before, before_type, payload, *packed in earlier:
        previous = unpack(before, payload, *packed)
        if (_origin(before, previous) or "") == origin:
            if not SETS[before_type][1]:
                return None  # removed, then set again: created
            return _encode(field_changes(_manifest(before, previous), _manifest(seq, text)))
    return None
