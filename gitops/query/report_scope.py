"""What a compliance report covers, and where its evidence has holes: the Git sources
(repository, branch, paths), the clusters (API server URL), the reconciler instances and
the gitops version; where the log begins when that is after the range's start; and the
periods when nothing was recording (no ``run`` or ``watch`` between their start and stop
events), a source was out (``source.outage_started`` .. ``ended``), or the audit log was
rotated away or cut while nothing read it (``source.error`` ``audit-gap``)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gitops import __version__
from gitops.events.models import AuditPayload, OperatorPayload, SourceErrorPayload, SourceOutagePayload
from gitops.store import EventLog

__all__ = ["Gap", "GitScope", "Scope", "scope_of"]

_SERVICES = ("run", "watch")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GitScope(_Model):
    origin: str
    repository: str
    branch: str
    paths: list[str] = Field(description="the folders read (empty: the whole tree)")
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class Gap(_Model):
    start: datetime
    end: datetime | None = Field(description="null: not over at the end of the range")
    what: str = Field(description="what was not recorded, and why the log says so")


class Scope(_Model):
    gitops_version: str
    git: list[GitScope]
    clusters: list[str] = Field(description="the API servers watched")
    instances: list[str] = Field(description="the reconciler instances that ran passes in the range")
    log_begins: datetime | None = Field(description="when the log recorded its first event")
    begins_after_since: bool = Field(description="the log begins after the range's start: what came before is "
                                                 "not in it")
    evidence_gaps: list[Gap] = Field(description="periods of the range when no run or watch was recording, or a "
                                                 "source was out")


def _git(log: EventLog) -> list[GitScope]:
    out = []
    for name, value in log.checkpoints("git:").items():
        if not isinstance(value, dict) or "repository" not in value:
            continue
        settings = value.get("settings") or {}
        out.append(GitScope(origin=name, repository=str(value["repository"]), branch=str(value.get("branch", "")),
                            paths=list(settings.get("paths") or []), include=list(settings.get("include") or []),
                            exclude=list(settings.get("exclude") or [])))
    return out


def _clusters(log: EventLog) -> list[str]:
    return sorted({name.rpartition(":")[0] for name in log.checkpoints("cluster:")})


def _instances(log: EventLog, since: datetime, until: datetime) -> list[str]:
    out = set()
    for r in log.read(types=["reconcile.started"], start=since, end=until):
        instance = getattr(r.event.payload, "instance", "")
        if instance:
            out.add(str(instance))
    return sorted(out)


def _not_recording(log: EventLog, since: datetime, until: datetime) -> list[Gap]:
    """Where no ``run`` or ``watch`` was between its start and stop (a process killed
    without its stop event looks as if it still ran: the gap after it cannot be seen)."""
    running: set[tuple[str, str]] = set()
    gaps: list[Gap] = []
    idle_since: datetime | None = since
    for r in log.read(types=["operator"], end=until):
        p = r.event.payload
        if not isinstance(p, OperatorPayload) or p.command not in _SERVICES or p.outcome not in ("started", "stopped"):
            continue
        who = (p.host, p.arguments.get("pid", ""))
        at = r.event.effective_at
        if p.outcome == "started":
            if not running and idle_since is not None and at > since:
                gaps.append(Gap(start=max(idle_since, since), end=at, what="no run or watch was recording"))
            running.add(who)
            idle_since = None
        else:
            running.discard(who)
            if not running:
                idle_since = at
    if not running and idle_since is not None and idle_since < until:
        gaps.append(Gap(start=max(idle_since, since), end=None, what="no run or watch was recording"))
    return [g for g in gaps if g.end is None or g.end > since]


def _outages(log: EventLog, since: datetime, until: datetime) -> list[Gap]:
    open_: dict[tuple[str, str], tuple[datetime, str]] = {}
    gaps: list[Gap] = []
    for r in log.read(types=["source.outage_started", "source.outage_ended"], end=until):
        p = r.event.payload
        if not isinstance(p, SourceOutagePayload):
            continue
        key = (p.origin, p.target)
        if r.event.type == "source.outage_started":
            open_.setdefault(key, (r.event.effective_at, p.reason))
        elif key in open_:
            start, reason = open_.pop(key)
            if r.event.effective_at > since:
                gaps.append(Gap(start=max(start, since), end=r.event.effective_at,
                                what=f"{p.target} of {p.origin or 'a source'} was out: {reason}"))
    gaps += [Gap(start=max(start, since), end=None, what=f"{target} of {origin or 'a source'} was out: {reason}")
             for (origin, target), (start, reason) in open_.items()]
    return gaps


def _last_record_before(log: EventLog, seq: int, scan: int = 1000) -> datetime | None:
    """When the last audit record read before event ``seq`` was made: an ``audit`` event, or
    a record kept in the event of the change it explains (``payload.audit``), looked for
    among the ``scan`` cluster changes before ``seq``: past those, the gap is said to start
    earlier than it may have (never later)."""
    alone = next(iter(log.read(types=["audit"], until_seq=seq, descending=True, limit=1)), None)
    times = [alone.event.effective_at] if alone is not None else []
    for c in log.read(types=["cluster.observed", "cluster.deleted"], until_seq=seq, descending=True, limit=scan):
        if isinstance(getattr(c.event.payload, "audit", None), AuditPayload):
            times.append(c.event.effective_at)
            break
    return max(times, default=None)


def _audit_gaps(log: EventLog, since: datetime, until: datetime) -> list[Gap]:
    """The audit log rotated away or cut while nothing read it (from the last audit record
    read before to when the gap was found), and the drift step's checkpoint missing or
    reset (from the instance's pass before to when it was found)."""
    out = []
    for r in log.read(types=["source.error"], start=since, end=until):
        p = r.event.payload
        if not isinstance(p, SourceErrorPayload) or p.code not in ("audit-gap", "drift-reset"):
            continue
        if p.code == "drift-reset" and "since" in p.detail:
            start = datetime.fromisoformat(p.detail["since"])
        else:
            start = _last_record_before(log, r.seq) or since
        out.append(Gap(start=max(start, since), end=r.event.effective_at, what=p.message))
    return out


def scope_of(log: EventLog, since: datetime, until: datetime) -> Scope:
    try:
        first: Any = log.conn.execute("SELECT min(recorded_at) FROM events").fetchone()[0]
    except sqlite3.Error:
        first = None
    begins = datetime.fromisoformat(first.replace("Z", "+00:00")) if first else None
    floor = max(since, begins) if begins is not None else since  # before the log began: begins_after_since says it
    gaps = sorted(_not_recording(log, floor, until) + _outages(log, floor, until) + _audit_gaps(log, floor, until),
                  key=lambda g: g.start)
    return Scope(gitops_version=__version__, git=_git(log), clusters=_clusters(log),
                 instances=_instances(log, since, until), log_begins=begins,
                 begins_after_since=begins is not None and begins > since, evidence_gaps=gaps)
