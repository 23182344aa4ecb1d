"""The payloads of events: what each type of event says, as frozen pydantic models.

``gitops.events.models`` wraps each in its envelope; import them from there.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gitops.events.redaction import unredacted_secret_fields


class _Frozen(BaseModel):
    # defer_build: a model's validator is built when it is first used, not when this
    # package is imported: a command that reads the log's rows without models (``gitops
    # log``'s table) builds none of them (some 40 ms of its start)
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class _Manifest(_Frozen):
    """A payload carrying a (redacted) Kubernetes object."""

    manifest: dict[str, Any]
    # how its secret values are digested: "sha256" (plain), "hmac-sha256:<key id>" (keyed);
    # absent on events written before keys, and on objects with nothing digested
    digest_scheme: str | None = None

    @field_validator("manifest")
    @classmethod
    def _no_clear_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = unredacted_secret_fields(v)
        if bad:
            raise ValueError(f"Secret values must be redacted before an event is built: {', '.join(bad)}")
        return v


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
    merged_authors: list[GitPerson] = Field(default_factory=list)  # a merge: the authors of its other parents


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


class AuditPayload(_Frozen):
    origin: str = ""
    audit_id: str
    verb: str
    user: str  # who made the change: the impersonated user when there was one
    via: str | None = None  # the user that authenticated and impersonated ``user`` (kubectl --as)
    groups: list[str] = Field(default_factory=list)
    user_agent: str | None = None
    source_ips: list[str] = Field(default_factory=list)
    request_uri: str
    response_code: int | None = None
    resource_version: str | None = None
    api_version: str | None = None
    uid: str | None = None  # of the object, where the record says it (a delete is joined by it)
    # when the API server received the request (the event's effective_at is when it completed);
    # absent in records kept before it was
    received_at: datetime | None = None
    dry_run: bool = False  # a server-side dry run (dryRun in its query or its DeleteOptions): nothing was written


class ClusterObservedPayload(_Manifest):
    origin: str = ""  # the cluster, e.g. "cluster:https://10.0.0.1:6443"
    resource_version: str
    change: Literal["added", "modified", "relisted"]
    manager: str | None = None
    operation: str | None = None
    attribution: Attribution = Attribution.UNKNOWN
    audit_id: str | None = None
    via: str | None = None  # audit: the user that authenticated and impersonated the actor
    # audit: when the watch saw it (the event's effective_at is when the change was made: the
    # audit record's stageTimestamp); absent where no audit record was joined
    observed_at: datetime | None = None
    # attribution unknown: who may have made it (audit users, field managers), none of them proven
    candidates: list[str] = Field(default_factory=list)
    # found by a list or a resumed watch: the change happened before effective_at, which is
    # when it was seen, not when it was made
    observed_late: bool = False
    # made by the control plane itself (a controller's field manager, a system: user): the
    # cluster working, not a change made outside Git
    control_plane: bool = False
    # the audit record joined (audit_id) when it is kept here rather than as an ``audit``
    # event of its own: a record of the audit log file that this change was joined to
    # before the record was written (gitops.sources.cluster.audit_file); None otherwise
    audit: AuditPayload | None = None


class ClusterDeletedPayload(_Frozen):
    origin: str = ""
    resource_version: str | None
    synthetic: bool = False
    uid: str | None = None
    attribution: Attribution = Attribution.UNKNOWN
    audit_id: str | None = None
    via: str | None = None  # as in ClusterObservedPayload
    observed_at: datetime | None = None  # as in ClusterObservedPayload
    candidates: list[str] = Field(default_factory=list)
    observed_late: bool = False  # as in ClusterObservedPayload
    control_plane: bool = False  # as in ClusterObservedPayload (the garbage collector deleting a dependent)
    audit: AuditPayload | None = None  # as in ClusterObservedPayload


Mode = Literal["apply", "dry-run", "detect-only"]


class ReconcileStartedPayload(_Frozen):
    cluster: str = ""  # the cluster acted on or judged (its origin, cluster:NAME); "" in logs before it was recorded
    run_id: str
    trigger: str  # interval, commit, drift, health (a controller wrote a status), manual, start
    mode: Mode
    desired_revision: str | None = None  # the last valid commit, whose state the pass acts on
    prune: bool = False
    instance: str = ""
    # why the pass does less than asked: "suspended" (nothing runs), "window <name>"
    # (a deny window: detect-only), "mass-prune" (prunes held)
    held: str | None = None


class ReconcileActionPayload(_Frozen):
    cluster: str = ""  # the cluster acted on or judged (its origin, cluster:NAME); "" in logs before it was recorded
    run_id: str
    # what was done: for an apply, what the API server answered (201 created, 200 updated),
    # which may differ from the plan (an object created meanwhile)
    action: Literal["create", "update", "recreate", "prune", "noop"]  # recreate: deleted, then created (an
    # immutable field changed; ``uid`` is the incarnation deleted)
    result: Literal["succeeded", "failed", "skipped", "planned"]
    error: str | None = None  # a failure's message, or why it was left alone (prune-blocked, conflict...)
    terminal: bool = False
    dry_run: bool = False
    code: int | None = None  # the API's status code and reason, when it refused
    reason: str | None = None
    fields: list[str] = Field(default_factory=list)  # what differed (paths), for an update
    commit: str | None = None  # the commit whose manifest was applied
    uid: str | None = None  # a prune: the uid of the object deleted (its cluster.deleted says the same)
    planned: Literal["create", "update", "prune"] | None = None  # what the plan said, when the server's answer differs
    # server-set fields kept in Git (metadata.uid, status, ...) that were left out of the apply
    dropped: list[str] = Field(default_factory=list)


class ReconcileFinishedPayload(_Frozen):
    cluster: str = ""  # the cluster acted on or judged (its origin, cluster:NAME); "" in logs before it was recorded
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


class ReconcileInterruptedPayload(_Frozen):
    """A pass that began and never recorded its end (the process was killed, the machine
    lost power), found by the next pass of the instance."""

    run_id: str  # the interrupted pass's
    instance: str
    started_seq: int  # its reconcile.started
    identity: str  # the process that ran it
    actions: int = 0  # the actions it recorded before it stopped
    found_by: str  # the process that found it


class ReconcileLeaderPayload(_Frozen):
    """Leadership of the applying instance (a coordination.k8s.io Lease) changed hands."""

    instance: str
    lease: str  # namespace/name
    identity: str  # this process
    acquired: bool  # True: this process leads from now; False: it stopped leading
    previous: str | None = None  # the holder before it, when taking over


class DriftOpenedPayload(_Frozen):
    cluster: str = ""  # the cluster acted on or judged (its origin, cluster:NAME); "" in logs before it was recorded
    episode_id: str
    fields: list[str] = Field(default_factory=list)
    cause_seq: int | None = None


class DriftClosedPayload(_Frozen):
    cluster: str = ""  # the cluster acted on or judged (its origin, cluster:NAME); "" in logs before it was recorded
    episode_id: str
    how: Literal["reconciled", "reverted", "git-changed", "git-removed", "deleted"]
    cause_seq: int | None = None


class HealthChangedPayload(_Frozen):
    """An object Git desires changed health, as its instance's pass judged it from the live
    object (``gitops.diff.health``); ``cause_seq`` is the live version judged."""

    cluster: str = ""  # the cluster acted on or judged (its origin, cluster:NAME); "" in logs before it was recorded
    instance: str
    status: Literal["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"]
    previous: str | None = None  # None: the first judgement of it
    reason: str = ""  # e.g. ProgressDeadlineExceeded
    detail: str = ""  # the condition's own message
    cause_seq: int | None = None
    message: str = ""  # one line for people: "Degraded (was Progressing): ..."


class NotifyPayload(_Frozen):
    """A notification delivered to a sink (``notify.sent``) or given up on (``notify.failed``).
    The sink by its name and its URL without path or query (where webhook tokens live)."""

    sink: str
    endpoint: str  # scheme://host[:port]
    trigger: str
    delivery: str  # the id the receiver sees (X-Gitops-Delivery): a retried delivery keeps it
    cause_seq: int | None = None
    attempts: int = 1
    status_code: int | None = None
    error: str | None = None


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

    @property
    def where(self) -> str:
        """Where the problem is, as the command line says it: ``path:line``, the path, or
        ``(repository)``."""
        return f"{self.path}:{self.line}" if self.path and self.line else self.path or "(repository)"


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


class IntegrityAcknowledgedPayload(_Frozen):
    """An operator recorded what ``gitops verify`` found (so that writers may go on): the
    finding stays in the log, chained after the rows that were left."""

    problem: str  # modified, missing, reordered, truncated, tree
    first_bad_seq: int | None = None
    detail: str
    last_seq: int | None = None  # the last event the log held when it was acknowledged
    recorded_head_seq: int | None = None  # what the recorded head said then
    recorded_head_hash: str | None = None
    user: str
    host: str
    reason: str = ""  # what the operator said


class IntegrityCheckpointPayload(_Frozen):
    """A signed checkpoint of the log (gitops.model.note) was made and published."""

    origin: str
    size: int  # the events it covers: seq 1..size
    root: str  # base64 of the Merkle root
    key: str  # the verifier key's name and id, name+id
    published: list[str] = Field(default_factory=list)  # where to: a directory, a Git ref
