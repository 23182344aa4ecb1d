"""The filters of a read of the log (``EventLog.read``, ``read_audit``, ``count_where``):
one WHERE clause from keyword arguments, every value a bound parameter, and the SQL that
says what an out-of-band change is. Kept apart from the log's writing and integrity."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gitops.model.times import format_time

__all__ = ["MANAGED", "OUT_OF_BAND", "OUT_OF_BAND_PG", "payload_field", "select"]


@dataclass
class _Filters:
    clauses: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, clause: str, *params: Any) -> None:
        self.clauses.append(clause)
        self.params.extend(params)

    hint: str = ""  # how SQLite is told to read the table (see ``select``'s out-of-band case)

    def where(self) -> str:
        return self.hint + ((" WHERE " + " AND ".join(self.clauses)) if self.clauses else "")


def select(
    *,
    since_seq: int | None = None,
    until_seq: int | None = None,
    types: Sequence[str] = (),
    resource: str | None = None,
    actor: str | None = None,
    source: str | None = None,
    commit_prefix: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    time_axis: Literal["effective", "recorded"] = "effective",
    resource_glob: str | None = None,
    kind: str | None = None,
    namespace: str | None = None,
    actor_glob: str | None = None,
    unattributed: bool = False,
    not_attribution: str | None = None,
    result: str | None = None,
    action: str | None = None,
    dry_run: bool | None = None,
    modes: Sequence[str] = (),
    desired_only: bool = False,
    out_of_band: bool = False,
    clusters: Sequence[str] = (),
    postgresql: bool = False,
) -> _Filters:
    """The WHERE clause of a read. ``since_seq`` is exclusive (events after it), ``until_seq``
    inclusive; ``start`` inclusive and ``end`` exclusive, on valid time (``effective_at``)
    or on transaction time (``recorded_at``). ``resource_glob`` and ``actor_glob`` are GLOB
    patterns (``*``, ``?``); ``unattributed`` keeps the events no evidence names an actor for
    (the actor is NULL; commands show it as "unknown"); ``kind`` is ``Kind`` (any group) or ``Kind.group``;
    ``namespace`` matches the objects in it and the Namespace itself; ``commit_prefix`` keeps
    the events of a commit (``_OF_COMMIT``: not those whose revision is a resourceVersion
    that happens to start with the same digits); ``not_attribution``
    leaves out cluster changes with that attribution; ``result`` and ``action`` keep
    reconcile actions with that result or action, ``dry_run`` those of dry runs (True) or of
    real passes (False), ``modes`` reconcile passes of those modes; ``desired_only`` keeps events about
    objects Git has desired at some time; ``out_of_band`` keeps the changes to such objects
    that neither the reconciler nor Git made (see ``OUT_OF_BAND``). ``postgresql``: the same
    clause in PostgreSQL's SQL (``gitops.store.postgres``; a GLOB is a regular expression
    there, the payload is cast to jsonb). Every value is a bound parameter: nothing a user
    types is ever part of the SQL text."""
    f = _Filters()
    glob = "~" if postgresql else "GLOB"  # each pattern goes through _pattern
    pattern = _regex if postgresql else _same
    if since_seq is not None:
        f.add("seq > ?", since_seq)
    if until_seq is not None:
        f.add("seq <= ?", until_seq)
    if types:
        f.add(f"type IN ({', '.join('?' * len(types))})", *types)
    if resource is not None:
        f.add("resource = ?", resource)
    if resource_glob is not None:
        f.add(f"resource {glob} ?", pattern(resource_glob))
    if kind is not None:
        if "." in kind:
            f.add(f"resource {glob} ?", pattern(f"{_glob_escape(kind)}/*"))
        else:
            f.add(f"(resource {glob} ? OR resource {glob} ?)", pattern(f"{_glob_escape(kind)}/*"),
                  pattern(f"{_glob_escape(kind)}.*/*"))
    if namespace is not None:
        f.add(f"(resource {glob} ? OR resource = ?)", pattern(f"*/{_glob_escape(namespace)}/*"),
              f"Namespace/{namespace}")
    if actor is not None:
        f.add("actor = ?", actor)
    if actor_glob is not None:
        f.add(f"actor {glob} ?", pattern(actor_glob))
    if unattributed:
        f.add("actor IS NULL")
    if source is not None:
        f.add("source = ?", source)
    if commit_prefix is not None:
        n = len(commit_prefix)
        f.add(f"({_OF_COMMIT_PG if postgresql else _OF_COMMIT})", n, commit_prefix, n, commit_prefix)
    column = "effective_at" if time_axis == "effective" else "recorded_at"
    if start is not None:
        f.add(f"{column} >= ?", format_time(start))
    if end is not None:
        f.add(f"{column} < ?", format_time(end))
    _payload_filters(f, not_attribution=not_attribution, result=result, action=action, dry_run=dry_run, modes=modes,
                     postgresql=postgresql)
    if clusters:
        f.add(f"coalesce({payload_field('origin', postgresql)}, {payload_field('cluster', postgresql)}) "
              f"IN ({', '.join('?' * len(clusters))})", *clusters)
    if desired_only or out_of_band:
        f.add(MANAGED)
    if out_of_band and resource is None and not postgresql:
        _by_hand(f, start if column == "effective_at" else None, end if column == "effective_at" else None)
    elif out_of_band:
        f.add(OUT_OF_BAND_PG if postgresql else OUT_OF_BAND)
    return f


def _by_hand(f: _Filters, start: datetime | None, end: datetime | None) -> None:
    """Has SQLite find the changes by hand of a range in the partial index that holds just
    them (it does not pick a partial index itself), and read the rows they name by seq, in
    seq order: a query of the newest rows stops after its limit. (Told to use the index for
    the table itself, SQLite sorted every change by hand of the log before the limit: 13.7 s
    for the newest 1,000 of a 1M-event log where half the events are, 0.2 s this way.)"""
    inner = [_BY_HAND]
    if start is not None:
        inner.append("effective_at >= ?")
    if end is not None:
        inner.append("effective_at < ?")
    f.clauses.insert(0, f"seq IN (SELECT seq FROM events INDEXED BY events_by_hand WHERE {' AND '.join(inner)})")
    f.params[:0] = [format_time(t) for t in (start, end) if t is not None]
    f.add(_NOT_OURS)  # the index's own terms are not tested again: each parses the payload
    f.hint = " NOT INDEXED"  # by seq: the rowid is still used, no index of the table's


def payload_field(name: str, postgresql: bool) -> str:
    """The SQL of a top-level payload field, as text (SQLite's json_extract, PostgreSQL's ->>)."""
    return f"(payload::jsonb ->> '{name}')" if postgresql else f"json_extract(payload, '$.{name}')"


def _payload_filters(f: _Filters, *, not_attribution: str | None, result: str | None, action: str | None,
                     dry_run: bool | None, modes: Sequence[str], postgresql: bool) -> None:
    """``select``'s filters on payload fields (see there), in either engine's SQL."""
    if not_attribution is not None:
        f.add(f"{payload_field('attribution', postgresql)} {'IS DISTINCT FROM' if postgresql else 'IS NOT'} ?",
              not_attribution)
    if result is not None:
        f.add(f"{payload_field('result', postgresql)} = ?", result)
    if action is not None:
        f.add(f"{payload_field('action', postgresql)} = ?", action)
    if dry_run is not None:  # a JSON boolean: 1/0 in SQLite, true/false in PostgreSQL
        if postgresql:
            f.add(f"coalesce({payload_field('dry_run', True)}::boolean, false) = ?", dry_run)
        else:
            f.add(f"coalesce({payload_field('dry_run', False)}, 0) = ?", int(dry_run))
    if modes:
        f.add(f"{payload_field('mode', postgresql)} IN ({', '.join('?' * len(modes))})", *modes)


_BY_HAND = """type IN ('cluster.observed', 'cluster.deleted')
    AND json_extract(payload, '$.attribution') IS NOT 'reconciler'"""
"""The WHERE of the partial index ``events_by_hand`` (migration 0004), word for word: a query
with these terms can use it."""
_NOT_OURS = """json_extract(payload, '$.control_plane') IS NOT 1
    AND CASE WHEN type = 'cluster.deleted' THEN NOT EXISTS (
        SELECT 1 FROM events p WHERE p.resource = events.resource AND +p.type = 'reconcile.action'
        AND json_extract(p.payload, '$.action') = 'prune' AND json_extract(p.payload, '$.result') = 'succeeded'
        AND json_extract(p.payload, '$.uid') = json_extract(events.payload, '$.uid')) ELSE 1 END"""
OUT_OF_BAND = f"{_BY_HAND}\n    AND {_NOT_OURS}"
"""A change to the cluster made neither through Git nor by the reconciler: not attributed to
the reconciler, not the control plane's own (``control_plane``: a controller, a system
user), and not a delete of an object (by uid) that the reconciler's own record says it
pruned. (A delete leaves no managedFields, and its audit record may come too late to be
joined: the reconciler's record of the prune is the evidence then; ``+p.type`` has SQLite
look that record up by resource, not among every action; the CASE has it looked up for
deletes only, as SQLite would otherwise run the subquery for every row.) Its first two terms are the
partial index ``events_by_hand``'s (migration 0004), word for word."""


