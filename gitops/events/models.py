"""Every event gitops records, as frozen pydantic models, and the one union that reads them.

An event is an envelope (``id``, ``type``, ``source``, ``resource``, ``actor``,
``effective_at``, ``revision``) around a typed ``payload``. The store adds ``seq``,
``recorded_at`` and the hash chain when it appends; what comes back is a ``Recorded``.

``id`` is the idempotency key: ``event_id`` hashes the event type with the natural key
of what happened (a commit sha, an object and a resourceVersion), so ingesting the same
thing twice yields the same id and the store appends it once.

Manifests inside payloads must be redacted before the event is built
(``gitops.events.redaction.redact``); a payload holding a Secret value in clear is refused.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from gitops.events.names import EVENT_TYPES, EventSource
from gitops.events.payloads import (
    Attribution,
    AuditPayload,
    ClusterDeletedPayload,
    ClusterObservedPayload,
    DesiredAppliedPayload,
    DesiredRemovedPayload,
    DriftClosedPayload,
    DriftOpenedPayload,
    GitCommitPayload,
    GitPerson,
    GitReconfiguredPayload,
    GitRewrittenPayload,
    HealthChangedPayload,
    IntegrityAcknowledgedPayload,
    IntegrityCheckpointPayload,
    Mode,
    NotifyPayload,
    OperatorPayload,
    ReconcileActionPayload,
    ReconcileFinishedPayload,
    ReconcileInterruptedPayload,
    ReconcileLeaderPayload,
    ReconcileStartedPayload,
    SourceErrorPayload,
    SourceOutagePayload,
    _Frozen,
)

__all__ = [
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "AnyEvent",
    "Attribution",
    "AuditPayload",
    "AuditRecorded",
    "ClusterDeleted",
    "ClusterDeletedPayload",
    "ClusterObserved",
    "ClusterObservedPayload",
    "DesiredApplied",
    "DesiredAppliedPayload",
    "DesiredRemoved",
    "DesiredRemovedPayload",
    "DriftClosed",
    "DriftClosedPayload",
    "DriftOpened",
    "DriftOpenedPayload",
    "EventSource",
    "GitCommit",
    "GitCommitPayload",
    "GitPerson",
    "GitReconfigured",
    "GitReconfiguredPayload",
    "GitRewritten",
    "GitRewrittenPayload",
    "HealthChanged",
    "HealthChangedPayload",
    "IntegrityAcknowledged",
    "IntegrityAcknowledgedPayload",
    "IntegrityCheckpoint",
    "IntegrityCheckpointPayload",
    "Mode",
    "NotifyFailed",
    "NotifyPayload",
    "NotifySent",
    "OperatorAccess",
    "OperatorPayload",
    "ReconcileAction",
    "ReconcileActionPayload",
    "ReconcileFinished",
    "ReconcileFinishedPayload",
    "ReconcileInterrupted",
    "ReconcileInterruptedPayload",
    "ReconcileLeader",
    "ReconcileLeaderPayload",
    "ReconcileStarted",
    "ReconcileStartedPayload",
    "Recorded",
    "SourceErrorEvent",
    "SourceErrorPayload",
    "SourceOutageEnded",
    "SourceOutagePayload",
    "SourceOutageStarted",
    "content_digest",
    "event_id",
    "model_fields",
    "payload_json",
]


def event_id(event_type: str, *natural_key: str) -> str:
    """The deterministic idempotency key of an event (128 bits, hex)."""
    return hashlib.sha256("\x00".join((event_type, *natural_key)).encode()).hexdigest()[:32]


def model_fields(model: BaseModel) -> dict[str, Any]:
    """A model's field values by name, unconverted: what ``dict(model)``, pydantic's public
    iteration, gives. Read from the instance ``__dict__``, where pydantic v2 keeps them,
    because ``dict(model)`` cost 0.07x of bench_append's ratio (0.47x against 0.54x). If a
    pydantic release stores fields elsewhere, tests/test_events.py::
    test_model_fields_are_what_pydantic_iterates fails first and says so."""
    return model.__dict__


def _default(obj: object) -> Any:
    if isinstance(obj, BaseModel):
        return model_fields(obj)
    raise TypeError(f"cannot store a {type(obj).__name__} in an event payload")


def payload_json(event: _Event) -> str:
    """The stored JSON of an event's payload. orjson, not pydantic's serialiser: the log
    writes one per event and this is the hot path (see scripts/bench_append.py); the
    result reads back through the same models, so the two agree on meaning."""
    payload: BaseModel = getattr(event, "payload")  # noqa: B009 - every concrete event has one
    try:
        return orjson.dumps(model_fields(payload), default=_default, option=orjson.OPT_UTC_Z).decode()
    except TypeError:  # a key that is not a string: slower, so not the default
        return orjson.dumps(model_fields(payload), default=_default,
                            option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS).decode()


def content_digest(obj: dict[str, Any]) -> str:
    """SHA-256 of ``obj``'s canonical JSON (sorted keys): equal content, equal digest,
    whatever the key order it was written or served in."""
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)).hexdigest()


# ---------------------------------------------------------------------------- envelopes


class _Event(_Frozen):
    id: str
    source: EventSource
    resource: str | None = None
    actor: str | None = None
    effective_at: datetime
    revision: str | None = None


class GitCommit(_Event):
    type: Literal["git.commit"] = "git.commit"
    payload: GitCommitPayload


class GitRewritten(_Event):
    type: Literal["git.rewritten"] = "git.rewritten"
    payload: GitRewrittenPayload


class GitReconfigured(_Event):
    type: Literal["git.reconfigured"] = "git.reconfigured"
    payload: GitReconfiguredPayload


class DesiredApplied(_Event):
    type: Literal["desired.applied"] = "desired.applied"
    payload: DesiredAppliedPayload


class DesiredRemoved(_Event):
    type: Literal["desired.removed"] = "desired.removed"
    payload: DesiredRemovedPayload


class ClusterObserved(_Event):
    type: Literal["cluster.observed"] = "cluster.observed"
    payload: ClusterObservedPayload


class ClusterDeleted(_Event):
    type: Literal["cluster.deleted"] = "cluster.deleted"
    payload: ClusterDeletedPayload


class AuditRecorded(_Event):
    type: Literal["audit"] = "audit"
    payload: AuditPayload


class ReconcileStarted(_Event):
    type: Literal["reconcile.started"] = "reconcile.started"
    payload: ReconcileStartedPayload


class ReconcileAction(_Event):
    type: Literal["reconcile.action"] = "reconcile.action"
    payload: ReconcileActionPayload


class ReconcileLeader(_Event):
    type: Literal["reconcile.leader"] = "reconcile.leader"
    payload: ReconcileLeaderPayload


class ReconcileFinished(_Event):
    type: Literal["reconcile.finished"] = "reconcile.finished"
    payload: ReconcileFinishedPayload


class ReconcileInterrupted(_Event):
    type: Literal["reconcile.interrupted"] = "reconcile.interrupted"
    payload: ReconcileInterruptedPayload


class DriftOpened(_Event):
    type: Literal["drift.opened"] = "drift.opened"
    payload: DriftOpenedPayload


class DriftClosed(_Event):
    type: Literal["drift.closed"] = "drift.closed"
    payload: DriftClosedPayload


class HealthChanged(_Event):
    type: Literal["health.changed"] = "health.changed"
    payload: HealthChangedPayload


class NotifySent(_Event):
    type: Literal["notify.sent"] = "notify.sent"
    payload: NotifyPayload


class NotifyFailed(_Event):
    type: Literal["notify.failed"] = "notify.failed"
    payload: NotifyPayload


class SourceErrorEvent(_Event):
    type: Literal["source.error"] = "source.error"
    payload: SourceErrorPayload


class OperatorAccess(_Event):
    type: Literal["operator"] = "operator"
    payload: OperatorPayload


class SourceOutageStarted(_Event):
    type: Literal["source.outage_started"] = "source.outage_started"
    payload: SourceOutagePayload


class IntegrityAcknowledged(_Event):
    type: Literal["integrity.acknowledged"] = "integrity.acknowledged"
    payload: IntegrityAcknowledgedPayload


class IntegrityCheckpoint(_Event):
    type: Literal["integrity.checkpoint"] = "integrity.checkpoint"
    payload: IntegrityCheckpointPayload


class SourceOutageEnded(_Event):
    type: Literal["source.outage_ended"] = "source.outage_ended"
    payload: SourceOutagePayload


AnyEvent = Annotated[
    GitCommit
    | GitRewritten
    | GitReconfigured
    | DesiredApplied
    | DesiredRemoved
    | ClusterObserved
    | ClusterDeleted
    | AuditRecorded
    | ReconcileStarted
    | ReconcileAction
    | ReconcileFinished
    | ReconcileInterrupted
    | ReconcileLeader
    | DriftOpened
    | DriftClosed
    | HealthChanged
    | NotifySent
    | NotifyFailed
    | SourceErrorEvent
    | OperatorAccess
    | SourceOutageStarted
    | SourceOutageEnded
    | IntegrityAcknowledged
    | IntegrityCheckpoint,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent, config=ConfigDict(defer_build=True))  # see _Frozen


class Recorded(_Frozen):
    """An event as the log holds it: its position, when the log learned of it, its hashes."""

    seq: int
    recorded_at: datetime
    prev_hash: str
    hash: str
    event: AnyEvent
