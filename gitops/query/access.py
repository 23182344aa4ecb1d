"""The log records access to itself: who read or exported what, and when services started
and stopped (``operator`` events)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from gitops.events.models import EventSource, OperatorAccess, OperatorPayload, event_id
from gitops.model.identity import host, os_user
from gitops.model.times import utc_now
from gitops.store import EventLog

__all__ = ["operator_identity", "record_access"]


def operator_identity() -> tuple[str, str]:
    """(OS user, host) of this process."""
    return os_user(), host()


def record_access(log: EventLog, command: str, arguments: Mapping[str, object], *,
                  outcome: str = "succeeded", detail: str = "") -> None:
    """Append one ``operator`` event: ``command`` run with ``arguments`` and its outcome."""
    user, host = operator_identity()
    at = utc_now()
    log.append([OperatorAccess(
        id=event_id("operator", command, user, host, at.isoformat(), uuid.uuid4().hex), source=EventSource.OPERATOR,
        actor=user, effective_at=at,
        payload=OperatorPayload.model_validate({
            "command": command, "arguments": {k: str(v) for k, v in arguments.items() if v not in (None, (), "")},
            "user": user, "host": host, "outcome": outcome, "detail": detail}))])
