"""Rollback through Git: one new commit on the tracked branch whose tree, under the
configured paths, is the tree of the commit that was in force at the moment asked (the
last valid one then), or of the commit named. Files outside the paths are untouched; a
Kustomize folder gets its sources back (the renderer renders them again).

History is never rewritten: the commit is a descendant of the branch head, the branch only
moves forward (a fast-forward, failing if it moved meanwhile), and a push is never forced.
The commit carries a ``Rollback-To: <sha>`` trailer, so the ``git.commit`` event of it says
what it rolled back to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gitops.events.models import GitCommit
from gitops.model.errors import UsageError
from gitops.model.times import format_time
from gitops.projections import desired_at, fold_desired, resolve_at
from gitops.sources.git import GitIngest
from gitops.sources.git.records import ROLLBACK_TRAILER
from gitops.store import EventLog

__all__ = ["RollbackPlan", "apply_rollback", "plan_rollback"]


@dataclass
class RollbackPlan:
    target: str  # the commit whose state is restored
    target_subject: str
    in_force_at: datetime | None  # the moment asked, when a time was given
    head: str  # the branch head the new commit goes on
    tree: str  # the new commit's tree
    files: list[tuple[str, str]] = field(default_factory=list)  # (status, path) against the head
    objects: list[tuple[str, str]] = field(default_factory=list)  # (created|changed|removed, key)
    message: str = ""

    @property
    def nothing_to_do(self) -> bool:
        return not self.files


def _target(log: EventLog, source: GitIngest, text: str) -> tuple[GitCommit, datetime | None]:
    commits = [r.event for r in log.read(types=["git.commit"]) if isinstance(r.event, GitCommit)
               and r.event.payload.origin == source.origin]
    if not commits:
        raise UsageError(f"the log holds no commit of {source.origin}: ingest it first")
    moment = resolve_at(log, text, origin=source.origin)
    if moment.commit is not None:
        chosen = next((c for c in commits if c.payload.sha == moment.commit), None)
        if chosen is None:
            raise UsageError(f"commit {moment.commit[:12]} is not on {source.branch} of {source.repo.url}")
        if not chosen.payload.valid:
            raise UsageError(f"commit {moment.commit[:12]} was invalid ({chosen.payload.errors} errors): nothing of "
                             "it was ever in force; roll back to a valid commit")
        return chosen, None
    valid = [c for c in commits if c.payload.valid and c.effective_at <= moment.at]
    if not valid:
        raise UsageError(f"no valid commit of {source.branch} was in force at {format_time(moment.at)}")
    return valid[-1], moment.at


def plan_rollback(log: EventLog, source: GitIngest, text: str) -> RollbackPlan:
    """What rolling back to ``text`` (a time, or a commit sha) would commit."""
    source.repo.fetch()
    head = source.repo.head(source.branch)
    if head is None:
        raise UsageError(f"{source.branch} of {source.repo.url} has no commits")
    target, at = _target(log, source, text)
    sha = target.payload.sha
    if not source.repo.exists(sha) or not source.repo.is_ancestor(sha, head):
        raise UsageError(f"commit {sha[:12]} is not in the history of {source.branch} (rewritten since?)")
    tree = source.repo.compose(head, sha, source.config.paths)
    files = source.repo.changed_files(source.repo.tree_of(head), tree)
    now = {k: e.manifest for k, e in fold_desired(log.current("desired", origin=source.origin)).items()}
    commit_moment = resolve_at(log, sha, origin=source.origin)
    then = {k: e.manifest for k, e in desired_at(log, commit_moment, origin=source.origin).items()}
    objects = sorted([("removed", k) for k in now if k not in then] + [("created", k) for k in then if k not in now]
                     + [("changed", k) for k in then if k in now and then[k] != now[k]], key=lambda o: o[1])
    subject = target.payload.message.splitlines()[0] if target.payload.message else ""
    when = f", the last valid commit in force at {format_time(at)}" if at is not None else ""
    whole = source.config.paths == ["."]
    paths = ", ".join(source.config.paths)
    message = (f"Roll back {'' if whole else paths + ' '}to {sha[:12]}\n\n"
               f"Restores {'the repository' if whole else paths} as commit {sha} ({subject!r}) has "
               f"{'it' if whole else 'them'}{when}.\n\n"
               f"{ROLLBACK_TRAILER}: {sha}\n")
    return RollbackPlan(sha, subject, at, head, tree, files, objects, message)


def apply_rollback(source: GitIngest, plan: RollbackPlan, *, author: tuple[str, str] | None,
                   push: bool) -> str:
    """Write the rollback commit, move the branch forward to it (and push it). Returns its
    sha. A local working tree with changes not committed is refused first."""
    repo = source.repo
    if repo.is_dirty():
        raise UsageError(f"{repo.url} has changes not committed: commit or stash them first")
    identity = author or repo.identity()
    if identity is None:
        raise UsageError("no author: set git's user.name and user.email, or pass --author 'Name <email>'")
    new = repo.commit_tree(plan.tree, plan.head, plan.message, identity)
    repo.advance(source.branch, new, plan.head)
    if push:
        repo.push(source.branch, new)
    return new
