"""The report's health section: each span an object Git desires was not Healthy (Degraded,
Progressing, Missing, Suspended, Unknown), from the ``health.changed`` events, with the
commit in force for it when the span began ("this commit led to Degraded")."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from gitops.events import DesiredApplied, HealthChanged
from gitops.store import EventLog

__all__ = ["HealthEpisodeRow", "health_episodes"]


class HealthEpisodeRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resource: str
    status: str = Field(description="Degraded, Progressing, Missing, Suspended or Unknown")
    started_at: datetime
    ended_at: datetime | None = Field(description="when it became something else; null while it lasts")
    duration_seconds: float | None = Field(description="how long it lasted (to the end of the range while it lasts)")
    became: str | None = Field(description="what it became next; null while it lasts")
    reason: str
    message: str
    commit: str | None = Field(description="the commit whose manifest of the object was in force when it began")


def _commit_of(log: EventLog, resource: str, seq: int) -> str | None:
    for r in log.read(types=["desired.applied"], resource=resource, until_seq=seq, descending=True, limit=1):
        if isinstance(r.event, DesiredApplied):
            return r.event.payload.commit
    return None


def health_episodes(log: EventLog, since: datetime, until: datetime) -> list[HealthEpisodeRow]:
    """The spans of not being Healthy that overlap ``[since, until)``, by start."""
    open_: dict[str, tuple[int, HealthChanged]] = {}
    spans: list[tuple[int, HealthChanged, HealthChanged | None]] = []
    for r in log.read(types=["health.changed"], end=until):
        ev = r.event
        if not isinstance(ev, HealthChanged) or ev.resource is None:
            continue
        began = open_.pop(ev.resource, None)
        if began is not None:
            spans.append((*began, ev))
        if ev.payload.status != "Healthy":
            open_[ev.resource] = (r.seq, ev)
    spans += [(seq, ev, None) for seq, ev in open_.values()]
    out = []
    for seq, start, end in sorted(spans, key=lambda s: s[0]):
        if end is not None and end.effective_at < since:
            continue
        stop = end.effective_at if end is not None else until
        out.append(HealthEpisodeRow(
            resource=str(start.resource), status=start.payload.status, started_at=start.effective_at,
            ended_at=end.effective_at if end is not None else None,
            duration_seconds=max(0.0, (stop - max(start.effective_at, since)).total_seconds()),
            became=end.payload.status if end is not None else None, reason=start.payload.reason,
            message=start.payload.detail, commit=_commit_of(log, str(start.resource), seq)))
    return out
