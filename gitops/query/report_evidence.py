"""Sections of the compliance report that are evidence about the log itself and its
commits: who used the log (``access_rows``), and what each commit did to which object
(``objects_by_commit``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gitops.events.models import IntegrityAcknowledgedPayload, IntegrityCheckpointPayload, OperatorPayload
from gitops.store import EventLog

__all__ = ["AccessRow", "CommitObject", "access_rows", "objects_by_commit"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AccessRow(_Model):
    """Someone used the log (PCI DSS 10.2.1.3): an export, replay, report or verification, a
    service started or stopped, a checkpoint signed, a finding of tampering acknowledged."""

    seq: int
    time: datetime
    user: str
    host: str
    command: str
    arguments: str = Field(description="what was asked (range, format, filters), as key=value pairs")
    outcome: str
    detail: str = ""


class CommitObject(_Model):
    resource: str
    change: Literal["created", "updated", "removed"] = Field(description="what the commit did to it in the desired "
                                                                         "state")


def access_rows(log: EventLog, rng: dict[str, Any]) -> list[AccessRow]:
    out = []
    for r in log.read(types=["operator", "integrity.acknowledged", "integrity.checkpoint"], **rng):
        ev, p = r.event, r.event.payload
        if isinstance(p, OperatorPayload):
            out.append(AccessRow(seq=r.seq, time=ev.effective_at, user=p.user, host=p.host, command=p.command,
                                 arguments=" ".join(f"{k}={v}" for k, v in sorted(p.arguments.items())),
                                 outcome=p.outcome, detail=p.detail))
        elif isinstance(p, IntegrityAcknowledgedPayload):
            out.append(AccessRow(seq=r.seq, time=ev.effective_at, user=p.user, host=p.host,
                                 command="verify --acknowledge", arguments=f"reason={p.reason}",
                                 outcome="acknowledged", detail=f"{p.problem} at seq {p.first_bad_seq}: {p.detail}"))
        elif isinstance(p, IntegrityCheckpointPayload):
            out.append(AccessRow(seq=r.seq, time=ev.effective_at, user=ev.actor, host="", command="checkpoint",
                                 arguments=f"size={p.size}", outcome="succeeded",
                                 detail=f"published to {', '.join(p.published) or 'nowhere'}"))
    return out


def objects_by_commit(log: EventLog, start: datetime) -> dict[tuple[str, str], list[CommitObject]]:
    """(Git source, commit) -> what the commit did to each object of that source's desired state."""
    out: dict[tuple[str, str], list[CommitObject]] = {}
    made: dict[tuple[str, str], CommitObject] = {}  # frozen: one per object and change, shared by the commits
    for commit, origin, resource, how in log.commit_objects(start=start):
        row = made.get((resource, how))
        if row is None:
            # built from the log's own columns, hundreds of thousands on a busy month: not validated again,
            # and made once for each (object, change) however many commits made it
            row = made[(resource, how)] = CommitObject.model_construct(resource=resource, change=how)
        rows = out.get((origin, commit))
        if rows is None:
            rows = out[(origin, commit)] = []
        rows.append(row)
    return out
