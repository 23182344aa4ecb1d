"""Who changed what: one timeline of Git, cluster, audit-log, reconciler and operator events,
filtered in SQL (bound parameters over indexed columns), each row with what it changed.

A row's ``changes`` compares the object with its previous version on the same side (what
Git desired before, what ran before): field paths with old and new values, server-filled
fields left out, a Secret's values only as "(changed)".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gitops.diff import normalize
from gitops.events.models import (
    ClusterDeleted,
    ClusterObserved,
    DesiredApplied,
    DesiredRemoved,
    ReconcileAction,
    Recorded,
)
from gitops.model.errors import UsageError
from gitops.store import EventLog

__all__ = ["SECRET_MASK", "AuditRow", "FieldChange", "audit_rows", "event_changes", "field_changes", "flatten",
           "leaf_diff", "summary"]

SECRET_MASK = "(changed)"
_ACTUAL = ("cluster.observed", "cluster.deleted")
_MISSING = object()
_SHA_PREFIX = re.compile(r"[0-9a-fA-F]{4,64}")
_MERGE_KEYS = ("name", "mountPath", "containerPort", "port", "ip", "devicePath")


@dataclass(frozen=True)
class FieldChange:
    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class AuditRow:
    seq: int
    time: datetime
    actor: str | None
    source: str
    action: str  # the event type
    resource: str | None
    revision: str | None
    how: str = ""  # how the actor is known, or what happened (attribution, result)
    out_of_band: bool = False
    changes: tuple[FieldChange, ...] = field(default_factory=tuple)
    detail: str = ""


def _item_label(item: dict[str, Any]) -> str | None:
    for k in _MERGE_KEYS:
        if k in item and isinstance(item[k], (str, int)):
            return f"{k}={item[k]}"
    return None


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf paths of ``obj`` (``spec.template.spec.containers[name=web].image``) to values;
    list items by their merge key when they have one, else by position."""
    out: dict[str, Any] = {}
    _flatten_into(obj, prefix, out)
    return out


