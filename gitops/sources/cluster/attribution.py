"""Telling changes apart and telling who made them, from the objects alone.

- ``fingerprint`` hashes what matters in an object: not its resourceVersion, not the
  timestamps in managedFields, and for noisy kinds not its status. Two observations with
  the same fingerprint are the same state; the second is not recorded.
- ``writer`` names the field manager that made a change: the one managedFields entry that
  is new, whose time moved, or that gained fields since the last observation. When none moved (a delete, a
  scale through the subresource on older servers) or several did (changes coalesced by a
  relist), the objects cannot tell who: no name, and ``candidates`` lists who it may be.
  Naming the newest entry instead credited deletes to whoever last edited the object.
- ``written_at`` is that entry's time: with the manager, it tells which audit records
  cannot have made the change (``gitops.sources.cluster.audit``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from gitops.events.models import content_digest

__all__ = ["Managers", "candidates", "fingerprint", "managers", "writer", "written_at"]

Managers = dict[tuple[str, str, str], tuple[str, frozenset[str]]]
"""(manager, operation, subresource) -> (time of its managedFields entry, its fields)."""


def fingerprint(obj: dict[str, Any], *, noisy: bool) -> str:
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    fields = meta.get("managedFields")
    if fields:
        meta["managedFields"] = [{k: v for k, v in e.items() if k != "time"} for e in fields]
    norm = {**obj, "metadata": meta}
    if noisy:
        norm.pop("status", None)
    return content_digest(norm)


def _nodes(fields: Any, prefix: str = "") -> Iterator[str]:
    """Every path of a fieldsV1 set, inner ones too: an entry that lost all of a map's
    fields but keeps the map shows no path it did not have."""
    if not isinstance(fields, dict):
        return
    for k, v in fields.items():
        path = f"{prefix}/{k}"
        yield path
        yield from _nodes(v, path)


def managers(obj: dict[str, Any]) -> Managers:
    out: Managers = {}
    for e in (obj.get("metadata") or {}).get("managedFields") or []:
        out[(str(e.get("manager", "")), str(e.get("operation", "")), str(e.get("subresource", "")))] = \
            (str(e.get("time", "")), frozenset(_nodes(e.get("fieldsV1") or {})))
    return out


def _moved(before: Managers | None, after: Managers) -> list[tuple[str, tuple[str, str, str]]]:
    """The entries that show a write: new, with a new time, or with fields they did not
    have (entry times have one-second resolution: two writes by one manager within a
    second keep the time, but a write that takes fields back shows in them). An entry
    that only lost fields shows nothing of its own: another manager took them."""
    out = []
    for k, (t, fields) in after.items():
        old = before.get(k) if before is not None else None
        if old is None or old[0] != t or not fields <= old[1]:
            out.append((t, k))
    return sorted(out, reverse=True)


def writer(before: Managers | None, after: Managers) -> tuple[str, str] | None:
    """(manager, operation) of the one writer of the change from ``before`` to ``after``
    (``before`` None: the object is new to us), or None when the entries cannot tell."""
    moved = _moved(before, after)
    if len(moved) != 1:
        return None
    manager, operation, _sub = moved[0][1]
    return manager, operation


def written_at(before: Managers | None, after: Managers) -> datetime | None:
    """When the one writer of the change (``writer``) wrote it, as its managedFields entry
    says: the API server's clock, to the second (a request received a second or more after
    it did not make this version). None when the entries cannot tell, or the time is not
    one."""
    moved = _moved(before, after)
    if len(moved) != 1:
        return None
    try:
        t = datetime.fromisoformat(moved[0][0])
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def candidates(before: Managers | None, after: Managers) -> list[str]:
    """The managers that may have made the change when ``writer`` cannot tell: those whose
    entries moved, or, when none did, none (a delete leaves no trace in managedFields)."""
    return sorted({k[0] for _, k in _moved(before, after)})
