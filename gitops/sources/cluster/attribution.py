"""Telling changes apart and telling who made them, from the objects alone.

- ``fingerprint`` hashes what matters in an object: not its resourceVersion, not the
  timestamps in managedFields, and for noisy kinds not its status. Two observations with
  the same fingerprint are the same state; the second is not recorded.
- ``writer`` names the field manager that made a change: the managedFields entry that is
  new or whose time moved since the last observation, the newest one when several did,
  and the newest entry overall when the difference cannot tell.
"""

from __future__ import annotations

from typing import Any

from gitops.events.models import content_digest

__all__ = ["Managers", "fingerprint", "managers", "writer"]

Managers = dict[tuple[str, str, str], str]
"""(manager, operation, subresource) -> time of its managedFields entry."""


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


def managers(obj: dict[str, Any]) -> Managers:
    out: Managers = {}
    for e in (obj.get("metadata") or {}).get("managedFields") or []:
        out[(str(e.get("manager", "")), str(e.get("operation", "")), str(e.get("subresource", "")))] = \
            str(e.get("time", ""))
    return out


def writer(before: Managers | None, after: Managers) -> tuple[str, str] | None:
    """(manager, operation) of the writer of the change from ``before`` to ``after``."""
    if not after:
        return None
    moved = [(t, k) for k, t in after.items() if before is None or before.get(k) != t]
    candidates = moved or [(t, k) for k, t in after.items()]
    _, (manager, operation, _sub) = max(candidates)
    return manager, operation