def _flatten_into(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        if not obj and prefix:
            out[prefix] = {}
        for k, v in obj.items():
            _flatten_into(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(obj, list):
        if not obj and prefix:
            out[prefix] = []
        for i, v in enumerate(obj):
            label = _item_label(v) if isinstance(v, dict) else None
            _flatten_into(v, f"{prefix}[{label if label is not None else i}]", out)
    else:
        out[prefix] = obj


def leaf_diff(old: Any, new: Any, prefix: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """The leaves of ``old`` and of ``new`` (as ``flatten`` names them) below the parts where
    the two differ: a path absent from both is the same on both sides. Equal subtrees are
    skipped by one comparison instead of being flattened (a change touches few fields of an
    object); a list that differs is flattened whole on both sides, so its items keep
    ``flatten``'s names."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _leaf_diff_into(old, new, prefix, a, b)
    return a, b


def _leaf_diff_into(old: Any, new: Any, prefix: str, a: dict[str, Any], b: dict[str, Any]) -> None:
    if not (isinstance(old, dict) and isinstance(new, dict) and old and new):
        _flatten_into(old, prefix, a)
        _flatten_into(new, prefix, b)
        return
    for k in old.keys() | new.keys():
        va, vb = old.get(k, _MISSING), new.get(k, _MISSING)
        if va is not _MISSING and vb is not _MISSING and va == vb:
            continue
        path = f"{prefix}.{k}" if prefix else str(k)
        if va is _MISSING:
            _flatten_into(vb, path, b)
        elif vb is _MISSING:
            _flatten_into(va, path, a)
        else:
            _leaf_diff_into(va, vb, path, a, b)


def _secret_path(manifest: dict[str, Any] | None, path: str) -> bool:
    return bool(manifest) and str((manifest or {}).get("kind", "")).lower() == "secret" and \
        path.split(".", maxsplit=1)[0] in ("data", "stringData")


def field_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[FieldChange]:
    """What differs from ``old`` to ``new`` (either may be None: created, removed)."""
    a, b = leaf_diff(normalize(old) if old else {}, normalize(new) if new else {})
    out = []
    for path in sorted(set(a) | set(b)):
        if a.get(path, _MISSING) == b.get(path, _MISSING):
            continue
        if _secret_path(new or old, path):
            out.append(FieldChange(path, SECRET_MASK if path in a else None, SECRET_MASK if path in b else None))
        else:
            out.append(FieldChange(path, a.get(path), b.get(path)))
    return out



def event_changes(r: Recorded, before: dict[str, Any] | None) -> list[FieldChange]:
    """What the event changed on its side: the fields against ``before``, the object's
    previous version from the same source (``AuditRecord.before``), or the whole object
    created or deleted."""
    ev = r.event
    if isinstance(ev, (DesiredApplied, ClusterObserved)):
        return field_changes(before, ev.payload.manifest) if before is not None else [
            FieldChange("", None, "(the object)")]
    if isinstance(ev, (DesiredRemoved, ClusterDeleted)):
        return [FieldChange("", "(the object)", None)]
    return []


def _how(r: Recorded) -> str:
    ev = r.event
    if isinstance(ev, (ClusterObserved, ClusterDeleted)):
        return str(ev.payload.attribution)
    if isinstance(ev, ReconcileAction):
        return f"{ev.payload.action} {ev.payload.result}"
    if isinstance(ev, (DesiredApplied, DesiredRemoved)):
        return "git"
    return ""


def _detail(r: Recorded) -> str:
    ev = r.event
    if isinstance(ev, ReconcileAction) and ev.payload.error:
        return ev.payload.error
    message = getattr(ev.payload, "message", None)
    return str(message).splitlines()[0] if message else ""


def audit_rows(log: EventLog, *, resource: str | None = None, kind: str | None = None,
               namespace: str | None = None, actor: str | None = None, source: str | None = None,
               types: tuple[str, ...] = (), since: datetime | None = None, until: datetime | None = None,
               commit: str | None = None, out_of_band: bool = False, limit: int | None = None) -> Iterator[AuditRow]:
    """The timeline, oldest first, filtered; ``resource`` and ``actor`` may be globs."""
    if since is not None and until is not None and since > until:
        raise UsageError(f"--since ({since:%Y-%m-%dT%H:%M:%SZ}) is after --until ({until:%Y-%m-%dT%H:%M:%SZ})")
    if commit is not None:
        if not _SHA_PREFIX.fullmatch(commit):
            raise UsageError(f"--commit {commit!r}: not a commit sha or a prefix of one (4 to 64 hex digits)")
        commit = commit.lower()
    glob = resource is not None and any(c in resource for c in "*?[")
    if out_of_band:
        types = tuple(t for t in (types or _ACTUAL) if t in _ACTUAL)
        if not types:
            return
    rows = log.read_audit(
        resource=None if glob else resource, resource_glob=resource if glob else None, kind=kind,
        namespace=namespace, actor=None if actor is None or any(c in actor for c in "*?[") else actor,
        actor_glob=actor if actor is not None and any(c in actor for c in "*?[") else None, source=source,
        types=types, start=since, end=until, commit_prefix=commit, limit=limit,
        out_of_band=out_of_band)
    for r, oob, before in rows:
        ev = r.event
        yield AuditRow(r.seq, ev.effective_at, ev.actor, str(ev.source), ev.type, ev.resource, ev.revision,
                       _how(r), oob, tuple(event_changes(r, before)), _detail(r))


def summary(changes: tuple[FieldChange, ...], limit: int = 4) -> str:
    """Changed fields in one line: ``data.k: 1 -> 2; data.new: + x`` (and how many more)."""
    parts = []
    for c in changes[:limit]:
        if c.path == "":
            parts.append("created" if c.old is None else "deleted")
        elif c.old is None:
            parts.append(f"{c.path}: + {c.new}")
        elif c.new is None:
            parts.append(f"{c.path}: - {c.old}")
        elif c.old == SECRET_MASK:
            parts.append(f"{c.path}: {SECRET_MASK}")
        else:
            parts.append(f"{c.path}: {c.old} -> {c.new}")
    more = f" (+{len(changes) - limit} more)" if len(changes) > limit else ""
    return "; ".join(parts) + more
