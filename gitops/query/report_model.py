"""The compliance report's model: documented pydantic rows and sections (their JSON Schema
is ``schema/report.schema.json``); ``gitops.query.report`` builds it from the log."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gitops.query.report_evidence import AccessRow, CommitObject
from gitops.query.report_health import HealthEpisodeRow
from gitops.query.report_policy import Approval
from gitops.query.report_scope import Scope

__all__ = ["ClusterSummary", "ComplianceReport", "Coverage", "DriftEpisodeRow", "GitChange", "Integrity",
           "OutOfBandChange", "Outcome", "PruneRow", "ReconcileFailure", "Summary"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Integrity(_Model):
    ok: bool = Field(description="the hash chain and the Merkle tree verified over the whole log, it extends its "
                                 "latest signed checkpoint, and (when they were checked) the projection tables the "
                                 "report reads match the log")
    checked: int = Field(description="events whose hashes were recomputed")
    head_seq: int | None = Field(description="the last event's seq")
    head_hash: str | None = Field(description="the last event's hash: check the same log later against it")
    problem: str | None = Field(default=None, description="where and how the chain breaks, if it does")
    checkpoint: str | None = Field(default=None, description="the latest signed checkpoint of the log (a C2SP "
                                   "signed note): check its signature with the log's public key, and any later "
                                   "copy of the log against it ('gitops verify --checkpoint')")
    checkpoint_size: int | None = Field(default=None, description="the events the latest checkpoint signs")
    consistent_with_checkpoint: bool | None = Field(
        default=None, description="whether the log's first checkpoint_size events are the ones it signed (their "
                                  "Merkle root); null when the log has no checkpoint")
    projections_checked: bool = Field(
        default=False, description="whether every projection table the report reads was compared with the log "
                                   "(--verify-projections); false: only which objects Git manages was (always "
                                   "checked: it decides which changes were out of band), each change's fields were "
                                   "not ('gitops verify --projections' checks them)")
    projection_problems: list[str] = Field(default_factory=list, description="where the projection tables checked "
                                                                             "differ from the log (the first 20)")


class Summary(_Model):
    changes: int = Field(description="changes of the desired and the actual state in the range")
    commits: int
    authors: list[str]
    out_of_band_changes: int = Field(description="changes to objects Git manages made neither through Git nor by "
                                                  "the reconciler")
    drift_episodes: int
    mean_time_to_remediate_seconds: float | None
    max_time_to_remediate_seconds: float | None
    reconcile_passes: int = Field(description="passes that applied or detected (not dry runs)")
    dry_run_passes: int = Field(default=0, description="dry runs: they changed nothing, and what they would have "
                                                       "done is counted nowhere else")
    reconcile_failures: int = Field(description="actions that failed (not those a dry run said would fail)")
    approval_exceptions: int = Field(default=0, description="changes through Git that do not meet report.require")
    degraded_episodes: int = Field(default=0, description="spans in the range when an object Git desires was "
                                                          "Degraded")
    require: str = Field(default="none", description="the approval policy the changes were checked against")


class GitChange(_Model):
    commit: str
    time: datetime
    author: str
    author_email: str
    committer: str
    committer_email: str
    signed: bool
    signer_key: str | None
    valid: bool = Field(description="false: the commit had errors and nothing of it was applied")
    source: str = Field(default="", description="the Git source that read it (git:URL#BRANCH[:PATHS]): a commit "
                                                "read by two sources is listed once for each, with what it changed "
                                                "in that source's desired state")
    objects: int = Field(description="objects it changed in the desired state")
    changed: list[CommitObject] = Field(default_factory=list, description="those objects, and how it changed each")
    applied_at: datetime | None = Field(description="when the reconciler first applied something of it")
    message: str
    rollback_to: str | None = Field(default=None, description="a rollback: the commit whose state it restores")
    approval: Approval | None = Field(default=None, description="signature, review and merge evidence, and whether "
                                                                "it meets report.require")


Outcome = Literal["reverted by self-heal", "reverted by hand", "adopted by Git", "removed by Git", "deleted",
                  "still differs", "no drift", "not checked"]


class OutOfBandChange(_Model):
    seq: int
    time: datetime
    cluster: str = Field(default="", description="the cluster it was made in (its cluster.name, or API server URL)")
    actor: str | None = Field(description="the audited user or field manager; null when no evidence names one")
    via: str | None = Field(default=None, description="the user that authenticated and impersonated the actor "
                                                      "(kubectl --as, a dashboard acting for its users)")
    evidence: str = Field(description="how the actor is known: audit, managed-fields, unknown")
    candidates: list[str] = Field(description="who it may have been, when no evidence names one")
    resource: str
    change: str = Field(description="added, modified, relisted or deleted")
    fields: str = Field(description="what changed, one line; Secret values only as (changed)")
    outcome: Outcome = Field(description="how the drift it caused or joined ended; no drift: the reconciler's drift "
                                         "step followed it and it did not make the object differ from Git; not "
                                         "checked: that step has not followed it (it came before the first reconcile "
                                         "pass or after the last one)")


class DriftEpisodeRow(_Model):
    cluster: str = Field(default="", description="the cluster the object drifted in (\"\" in logs before it was "
                                                 "recorded)")
    resource: str
    opened_at: datetime
    closed_at: datetime | None
    duration_seconds: float | None
    cause: str | None = Field(description="who made the change that opened it, when known")
    resolution: str | None = Field(description="reconciled, reverted, git-changed, git-removed, deleted; null "
                                               "while open")
    fields: list[str]


class ReconcileFailure(_Model):
    seq: int
    time: datetime
    cluster: str = Field(default="", description="the cluster acted on")
    resource: str | None
    action: str
    code: int | None
    reason: str | None
    error: str | None
    terminal: bool


class PruneRow(_Model):
    """An object the reconciler deleted: pruned (Git no longer has it), or deleted to be
    created again (``recreated``: an immutable field changed; ``uid`` the incarnation)."""

    seq: int
    time: datetime
    cluster: str = Field(default="", description="the cluster acted on")
    resource: str | None
    result: str
    dry_run: bool
    recreated: bool = Field(default=False, description="deleted to be created again (an immutable field changed), "
                                                       "not removed from Git")
    uid: str | None = Field(default=None, description="the incarnation deleted")


class ClusterSummary(_Model):
    """One cluster's share of the report: each cluster's rows are its own, never folded into another's."""

    cluster: str
    changes: int = Field(description="changes the cluster recorded in the range")
    out_of_band_changes: int
    drift_episodes: int
    reconcile_failures: int
    prunes: int


class Coverage(_Model):
    cluster_changes: int = Field(description="changes to objects Git manages")
    traced_to_commit: int = Field(description="made by the reconciler applying a commit")
    share: float | None


class ComplianceReport(_Model):
    """A compliance report of a gitops event log over a time range."""

    generated_at: datetime
    generated_by: str = Field(description="OS user and host that made it")
    since: datetime
    until: datetime
    integrity: Integrity
    summary: Summary
    git_changes: list[GitChange]
    rollbacks: list[GitChange] = Field(description="the changes through Git that were rollbacks (gitops rollback)")
    out_of_band: list[OutOfBandChange]
    drift_episodes: list[DriftEpisodeRow]
    reconcile_failures: list[ReconcileFailure]
    prunes: list[PruneRow]
    access: list[AccessRow] = Field(description="who used the log in the range: the operator events")
    health: list[HealthEpisodeRow] = Field(default_factory=list, description="when objects Git desires were not "
                                                                             "Healthy, and the commit in force then")
    scope: Scope | None = Field(default=None, description="what the report covers, and the holes in its evidence")
    coverage: Coverage
    clusters: list[ClusterSummary] = Field(default_factory=list, description="the report by cluster, for a log of "
                                                                             "one cluster or many")
