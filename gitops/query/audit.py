"""Who changed what: one timeline of Git, cluster, audit-log, reconciler and operator events,
filtered in SQL (bound parameters over indexed columns), each row with what it changed.

A row's ``changes`` compares the object with its previous version on the same side (what
Git desired before, what ran before): field paths with old and new values, server-filled
fields left out, a Secret's values only as "(changed)" (``gitops.model.changes``). They were
computed when the event was appended (the log's change projection, ``gitops.store.changes``),
and rows are read without building event models: a month of out-of-band changes is one
query and a few microseconds of Python a row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import islice
from typing import NamedTuple

import orjson

from gitops.model.bulk import cyclic_gc_paused
from gitops.model.changes import SECRET_MASK, FieldChange
from gitops.model.clusters import cluster_name
from gitops.model.errors import UsageError
from gitops.model.revisions import sha_prefix
from gitops.model.times import check_range
from gitops.store import EventLog
from gitops.store.changes import decode
from gitops.store.current import ACTUAL_TYPES, DESIRED_TYPES
from gitops.store.log import AuditFacts, AuditRecord

__all__ = ["UNKNOWN", "AuditRow", "audit_rows", "is_glob", "record_changes", "record_how", "summary"]

_CHUNK = 1000  # rows read and built at a time
UNKNOWN = "unknown"  # the actor of a row no evidence names anyone for (stored as NULL)


class AuditRow(NamedTuple):
    seq: int
    time: datetime
    actor: str | None
    source: str
    action: str  # the event type
    resource: str | None
    revision: str | None
    how: str = ""  # how the actor is known, or what happened (attribution, result)
    out_of_band: bool = False
    changes: tuple[FieldChange, ...] = ()
    detail: str = ""
    via: str | None = None  # the user that authenticated and impersonated the actor (kubectl --as)
    cluster: str = ""  # the cluster's name, for a cluster's event or the reconciler's about one ("" for Git's)


def record_changes(r: AuditRecord) -> tuple[FieldChange, ...]:
    """What the event changed on its side, from the change projection: the fields against
    the object's previous version from the same source, or the whole object created or
    deleted; nothing for an event that sets no object's state."""
    return decode(r.type, r.changes)


def record_how(r: AuditRecord, facts: AuditFacts) -> str:
    """How the actor is known (a cluster change's attribution), what an action did, or "git"."""
    if r.type in ACTUAL_TYPES:
        return str(facts.attribution)
    if r.type == "reconcile.action":
        return f"{facts.action} {facts.result}{' (dry run)' if facts.dry_run else ''}"
    if r.type in DESIRED_TYPES:
        return "git"
    return ""


def _detail(r: AuditRecord, facts: AuditFacts) -> str:
    if r.type == "reconcile.action" and facts.error:
        return facts.error
    return facts.message.splitlines()[0] if facts.message else ""


def is_glob(text: str | None) -> bool:
    """Whether a ``--resource`` or ``--actor`` is a pattern (``*``, ``?``, ``[``) rather than a name."""
    return text is not None and any(c in text for c in "*?[")


def audit_rows(log: EventLog, *, resource: str | None = None, kind: str | None = None,
               namespace: str | None = None, actor: str | None = None, source: str | None = None,
               types: tuple[str, ...] = (), since: datetime | None = None, until: datetime | None = None,
               commit: str | None = None, out_of_band: bool = False, limit: int | None = None,
               descending: bool = False, since_seq: int | None = None,
               clusters: Sequence[str] = ()) -> Iterator[AuditRow]:
    """The timeline, oldest first (``descending``: newest first), filtered; ``resource`` and
    ``actor`` may be globs, and the actor ``unknown`` keeps the changes no evidence names
    anyone for; ``clusters`` (origins) keeps those clusters' events."""
    check_range(since, until)
    if commit is not None:
        prefix = sha_prefix(commit)
        if prefix is None:
            raise UsageError(f"--commit {commit!r}: not a commit sha or a prefix of one (4 to 64 hex digits)")
        commit = prefix
    resource_glob = resource if is_glob(resource) else None
    actor_glob = actor if is_glob(actor) else None
    unattributed = actor == UNKNOWN  # as rows show a change no evidence names anyone for
    if out_of_band:
        types = tuple(t for t in (types or ACTUAL_TYPES) if t in ACTUAL_TYPES)
        if not types:
            return
    rows = log.read_audit(
        resource=None if resource_glob else resource, resource_glob=resource_glob, kind=kind, namespace=namespace,
        actor=None if actor_glob or unattributed else actor, actor_glob=actor_glob, unattributed=unattributed,
        source=source, types=types, start=since, end=until, commit_prefix=commit, limit=limit, out_of_band=out_of_band,
        descending=descending, since_seq=since_seq, clusters=clusters)
    while True:
        with cyclic_gc_paused():  # read and build a chunk of acyclic rows: see gitops.model.bulk
            chunk = [_audit_row(r) for r in islice(rows, _CHUNK)]
        if not chunk:
            return
        yield from (_request(log, row) if row.action == "audit" else row for row in chunk)  # collector on


def _request(log: EventLog, row: AuditRow) -> AuditRow:
    """An ``audit`` event's row says what was asked and how the API server answered (``patch
    403``, a dry run) and the request's path: an attempt that was refused is evidence too.
    Its payload is read whole (a packed row's payload column keeps only what SQL filters
    on): such rows are few beside the changes."""
    stored = log.row(row.seq)
    p = orjson.loads(stored["payload"]) if stored is not None else {}
    how = f"{p.get('verb')} {p.get('response_code')}{' (dry run)' if p.get('dry_run') else ''}"
    return row._replace(how=how, detail=str(p.get("request_uri") or ""))


def _audit_row(r: AuditRecord) -> AuditRow:
    facts = r.payload_facts()
    return AuditRow(r.seq, datetime.fromisoformat(r.effective_at), r.actor, r.source, r.type, r.resource, r.revision,
                    record_how(r, facts), bool(r.out_of_band), record_changes(r), _detail(r, facts), facts.via,
                    cluster_name(facts.cluster or facts.origin))


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
