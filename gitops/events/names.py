"""What the log's events are called, without their models: where an event comes from and
the event types. A command that only checks its options against them (``gitops log``'s
``--type`` and ``--source``) imports no pydantic for it."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["EVENT_TYPES", "EventSource"]


class EventSource(StrEnum):
    GIT = "git"
    CLUSTER = "cluster"
    AUDIT = "audit"
    RECONCILER = "reconciler"
    OPERATOR = "operator"


EVENT_TYPES: tuple[str, ...] = (
    "git.commit", "git.rewritten", "git.reconfigured", "desired.applied", "desired.removed", "cluster.observed",
    "cluster.deleted", "audit", "reconcile.started", "reconcile.action", "reconcile.finished",
    "reconcile.interrupted", "reconcile.leader", "drift.opened", "drift.closed", "health.changed", "notify.sent",
    "notify.failed", "source.error", "operator", "source.outage_started", "source.outage_ended",
    "integrity.acknowledged", "integrity.checkpoint",
)
"""Every event type, in the order of ``gitops.events.models.AnyEvent``'s union (a test holds
the two equal)."""
