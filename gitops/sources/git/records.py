"""The events a Git source records, built from what its ingest found (``gitops.sources.git.
ingest``): a commit, an object applied or removed, a problem, a rewritten branch.

Event ids hash the branch's origin, its *generation* (which the ingest keeps in its
checkpoint and changes at every rewrite or change of settings) and the commit, so that
replaying one generation appends nothing while commits that come back after a rewrite are
recorded again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from gitops.events.models import (
    DesiredApplied,
    DesiredRemoved,
    DesiredRemovedPayload,
    EventSource,
    GitCommit,
    GitCommitPayload,
    GitPerson,
    GitRewritten,
    GitRewrittenPayload,
    SourceErrorEvent,
    SourceErrorPayload,
    event_id,
)
from gitops.events.redaction import Redaction, scheme_field
from gitops.model.times import utc_now
from gitops.sources.git.commits import CommitInfo
from gitops.sources.git.judge import Desired, Judgement
from gitops.sources.git.repository import GitRepository
from gitops.sources.git.tree import Problem, TreeObject

__all__ = ["ROLLBACK_TRAILER", "Cause", "Records", "rollback_target"]

ROLLBACK_TRAILER = "Rollback-To"
_ROLLBACK = re.compile(rf"^{ROLLBACK_TRAILER}: ([0-9a-f]{{40}})\s*$", re.MULTILINE)


def rollback_target(message: str) -> str | None:
    """The commit a rollback restores, from its ``Rollback-To: <sha>`` trailer."""
    found = _ROLLBACK.findall(message)
    return found[-1] if found else None


@dataclass(frozen=True)
class Cause:
    """What the events of one step are attributed to: a commit and its author, or a change
    of settings and the operator who made it."""

    sha: str
    actor: str | None
    effective: datetime


@dataclass(frozen=True)
class Records:
    """Builds the events of one branch of one repository (``origin``)."""

    origin: str
    branch: str
    repo: GitRepository
    redaction: Redaction

    def commit(self, generation: str, c: CommitInfo, judgement: Judgement, effective: datetime,
               observed_at: datetime | None, *, renderer: str | None) -> GitCommit:
        return GitCommit(
            id=event_id("git.commit", self.origin, generation, c.sha), source=EventSource.GIT,
            actor=c.author.email, effective_at=effective, revision=c.sha,
            payload=GitCommitPayload(
                sha=c.sha, parents=list(c.parents),
                author=GitPerson(name=c.author.name, email=c.author.email, time=c.author.time),
                committer=GitPerson(name=c.committer.name, email=c.committer.email, time=c.committer.time),
                message=c.message, signed=c.signed, signer_key=c.signer_key, branch=self.branch,
                repository=self.repo.url, origin=self.origin, valid=judgement.valid, errors=judgement.errors,
                observed_at=observed_at, renderer=renderer, rollback_to=rollback_target(c.message),
                merged_authors=[GitPerson(name=a.name, email=a.email, time=a.time)
                                for a in (self.repo.author_of(p) for p in c.parents[1:]) if a is not None],
            ),
        )

    def applied(self, generation: str, c: Cause, path: str, obj: TreeObject) -> DesiredApplied:
        # One validation call for envelope and payload: the hot path of a back-fill.
        return DesiredApplied.model_validate({
            "id": event_id("desired.applied", self.origin, generation, c.sha, obj.key),
            "source": EventSource.GIT, "resource": obj.key, "actor": c.actor, "effective_at": c.effective,
            "revision": c.sha,
            "payload": {"commit": c.sha, "path": path, "document_index": obj.index, "line": obj.line,
                        "origin": self.origin, "manifest": obj.manifest,
                        **scheme_field(obj.manifest, self.redaction)},
        })

    def removed(self, generation: str, c: Cause, key: str, old: Desired) -> DesiredRemoved:
        return DesiredRemoved(
            id=event_id("desired.removed", self.origin, generation, c.sha, key), source=EventSource.GIT,
            resource=key, actor=c.actor, effective_at=c.effective, revision=c.sha,
            payload=DesiredRemovedPayload(commit=c.sha, path=old.path, origin=self.origin),
        )

    def error(self, generation: str, c: Cause, p: Problem) -> SourceErrorEvent:
        return SourceErrorEvent(
            id=event_id("source.error", self.origin, generation, c.sha, p.path or "", p.code, str(p.line),
                        p.key or ""),
            source=EventSource.GIT, resource=p.key, actor=c.actor, effective_at=c.effective, revision=c.sha,
            payload=SourceErrorPayload(code=p.code, message=p.message, origin=self.origin, commit=c.sha,
                                       path=p.path, line=p.line, severity="error" if p.blocking else "warning"),
        )

    def rewritten(self, generation: str, old: str, new: str, base: str | None,
                  observed_at: datetime | None) -> GitRewritten:
        return GitRewritten(
            id=event_id("git.rewritten", self.origin, generation, old, new), source=EventSource.GIT,
            effective_at=observed_at or utc_now(), revision=new,
            payload=GitRewrittenPayload(branch=self.branch, repository=self.repo.url, origin=self.origin,
                                        old_head=old, new_head=new, merge_base=base),
        )
