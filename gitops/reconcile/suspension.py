"""``gitops suspend`` / ``resume``: stop and restart an instance's reconciliation from the
command line, as ``flux suspend`` and Argo CD's disabled auto-sync do.

Each is an ``operator`` event (who, on which host, why), and the state it leaves is kept in
a checkpoint written in the same transaction, which every pass reads: a running ``gitops
run`` honours it from its next pass, within one interval. A suspended pass is recorded as
held, as with ``reconcile.suspend`` in the config, and applies, prunes and detects nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from gitops.events.models import EventSource, OperatorAccess, OperatorPayload, event_id
from gitops.model.identity import host, os_user
from gitops.model.times import format_time, utc_now
from gitops.store import Checkpoint, EventLog

__all__ = ["Suspension", "set_suspended", "suspension"]


def _name(instance: str) -> str:
    return f"reconciler:{instance}:suspended"


@dataclass(frozen=True)
class Suspension:
    """An instance suspended from the command line: by whom, when, why."""

    by: str
    at: str
    reason: str

    def describe(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"suspended by {self.by} at {self.at} (gitops suspend){why}"


def suspension(log: EventLog, instance: str) -> Suspension | None:
    """The suspension of ``instance`` in force, or None when it runs."""
    value = log.checkpoint(_name(instance))
    if not isinstance(value, dict) or not value.get("suspended"):
        return None
    return Suspension(str(value.get("by", "unknown")), str(value.get("at", "")), str(value.get("reason", "")))


def set_suspended(log: EventLog, instance: str, suspended: bool, reason: str = "") -> tuple[int, bool]:
    """Record ``gitops suspend`` (or ``resume``) of ``instance``; returns the event's seq and
    whether the state changed (suspending a suspended instance records the request, and
    keeps who suspended it first)."""
    user, where = os_user(), host()
    at = utc_now()
    before = suspension(log, instance)
    command = "suspend" if suspended else "resume"
    event = OperatorAccess(
        id=event_id("operator", command, instance, user, where, at.isoformat(), uuid.uuid4().hex),
        source=EventSource.OPERATOR, actor=user, effective_at=at,
        payload=OperatorPayload(command=command, arguments={"instance": instance, **({"reason": reason} if reason
                                                                                    else {})},
                                user=user, host=where, outcome="succeeded"))
    changed = (before is None) == suspended
    if not changed:
        return log.append([event])[0].seq, False
    value = {"suspended": True, "by": user, "at": format_time(at), "reason": reason} if suspended else None
    appended = log.append([event], checkpoint=Checkpoint(_name(instance), value))
    return appended[0].seq, True
