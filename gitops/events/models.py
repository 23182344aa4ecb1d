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
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from gitops.events.redaction import unredacted_secret_fields

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
    "OperatorAccess",
    "OperatorPayload",
    "ReconcileAction",
    "ReconcileActionPayload",
    "ReconcileFinished",
    "ReconcileFinishedPayload",
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


class EventSource(StrEnum):
    GIT = "git"
    CLUSTER = "cluster"
    AUDIT = "audit"
    RECONCILER = "reconciler"
    OPERATOR = "operator"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Manifest(_Frozen):
    """A payload carrying a (redacted) Kubernetes object."""

    manifest: dict[str, Any]

    @field_validator("manifest")
    @classmethod
    def _no_clear_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = unredacted_secret_fields(v)
        if bad:
            raise ValueError(f"Secret values must be redacted before an event is built: {', '.join(bad)}")
        return v


# ---------------------------------------------------------------------------- payloads


class GitPerson(_Frozen):
    name: str
    email: str
    time: datetime


class GitCommitPayload(_Frozen):
    sha: str
    parents: list[str]
    author: GitPerson
    committer: GitPerson
    message: str
    signed: bool = False
    signer_key: str | None = None
    branch: str
    repository: str
    origin: str
    valid: bool = True
    errors: int = 0  # problems that make this commit's tree invalid (recorded where each appeared)
    observed_at: datetime | None = None  # when the branch head was seen to move (live), else None
    renderer: str | None = None  # what rendered its kustomizations, e.g. "kubectl kustomize (kustomize v5.5.0)"
    rollback_to: str | None = None  # a rollback (gitops rollback): the commit whose state it restores


class GitRewrittenPayload(_Frozen):
    branch: str
    repository: str
    origin: str
    old_head: str
    new_head: str
    merge_base: str | None


class GitReconfiguredPayload(_Frozen):
    """What the Git source reads changed (paths, globs, default namespace, redaction), so
    ``commit``, the last one read, was read again under the new settings. The
    ``desired.*`` events that follow with the same revision and actor are that re-read:
    changes of configuration, not of Git."""

    branch: str
    repository: str
    origin: str
    commit: str
    previous: dict[str, Any]
    settings: dict[str, Any]
    valid: bool


class DesiredAppliedPayload(_Manifest):
    commit: str
    path: str
    document_index: int
    line: int | None = None
    origin: str = ""  # the source that desires it, e.g. "git:<repository>#<branch>"


class DesiredRemovedPayload(_Frozen):
    commit: str
    path: str | None = None
    origin: str = ""


class Attribution(StrEnum):
    AUDIT = "audit"
    MANAGED_FIELDS = "managed-fields"
    RECONCILER = "reconciler"
    UNKNOWN = "unknown"


class ClusterObservedPayload(_Manifest):
    origin: str = ""  # the cluster, e.g. "cluster:https://10.0.0.1:6443"
    resource_version: str
    change: Literal["added", "modified", "relisted"]
    manager: str | None = None
    operation: str | None = None
    attribution: Attribution = Attribution.UNKNOWN
    audit_id: str | None = None
    # attribution unknown: who may have made it (audit users, field managers), none of them proven
    candidates: list[str] = Field(default_factory=list)
    # found by a list or a resumed watch: the change happened before effective_at, which is
    # when it was seen, not when it was made
    observed_late: bool = False


class ClusterDeletedPayload(_Frozen):
    origin: str = ""
    resource_version: str | None
    synthetic: bool = False
    uid: str | None = None
    attribution: Attribution = Attribution.UNKNOWN
    audit_id: str | None = None
    candidates: list[str] = Field(default_factory=list)
    observed_late: bool = False  # as in ClusterObservedPayload


class AuditPayload(_Frozen):
    origin: str = ""
    audit_id: str
    verb: str
    user: str
    groups: list[str] = Field(default_factory=list)
    user_agent: str | None = None
    source_ips: list[str] = Field(default_factory=list)
    request_uri: str
    response_code: int | None = None
    resource_version: str | None = None
    api_version: str | None = None


Mode = Literal["apply", "dry-run", "detect-only"]


