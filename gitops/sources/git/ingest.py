"""Git history into the event log: every commit on a branch becomes desired-state events.

Guarantees:
- First-parent history only, oldest first, from the last checkpoint to the head.
- Per commit: a ``git.commit`` event, then ``desired.applied`` for each object added or
  changed and ``desired.removed`` for each object gone. Unchanged objects (a file renamed,
  an object moved to another file) produce no event.
- A commit whose tree holds bad content (YAML errors, objects without identity, two
  objects with one key, non-UTF-8 or oversized files, symlinks out of the repository)
  is invalid: nothing of it is desired, the last valid commit stays in force, and the
  next valid commit is diffed against that one. A problem is recorded as a
  ``source.error`` at the commit where it appears (or changes), not again at each commit
  it stays in; every ``git.commit`` says whether it is valid and how many errors its tree
  holds. Kustomize files and Helm charts are recognised and reported once, as warnings
  that do not make a commit invalid (``gitops.sources.git.tree``).
- A commit's events are a function of its tree, its parent's tree and the desired state
  before it: the same whether the history is ingested at once or commit by commit.
- Settings that read nothing at the head (a mistyped path, globs that match no file) are
  refused before anything is written: a typo must never empty the desired state.
- Events and the checkpoint that follows them are written in one transaction; a crash
  loses and duplicates nothing, and a re-run appends nothing.
- A branch that no longer descends from the checkpoint (force-push) is recorded as
  ``git.rewritten`` and ingest goes on from the merge base, diffing against what the log
  last held as desired. Nothing already in the log changes.

- The paths read are part of the origin (``origin_of``): two readings of one branch under
  other paths are two sources. When the rest of what the source reads changes between
  passes (globs, default namespace, redaction rules: kept in the checkpoint), the last
  commit read is read again under the
  new settings. A ``git.reconfigured`` event, then the ``desired.*`` (or ``source.error``)
  events that re-read yields, all with the operator as actor: a change of configuration is
  not blamed on the next commit's author. The new generation keeps their ids apart.

Event ids hash the commit and the object with the branch's *generation*, a value kept in
the checkpoint that changes at every rewrite: replaying one generation appends nothing,
while commits that come back after a rewrite (a force-push undone) are recorded again.

Valid time: the committer time for back-filled history; the time the head was seen to
move for commits observed live (``observed_at``), with the commit times in the payload.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gitops.events.models import (
    AnyEvent,
    DesiredApplied,
    EventSource,
    GitReconfigured,
    GitReconfiguredPayload,
    content_digest,
    event_id,
)
from gitops.events.redaction import Redaction, RedactionRule, as_redaction
from gitops.model.bulk import cyclic_gc_paused
from gitops.model.errors import CheckpointMovedError, ConfigError
from gitops.model.identity import os_user
from gitops.model.scope import Scope, builtin_scope
from gitops.model.times import utc_now
from gitops.sources.git.commits import Change, CommitInfo
from gitops.sources.git.config import GitSourceConfig, KustomizeSettings
from gitops.sources.git.judge import Desired, Judgement, judge
from gitops.sources.git.reading import TreeReader
from gitops.sources.git.records import Cause, Records
from gitops.sources.git.repository import GitRepository
from gitops.sources.git.settings import check_keeps_digests_keyed, check_reads_something, origin_of
from gitops.sources.git.tree import Problem
from gitops.store import Checkpoint, EventLog

__all__ = ["GitIngest", "IngestSummary"]

Progress = Callable[[int, int], None]
_PARSE_CACHE_LIMIT = 20_000  # parsed files kept by blob id
_TRIES = 5  # passes begun again when another process moved the checkpoint meanwhile


@dataclass
class IngestSummary:
    commits: int = 0
    applied: int = 0
    removed: int = 0
    errors: int = 0  # source.error events recorded (a problem is recorded when it appears)
    invalid_commits: int = 0
    rewritten: bool = False
    reconfigured: bool = False
    rescoped: list[str] = field(default_factory=list)  # kinds read again as the cluster now serves them
    head: str | None = None
    head_errors: int = 0  # problems that make the head invalid, recorded in this pass or before

    @property
    def objects_changed(self) -> int:
        return self.applied + self.removed


def _cache_key(path: str, blob: str) -> tuple[str, bool]:
    """Parsed files are kept by blob, and by whether the name makes them JSON or YAML."""
    return blob, path.endswith(".json")


@dataclass
class _Batch:
    events: list[AnyEvent] = field(default_factory=list)
    commits: int = 0


class GitIngest:
    """Ingests one branch of one repository into ``log``. Its ``TreeReader`` keeps the tree
    it last read in memory, so each new commit costs only the files it changed; judging a
    commit is the pure ``judge``; the events are built by ``Records``; this class runs the
    pass."""

    def __init__(
        self,
        log: EventLog,
        config: GitSourceConfig,
        *,
        scope: Scope = builtin_scope,
        redaction: Redaction | Sequence[RedactionRule] = (),
        batch_events: int = 5000,
    ) -> None:
        self.log = log
        self.config = config
        self.scope = scope
        self.redaction = as_redaction(redaction)
        self.batch_commits = config.batch_commits
        self.batch_events = batch_events
        if config.repo is None:
            raise ConfigError("no repository: pass --repo, or set git.repo in the config file")
        self.repo = GitRepository(config.repo, cache_dir=None if config.cache_dir is None else Path(config.cache_dir))
        self.branch = config.branch or self.repo.default_branch()
        self.origin = origin_of(self.repo.url, self.branch, config.paths)
        self._records = Records(self.origin, self.branch, self.repo, self.redaction)
        self.reader = TreeReader(self.repo, config, scope, self.redaction)
        self._tree_commit: str | None = None  # the commit the reader's tree holds
        self._tree_valid = False  # whether it was valid: only then are a commit's touched keys enough
        self._tree_problems: frozenset[Problem] = frozenset()
        self._desired: dict[str, Desired] | None = None
        self._generation = ""
        self._read_from: dict[str, Any] | None = None  # the checkpoint this pass read the log from
        # What decides which objects a tree holds and how they are stored; fixed for this
        # instance. Kept in the checkpoint: when it differs on the next pass, the last commit
        # read is read again. As sets: the same paths or globs in another order read the same.
        c = config
        self.settings: dict[str, Any] = {
            "paths": sorted(set(c.paths)), "include": sorted(set(c.include)), "exclude": sorted(set(c.exclude)),
            "default_namespace": c.default_namespace, "max_file_bytes": c.max_file_bytes,
            "redact": [r.model_dump(mode="json") for r in self.redaction.rules],
            **({"digest_scheme": self.redaction.scheme} if self.redaction.key is not None else {}),
            **({"kustomize": c.kustomize.model_dump(include={"enabled", "allow_remote"})}
               if c.kustomize != KustomizeSettings() else {})}

    def close(self) -> None:
        self.repo.close()

    @property
    def render_hits(self) -> int:  # kustomizations taken from the render cache
        return self.reader.render_hits

    @property
    def render_misses(self) -> int:  # kustomizations rendered
        return self.reader.render_misses

    @property
    def render_unchanged(self) -> int:  # kustomizations whose inputs a commit did not change
        return self.reader.render_unchanged

    def manifests_at(self, commit: str, paths: dict[str, str]) -> dict[str, dict[str, Any]]:
        """``TreeReader.manifests_at``: the objects as ``commit`` has them, unredacted, for the
        reconciler to apply."""
        return self.reader.manifests_at(commit, paths)

    def missing_paths(self, commit: str) -> list[str]:
        """The configured paths that ``commit``'s tree does not hold (removed by a commit,
        since new settings that name such a path are refused)."""
        return [p for p in self.config.paths if p != "." and not self.repo.has_path(commit, p)]

    # ------------------------------------------------------------------ the pass

    def checkpoint(self) -> dict[str, Any] | None:
        value = self.log.checkpoint(self.origin)
        return value if isinstance(value, dict) else None

    def run(self, *, observed_at: datetime | None = None, progress: Progress | None = None) -> IngestSummary:
        """One pass: fetch (remote), then ingest every commit after the checkpoint. If the
        pass fails part-way, what it holds in memory is dropped, so the next pass starts
        again from what the log holds (its events and checkpoint were written together)."""
        for attempt in range(1, _TRIES + 1):
            try:
                with cyclic_gc_paused():  # a back-fill builds large acyclic structures: see gitops.model.bulk
                    return self._run(observed_at, progress)
            except BaseException as e:
                self._desired, self._tree_commit, self._tree_valid = None, None, False
                # another process ingested this branch meanwhile: read again from there
                if not isinstance(e, CheckpointMovedError) or attempt == _TRIES:
                    raise
        raise AssertionError("unreachable")

    def _run(self, observed_at: datetime | None, progress: Progress | None) -> IngestSummary:
        # 1. where the branch is, and where the log left it
        self.repo.fetch()
        summary = IngestSummary()
        head = self.repo.head(self.branch)
        summary.head = head
        if head is None:
            return summary
        self._read_from = self.checkpoint()  # each write of this pass: on condition that nobody moved it since
        cp = self._read_from or {}
        since: str | None = cp.get("commit")
        last_valid: str | None = cp.get("last_valid")
        self._generation = str(cp.get("generation", ""))
        previous = cp.get("settings")
        # 2. new settings must read something: a mistyped path must not empty the desired state
        if not cp or previous != self.settings:
            check_keeps_digests_keyed(self.origin, previous, self.settings)
            check_reads_something(self.repo, self.reader, self.config, self.branch, head, first_pass=not cp)
        reconfigure = (since is not None and isinstance(previous, dict) and previous != self.settings
                       and self.repo.exists(since))
        misnamed = self._misnamed(since) if not reconfigure else []
        if since == head and not reconfigure and not misnamed:
            summary.head_errors = int(cp.get("head_errors", 0))
            return summary
        if self._desired is None:
            self._desired = self._desired_from_log()
        batch = _Batch()
        head_errors = int(cp.get("head_errors", 0))
        # 3. settings changed: the last commit read, read again, as the operator's change; or
        # the cluster came to serve kinds read as namespaced as cluster-scoped: read again
        if reconfigure or misnamed:
            assert since is not None
            events, judgement = self._reconfigure(since, previous if isinstance(previous, dict) else {}, observed_at,
                                                  summary, misnamed=misnamed)
            batch.events.extend(events)
            head_errors = judgement.errors
            if judgement.valid:
                last_valid = since
        # 4. history rewritten: go on from the merge base, under a new generation
        if since is not None and not (self.repo.exists(since) and self.repo.is_ancestor(since, head)):
            base = self.repo.merge_base(since, head) if self.repo.exists(since) else None
            batch.events.append(self._records.rewritten(self._generation, since, head, base, observed_at))
            self._generation = hashlib.sha256(f"{self._generation}:{since}:{head}".encode()).hexdigest()[:16]
            summary.rewritten = True
            since = base
        # 5. each new commit, oldest first: move the tree, judge it, record; flush in batches
        total = self.repo.count(since, head)
        for done, (commit, changes) in enumerate(self.reader.prefetched(self.repo.history(since, head)), start=1):
            events, judgement = self._ingest_commit(commit, changes, observed_at, summary)
            batch.events.extend(events)
            batch.commits += 1
            head_errors = judgement.errors
            if judgement.valid:
                last_valid = commit.sha
            if batch.commits >= self.batch_commits or len(batch.events) >= self.batch_events:
                self._flush(batch, commit.sha, last_valid, head_errors)
                batch = _Batch()
            if progress is not None:
                progress(done, total)
        if batch.commits or batch.events:
            self._flush(batch, head, last_valid, head_errors)
        summary.head_errors = head_errors
        return summary

    def _misnamed(self, since: str | None) -> list[str]:
        """The kinds the log's desired keys name as namespaced that the cluster now serves as
        cluster-scoped (``TreeReader.misnamed``): commit ``since`` is then read again."""
        if since is None:
            return []
        if self._desired is None:
            self._desired = self._desired_from_log()
        misnamed = self.reader.misnamed(self._desired)
        return misnamed if misnamed and self.repo.exists(since) else []

    def _flush(self, batch: _Batch, commit: str, last_valid: str | None, head_errors: int) -> None:
        value = {"commit": commit, "last_valid": last_valid, "generation": self._generation,
                 "branch": self.branch, "repository": self.repo.url, "settings": self.settings,
                 "head_errors": head_errors}
        self.log.append(batch.events, checkpoint=Checkpoint(self.origin, value),
                        expect=Checkpoint(self.origin, self._read_from))
        self._read_from = value

    # ------------------------------------------------------------------ one commit

    def _ingest_commit(self, commit: CommitInfo, changes: list[Change], observed_at: datetime | None,
                       summary: IngestSummary) -> tuple[list[AnyEvent], Judgement]:
        # the tree index moves to this commit: by the changed files when it holds the parent
        parent = commit.parents[0] if commit.parents else None
        keys: set[str] | None = None
        if parent is None:
            self.reader.load(commit.sha)
            previous: frozenset[Problem] = frozenset()
        else:
            if self._tree_commit != parent:  # a resume, or history rewritten: rebuild from the parent
                self.reader.load(parent)
                self._tree_problems, self._tree_valid = frozenset(self.reader.tree.problems()), False
            previous = self._tree_problems
            touched = self.reader.apply(changes)
            keys = touched if self._tree_valid else None
        self._tree_commit = commit.sha
        assert self._desired is not None
        judgement = judge(self.reader.tree, self._desired, previous=previous, keys=keys)
        effective = observed_at or commit.committer.time
        renderer = self.reader.renderer.describe() if self.reader.layout.roots else None
        events: list[AnyEvent] = [self._records.commit(self._generation, commit, judgement, effective, observed_at,
                                                       renderer=renderer)]
        summary.commits += 1
        events.extend(self._record(Cause(commit.sha, commit.author.email, effective), judgement, summary))
        if not judgement.valid:
            summary.invalid_commits += 1
        return events, judgement

    def _reconfigure(self, sha: str, previous: dict[str, Any], observed_at: datetime | None,
                     summary: IngestSummary, *, misnamed: Sequence[str] = ()) -> tuple[list[AnyEvent], Judgement]:
        """The settings changed since the last pass: read commit ``sha`` (the last one read)
        again under the new ones, as if it had just been committed, and attribute what that
        changes to the operator, not to the commit's author. Every problem it finds is
        recorded: under the new settings, none was recorded before.

        With ``misnamed`` (kinds read as namespaced that the cluster now serves as
        cluster-scoped), the settings are the same and the scopes are what changed: the
        event's ``previous`` and ``settings`` say so under ``scopes``, the parsed files are
        dropped, and no one is named (no evidence says who installed the kinds' CRDs)."""
        salt = json.dumps(self.settings, sort_keys=True) + (f":scopes:{','.join(misnamed)}" if misnamed else "")
        self._generation = hashlib.sha256(f"{self._generation}:settings:{sha}:{salt}".encode()).hexdigest()[:16]
        settings = self.settings
        if misnamed:
            previous = {**self.settings, "scopes": dict.fromkeys(misnamed, "namespaced")}
            settings = {**self.settings, "scopes": dict.fromkeys(misnamed, "cluster")}
            self.reader.forget_parsed()
        self.reader.load(sha)
        self._tree_commit = sha
        assert self._desired is not None
        judgement = judge(self.reader.tree, self._desired, previous=self._tree_problems if misnamed else frozenset())
        cause = Cause(sha, None if misnamed else os_user(), observed_at or utc_now())
        events: list[AnyEvent] = [GitReconfigured(
            id=event_id("git.reconfigured", self.origin, self._generation, sha), source=EventSource.GIT,
            actor=cause.actor, effective_at=cause.effective, revision=sha,
            payload=GitReconfiguredPayload(branch=self.branch, repository=self.repo.url, origin=self.origin,
                                           commit=sha, previous=previous, settings=settings,
                                           valid=judgement.valid),
        )]
        summary.reconfigured = not misnamed
        summary.rescoped = list(misnamed)
        events.extend(self._record(cause, judgement, summary))
        return events, judgement

    def _record(self, cause: Cause, judgement: Judgement, summary: IngestSummary) -> list[AnyEvent]:
        """The events of a judgement (errors that appeared, objects applied and removed), and
        the desired state brought up to date with it."""
        assert self._desired is not None
        self._tree_problems, self._tree_valid = judgement.problems, judgement.valid
        events: list[AnyEvent] = [self._records.error(self._generation, cause, p) for p in judgement.new_problems]
        summary.errors += sum(1 for p in judgement.new_problems if p.blocking)
        changes: list[tuple[str, AnyEvent]] = []
        for path, obj in judgement.applied:
            changes.append((obj.key, self._records.applied(self._generation, cause, path, obj)))
            self._desired[obj.key] = Desired(obj.digest, path)
        for key, old in judgement.removed:
            changes.append((key, self._records.removed(self._generation, cause, key, old)))
            del self._desired[key]
        summary.applied += len(judgement.applied)
        summary.removed += len(judgement.removed)
        events.extend(ev for _, ev in sorted(changes, key=lambda c: c[0]))  # one stable order: by key
        return events

    def _desired_from_log(self) -> dict[str, Desired]:
        """What the log holds as desired from this source now: the state to diff against,
        read from its current-state table (O(objects), not a fold of the log)."""
        desired: dict[str, Desired] = {}
        for r in self.log.current("desired", origin=self.origin):
            ev = r.event
            if isinstance(ev, DesiredApplied) and ev.resource:
                desired[ev.resource] = Desired(content_digest(ev.payload.manifest), ev.payload.path)
        return desired