_OF_COMMIT = """(source = 'git' OR type IN ('reconcile.started', 'reconcile.finished'))
    AND substr(revision, 1, ?) = ?
    OR type = 'reconcile.action' AND substr(json_extract(payload, '$.commit'), 1, ?) = ?"""
"""The events of a commit: Git's (the commit, what it desired or removed, a branch moved to
it), the reconcile passes that acted on it (their revision), and the actions that applied
it (their payload's commit; their revision is the resourceVersion the apply made)."""
MANAGED = "EXISTS (SELECT 1 FROM current_state AS c WHERE c.resource = events.resource AND c.side = 'desired')"
"""Git manages the object of the event: it has desired it at some time."""


OUT_OF_BAND_PG = """type IN ('cluster.observed', 'cluster.deleted')
    AND (payload::jsonb ->> 'attribution') IS DISTINCT FROM 'reconciler'
    AND (payload::jsonb ->> 'control_plane') IS DISTINCT FROM 'true'
    AND (type <> 'cluster.deleted' OR NOT EXISTS (
        SELECT 1 FROM events p WHERE p.resource = events.resource AND p.type = 'reconcile.action'
        AND (p.payload::jsonb ->> 'action') = 'prune' AND (p.payload::jsonb ->> 'result') = 'succeeded'
        AND (p.payload::jsonb ->> 'uid') = (events.payload::jsonb ->> 'uid')))"""
"""``OUT_OF_BAND`` in PostgreSQL's SQL: the same test, term by term."""

_OF_COMMIT_PG = """(source = 'git' OR type IN ('reconcile.started', 'reconcile.finished'))
    AND substr(revision, 1, ?) = ?
    OR type = 'reconcile.action' AND substr(payload::jsonb ->> 'commit', 1, ?) = ?"""


def _same(pattern: str) -> str:
    return pattern


def _regex(pattern: str) -> str:
    """A GLOB pattern (``*``, ``?``, ``[...]``, case-sensitive, whole string) as the POSIX
    regular expression PostgreSQL's ``~`` matches the same strings with."""
    out, i = ["^"], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("^") else body).replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out) + "$"


def _glob_escape(text: str) -> str:
    """``text`` matched literally inside a GLOB pattern."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)