class ReconcileStartedPayload(_Frozen):
    run_id: str
    trigger: str  # interval, commit, drift, manual, start
    mode: Mode
    desired_revision: str | None = None  # the last valid commit, whose state the pass acts on
    prune: bool = False
    instance: str = ""
    # why the pass does less than asked: "suspended" (nothing runs), "window <name>"
    # (a deny window: detect-only), "mass-prune" (prunes held)
    held: str | None = None


class ReconcileActionPayload(_Frozen):
    run_id: str
    action: Literal["create", "update", "prune", "noop"]
    result: Literal["succeeded", "failed", "skipped", "planned"]
    error: str | None = None
    terminal: bool = False
    dry_run: bool = False
    code: int | None = None  # the API's status code and reason, when it refused
    reason: str | None = None
    fields: list[str] = Field(default_factory=list)  # what differed (paths), for an update
    commit: str | None = None  # the commit whose manifest was applied
    uid: str | None = None  # a prune: the uid of the object deleted (its cluster.deleted says the same)


class ReconcileFinishedPayload(_Frozen):
    run_id: str
    status: Literal["succeeded", "failed", "partial", "skipped"]
    created: int = 0
    updated: int = 0
    pruned: int = 0
    failed: int = 0
    unchanged: int = 0
    skipped: int = 0  # left alone: annotated, waiting out a backoff, or held
    out_of_sync: int = 0  # found differing (what detect-only and dry-run leave as they are)
    duration_seconds: float = 0.0
    held: str | None = None


class ReconcileLeaderPayload(_Frozen):
    """Leadership of the applying instance (a coordination.k8s.io Lease) changed hands."""

    instance: str
    lease: str  # namespace/name
    identity: str  # this process
    acquired: bool  # True: this process leads from now; False: it stopped leading
    previous: str | None = None  # the holder before it, when taking over


class DriftOpenedPayload(_Frozen):
    episode_id: str
    fields: list[str] = Field(default_factory=list)
    cause_seq: int | None = None


class DriftClosedPayload(_Frozen):
    episode_id: str
    how: Literal["reconciled", "reverted", "git-changed", "deleted"]
    cause_seq: int | None = None


class SourceErrorPayload(_Frozen):
    code: str
    message: str
    origin: str = ""
    commit: str | None = None
    path: str | None = None
    line: int | None = None
    detail: dict[str, str] = Field(default_factory=dict)
    # "warning": something left unread on purpose (a Kustomize file, a Helm chart) that
    # does not make a commit invalid
    severity: Literal["error", "warning"] = "error"


class OperatorPayload(_Frozen):
    """Someone used the log: a report, an export, a replay, a verification; or a service
    started or stopped (PCI DSS 10.2.1.3, 10.2.1.6: access to the audit trail is recorded)."""

    command: str  # e.g. "report", "verify", "run"
    arguments: dict[str, str] = Field(default_factory=dict)  # range, format, filters
    user: str  # the OS user
    host: str
    outcome: Literal["succeeded", "failed", "started", "stopped"]
    detail: str = ""


class SourceOutagePayload(_Frozen):
    target: str
    reason: str
    origin: str = ""


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


class DriftOpened(_Event):
    type: Literal["drift.opened"] = "drift.opened"
    payload: DriftOpenedPayload


class DriftClosed(_Event):
    type: Literal["drift.closed"] = "drift.closed"
    payload: DriftClosedPayload


class SourceErrorEvent(_Event):
    type: Literal["source.error"] = "source.error"
    payload: SourceErrorPayload


class OperatorAccess(_Event):
    type: Literal["operator"] = "operator"
    payload: OperatorPayload


class SourceOutageStarted(_Event):
    type: Literal["source.outage_started"] = "source.outage_started"
    payload: SourceOutagePayload


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
    | ReconcileLeader
    | DriftOpened
    | DriftClosed
    | SourceErrorEvent
    | OperatorAccess
    | SourceOutageStarted
    | SourceOutageEnded,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)
EVENT_TYPES: tuple[str, ...] = tuple(
    str(cls.model_fields["type"].default) for cls in get_args(get_args(AnyEvent)[0])
)


class Recorded(_Frozen):
    """An event as the log holds it: its position, when the log learned of it, its hashes."""

    seq: int
    recorded_at: datetime
    prev_hash: str
    hash: str
    event: AnyEvent
