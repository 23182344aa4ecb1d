"""One stored row of the event log and the event it holds: the columns a write stores and a
read selects, and how a row read becomes the hashed fields (its payload unpacked:
``gitops.store.pack``) or a ``Recorded`` event. Shared by both adapters, the copy and the
compaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from gitops.model.errors import CorruptDatabaseError
from gitops.store.chain import FIELDS
from gitops.store.pack import packed_columns, residual, unpack

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from gitops.events.models import AnyEvent, Recorded

__all__ = ["COLUMNS", "INSERT", "LIGHT", "READ", "STORED", "Stored", "logical_row", "payload_value", "to_recorded",
           "to_stored", "unpacked", "unreadable"]

COLUMNS = ("seq", *FIELDS, "prev_hash", "hash")  # what is hashed, and the links (the payload column unpacked)
STORED = (*COLUMNS, "packed", "base")  # the columns as stored (gitops.store.pack)
INSERT = f"INSERT INTO events ({', '.join(STORED)}) VALUES ({', '.join('?' * len(STORED))})"
READ = f"{', '.join(COLUMNS)}, {packed_columns()}"  # a read's columns, the keyframe of a packed row beside it
LIGHT = (f"seq, type, actor, effective_at, recorded_at, source, resource, revision, payload, "  # ... of ``Stored``
         f"{packed_columns()}")


class Stored(NamedTuple):
    """An event as stored, without its model: for a query that reads a few payload fields
    of many versions (blame), or a listing of rows (``gitops log``'s table), where building
    and validating each event is most of the time. Times are as stored (RFC 3339, fixed
    width: they compare as text in time order)."""

    seq: int
    type: str
    actor: str | None
    effective_at: str
    recorded_at: str
    source: str
    resource: str | None
    revision: str | None
    payload: dict[str, Any]


def unreadable(seq: int, type_: str, e: ValueError) -> CorruptDatabaseError:
    """An event whose stored row no event model reads."""
    return CorruptDatabaseError.unreadable_event(
        seq, "its payload is not JSON" if isinstance(e, orjson.JSONDecodeError) else f"it is not a valid {type_} event")


def logical_row(row: Sequence[Any]) -> dict[str, Any]:
    """A row read as ``READ`` names its columns, as the hashed fields (the payload unpacked)
    and the links."""
    seq, *rest = row
    values = dict(zip(COLUMNS[1:], rest[:len(COLUMNS) - 1], strict=True))
    values["payload"] = unpack(seq, values["payload"], *rest[len(COLUMNS) - 1:])
    return {"seq": seq, **values}


def unpacked(rows: Iterable[Sequence[Any]]) -> Iterator[tuple[Any, ...]]:
    """Rows read as ``READ`` names them, as ``verify_rows`` takes them (seq, FIELDS, prev_hash,
    hash), each packed payload unpacked; a packed row whose payload column is not what its
    packed text holds, or that does not unpack, gets a payload that matches no hash, so
    verify names it modified (what a query reads of it was changed outside gitops)."""
    at = COLUMNS.index("payload")
    for row in rows:
        if row[len(COLUMNS)] is None:
            yield tuple(row[:len(COLUMNS)])
            continue
        try:
            text = unpack(row[0], row[at], *row[len(COLUMNS):])
            if residual(text) != row[at]:
                text = "\x00 the payload column does not match the packed payload"
        except (CorruptDatabaseError, ValueError):
            text = "\x00 the packed payload does not unpack"
        yield (*row[:at], text, *row[at + 1:len(COLUMNS)])


@cache
def _models() -> tuple[TypeAdapter[AnyEvent], type[Recorded]]:
    """The event models, imported when a row is first read through them (a table of rows
    needs none); once, not per row: an import statement costs 0.6 µs of a 10 µs read."""
    from gitops.events.models import EVENT_ADAPTER, Recorded

    return EVENT_ADAPTER, Recorded


def to_recorded(row: dict[str, Any]) -> Recorded:
    adapter, recorded = _models()
    try:
        payload = unpack(row["seq"], row["payload"], row.get("packed"), row.get("base"), row.get("base_payload"))
        event = adapter.validate_python({
            "id": row["id"], "type": row["type"], "source": row["source"], "resource": row["resource"],
            "actor": row["actor"], "effective_at": row["effective_at"], "revision": row["revision"],
            "payload": orjson.loads(payload),
        })
    except ValueError as e:  # orjson's and pydantic's errors both are
        raise unreadable(row["seq"], row["type"], e) from None
    return recorded(seq=row["seq"], recorded_at=row["recorded_at"], prev_hash=row["prev_hash"],
                    hash=row["hash"], event=event)


def payload_value(seq: int, type_: str, payload: str, *packed: Any) -> Any:
    """The JSON value of event ``seq``'s stored payload (its ``packed`` columns as
    ``packed_columns`` reads them), without building its model; one that does not unpack or
    parse is the same error as for ``to_recorded``."""
    try:
        return orjson.loads(unpack(seq, payload, *packed))
    except ValueError as e:
        raise unreadable(seq, type_, e) from None


def to_stored(row: Sequence[Any]) -> Stored:
    """A row read as ``LIGHT`` names its columns, as a ``Stored``; a payload that is not a
    JSON object is the same error as for ``to_recorded``."""
    seq, type_, actor, effective_at, recorded_at, source, resource, revision, payload, *packed = row
    value = payload_value(seq, type_, payload, *packed)
    if not isinstance(value, dict):
        raise unreadable(seq, type_, ValueError("the payload is not an object"))
    return Stored(seq, type_, actor, effective_at, recorded_at, source, resource, revision, value)
