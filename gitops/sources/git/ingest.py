"""Git history into the event log: every commit on a branch becomes desired-state events.

Guarantees:
- First-parent history only, oldest first, from the last checkpoint to the head.
- Per commit: a ``git.commit`` event, then ``desired.applied`` for each object added or
  changed and ``desired.removed`` for each object gone. Unchanged objects (a file renamed,
  an object moved to another file) produce no event.
- A commit whose tree holds bad content (YAML errors, objects without identity, two
  objects with one key, non-UTF-8 or oversized files, symlinks out of the repository)
  records ``source.error`` events and is invalid: nothing of it is desired, the last valid
  commit stays in force, and the next valid commit is diffed against that one.
- Events and the checkpoint that follows them are written in one transaction; a crash
  loses and duplicates nothing, and a re-run appends nothing.
- A branch that no longer descends from the checkpoint (force-push) is recorded as
  ``git.rewritten`` and ingest goes on from the merge base, diffing against what the log
  last held as desired. Nothing already in the log changes.

- When what the source reads changes between passes (paths, globs, default namespace,
  redaction rules: kept in the checkpoint), the last commit read is read again under the
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

import getpass
import hashlib
import itertools
import json
import posixpath
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gitops.events.models import (
    AnyEvent,
    DesiredApplied,
    DesiredRemoved,
    DesiredRemovedPayload,
    EventSource,
    GitCommit,
    GitCommitPayload,
    GitPerson,
    GitReconfigured,
    GitReconfiguredPayload,
    GitRewritten,
    GitRewrittenPayload,
    SourceErrorEvent,
    SourceErrorPayload,
    content_digest,
    event_id,
)
from gitops.events.redaction import RedactionRule, redact
from gitops.model.bulk import cyclic_gc_paused
from gitops.model.keys import format_key
from gitops.model.scope import Scope, builtin_scope
from gitops.model.times import utc_now
from gitops.sources.git.config import GitSourceConfig
from gitops.sources.git.repository import Change, CommitInfo, GitRepository, TreeEntry
from gitops.sources.manifests import ManifestProblem, parse_manifests
from gitops.store import Checkpoint, EventLog

__all__ = ["GitIngest", "IngestSummary"]

Progress = Callable[[int, int], None]
_PARSE_CACHE_LIMIT = 20_000  # parsed files kept by blob id


@dataclass(frozen=True)
class _Object:
    key: str
    digest: str
    manifest: dict[str, Any]
    index: int
    line: int


@dataclass(frozen=True)
class _File:
    objects: tuple[_Object, ...]
    problems: tuple[ManifestProblem, ...]


@dataclass(frozen=True)
class _Desired:
    digest: str
    path: str | None


@dataclass(frozen=True)
class _Cause:
    """What the events of one step are attributed to: a commit and its author, or a change
    of settings and the operator who made it."""

    sha: str
    actor: str | None
    effective: datetime


def _operator() -> str:
    """Who runs this process: the actor of a change of settings."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for the uid (a container without an /etc/passwd entry)
        return "operator"


@dataclass
class IngestSummary:
    commits: int = 0
    applied: int = 0
    removed: int = 0
    errors: int = 0
    invalid_commits: int = 0
    rewritten: bool = False
    reconfigured: bool = False
    head: str | None = None

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
    """Ingests one branch of one repository into ``log``. Keeps the tree it last read in
    memory, so each new commit costs only the files it changed."""

    def __init__(
        self,
        log: EventLog,
        config: GitSourceConfig,
        *,
        scope: Scope = builtin_scope,
        redaction: Sequence[RedactionRule] = (),
        batch_events: int = 5000,
    ) -> None:
        self.log = log
        self.config = config
        self.scope = scope
        self.redaction = tuple(redaction)
        self.batch_commits = config.batch_commits
        self.batch_events = batch_events
        self.repo = GitRepository(config.repo, cache_dir=None if config.cache_dir is None else Path(config.cache_dir))
        self.branch = config.branch or self.repo.default_branch()
        self.origin = f"git:{self.repo.url}#{self.branch}"
        self._parsed: dict[tuple[str, bool], _File] = {}
        self._scope_of: dict[str, bool] = {}  # in_scope by path: globs cost more than a lookup
        self._files: dict[str, _File] = {}
        self._locations: dict[str, list[tuple[str, _Object]]] = {}
        self._bad_files: set[str] = set()  # paths whose content has problems
        self._duplicates: set[str] = set()  # keys defined in more than one place
        self._tree_commit: str | None = None
        self._tree_valid = False
        self._desired: dict[str, _Desired] | None = None
        self._generation = ""
        # What decides which objects a tree holds and how they are stored; fixed for this
        # instance. Kept in the checkpoint: when it differs on the next pass, the last commit
        # read is read again. As sets: the same paths or globs in another order read the same.
        c = config
        self.settings: dict[str, Any] = {
            "paths": sorted(set(c.paths)), "include": sorted(set(c.include)), "exclude": sorted(set(c.exclude)),
            "default_namespace": c.default_namespace, "max_file_bytes": c.max_file_bytes,
            "redact": [r.model_dump(mode="json") for r in self.redaction]}

    def close(self) -> None:
        self.repo.close()

    def missing_paths(self, commit: str) -> list[str]:
        """The configured paths that ``commit``'s tree does not hold: most likely a typo,
        though history may still grow into them, so ingest reads on."""
        return [p for p in self.config.paths if p != "." and not self.repo.has_path(commit, p)]

    # ------------------------------------------------------------------ the pass

    def checkpoint(self) -> dict[str, Any] | None:
        value = self.log.checkpoint(self.origin)
        return value if isinstance(value, dict) else None

    def run(self, *, observed_at: datetime | None = None, progress: Progress | None = None) -> IngestSummary:
        """One pass: fetch (remote), then ingest every commit after the checkpoint. If the
        pass fails part-way, what it holds in memory is dropped, so the next pass starts
        again from what the log holds (its events and checkpoint were written together)."""
        try:
            with cyclic_gc_paused():  # a back-fill builds large acyclic structures: see gitops.model.bulk
                return self._run(observed_at, progress)
        except BaseException:
            self._desired, self._tree_commit, self._tree_valid = None, None, False
            raise

    def _run(self, observed_at: datetime | None, progress: Progress | None) -> IngestSummary:
        self.repo.fetch()
        summary = IngestSummary()
        head = self.repo.head(self.branch)
        summary.head = head
        if head is None:
            return summary
        cp = self.checkpoint() or {}
        since: str | None = cp.get("commit")
        last_valid: str | None = cp.get("last_valid")
        self._generation = str(cp.get("generation", ""))
        previous = cp.get("settings")
        reconfigure = (since is not None and isinstance(previous, dict) and previous != self.settings
                       and self.repo.exists(since))
        if since == head and not reconfigure:
            return summary
        if self._desired is None:
            self._desired = self._desired_from_log()
        batch = _Batch()
        if reconfigure:
            assert since is not None and isinstance(previous, dict)
            events, valid = self._reconfigure(since, previous, observed_at, summary)
            batch.events.extend(events)
            if valid:
                last_valid = since
        if since is not None and not (self.repo.exists(since) and self.repo.is_ancestor(since, head)):
            base = self.repo.merge_base(since, head) if self.repo.exists(since) else None
            batch.events.append(self._rewritten(since, head, base, observed_at))
            self._generation = hashlib.sha256(f"{self._generation}:{since}:{head}".encode()).hexdigest()[:16]
            summary.rewritten = True
            since = base
        total = self.repo.count(since, head)
        for done, (commit, changes) in enumerate(self._prefetched(self.repo.history(since, head)), start=1):
            events, valid = self._ingest_commit(commit, changes, observed_at, summary)
            batch.events.extend(events)
            batch.commits += 1
            if valid:
                last_valid = commit.sha
            if batch.commits >= self.batch_commits or len(batch.events) >= self.batch_events:
                self._flush(batch, commit.sha, last_valid)
                batch = _Batch()
            if progress is not None:
                progress(done, total)
        if batch.commits or batch.events:
            self._flush(batch, head, last_valid)
        return summary

    def _flush(self, batch: _Batch, commit: str, last_valid: str | None) -> None:
        value = {"commit": commit, "last_valid": last_valid, "generation": self._generation,
                 "branch": self.branch, "repository": self.repo.url, "settings": self.settings}
        self.log.append(batch.events, checkpoint=Checkpoint(self.origin, value))

    # ------------------------------------------------------------------ one commit

    def _ingest_commit(self, commit: CommitInfo, changes: list[Change], observed_at: datetime | None,
                       summary: IngestSummary) -> tuple[list[AnyEvent], bool]:
        if self._tree_commit is None or commit.parents[:1] != (self._tree_commit,):
            self._load_tree(commit.sha)  # first commit, a resume, or history rewritten
            touched: set[str] | None = None
        else:
            touched = self._apply_changes(changes)
        self._tree_commit = commit.sha
        problems = self._problems()
        effective = observed_at or commit.committer.time
        events: list[AnyEvent] = [self._commit_event(commit, not problems, effective, observed_at)]
        summary.commits += 1
        valid = self._judge(_Cause(commit.sha, commit.author.email, effective), problems, touched, events, summary)
        if not valid:
            summary.invalid_commits += 1
        return events, valid

    def _reconfigure(self, sha: str, previous: dict[str, Any], observed_at: datetime | None,
                     summary: IngestSummary) -> tuple[list[AnyEvent], bool]:
        """The settings changed since the last pass: read commit ``sha`` (the last one read)
        again under the new ones, as if it had just been committed, and attribute what that
        changes to the operator, not to the commit's author."""
        self._generation = hashlib.sha256(
            f"{self._generation}:settings:{sha}:{json.dumps(self.settings, sort_keys=True)}".encode()).hexdigest()[:16]
        self._load_tree(sha)
        self._tree_commit = sha
        problems = self._problems()
        cause = _Cause(sha, _operator(), observed_at or utc_now())
        events: list[AnyEvent] = [GitReconfigured(
            id=event_id("git.reconfigured", self.origin, self._generation, sha), source=EventSource.GIT,
            actor=cause.actor, effective_at=cause.effective, revision=sha,
            payload=GitReconfiguredPayload(branch=self.branch, repository=self.repo.url, origin=self.origin,
                                           commit=sha, previous=previous, settings=self.settings, valid=not problems),
        )]
        summary.reconfigured = True
        return events, self._judge(cause, problems, None, events, summary)

    def _judge(self, cause: _Cause, problems: list[tuple[str | None, ManifestProblem, str | None]],
               touched: set[str] | None, events: list[AnyEvent], summary: IngestSummary) -> bool:
        """The tree now in memory, against what is desired: errors if it is invalid (nothing
        changes), else an event for each object added, changed or gone. Appends to
        ``events``; returns whether the tree is valid."""
        if problems:
            summary.errors += len(problems)
            events.extend(self._error_event(cause, path, p, key) for path, p, key in problems)
            self._tree_valid = False
            return False
        assert self._desired is not None
        keys = (set(self._locations) | set(self._desired)) if touched is None or not self._tree_valid else touched
        for key in sorted(keys):  # a stable order of events within a commit
            found = self._locations.get(key)
            old = self._desired.get(key)
            if not found:
                if old is not None:
                    events.append(self._removed(cause, key, old))
                    del self._desired[key]
                    summary.removed += 1
                continue
            path, obj = found[0]
            if old is None or old.digest != obj.digest:
                events.append(self._applied(cause, path, obj))
                self._desired[key] = _Desired(obj.digest, path)
                summary.applied += 1
        self._tree_valid = True
        return True

    # ------------------------------------------------------------------ the tree in memory

    def _prefetched(self, history: Iterator[tuple[CommitInfo, list[Change]]],
                    window: int = 64) -> Iterator[tuple[CommitInfo, list[Change]]]:
        """The history, with the blobs of each window of commits read and parsed ahead in
        one round trip to git, so that processing a commit finds its files in the cache."""
        while True:
            chunk = list(itertools.islice(history, window))
            if not chunk:
                return
            if len(self._parsed) > _PARSE_CACHE_LIMIT:
                self._parsed.clear()  # only a cache: bounded memory on long histories
            self._parse_unparsed([(c.path, c.blob) for _, changes in chunk for c in changes
                                  if c.blob is not None and not c.is_symlink and self._in_scope(c.path)])
            yield from chunk

    def _parse_unparsed(self, files: list[tuple[str, str]]) -> None:
        """Parse the (path, blob) pairs not parsed yet, their blobs read in one round trip."""
        wanted = [(path, blob) for path, blob in files if _cache_key(path, blob) not in self._parsed]
        data = self.repo.read_blobs([blob for _, blob in wanted])
        for path, blob in wanted:
            self._parse(path, blob, data[blob])

    def _in_scope(self, path: str) -> bool:
        known = self._scope_of.get(path)
        if known is None:
            if len(self._scope_of) > _PARSE_CACHE_LIMIT:
                self._scope_of.clear()
            known = self._scope_of[path] = self.config.in_scope(path)
        return known

    def _load_tree(self, sha: str) -> None:
        self._files.clear()
        self._locations.clear()
        self._bad_files.clear()
        self._duplicates.clear()
        entries = [e for e in self.repo.tree(sha) if self._in_scope(e.path)]
        self._parse_unparsed([(e.path, e.blob) for e in entries if not e.is_symlink])
        for entry in entries:
            self._set_file(entry.path, self._read(entry))

    def _apply_changes(self, changes: list[Change]) -> set[str]:
        touched: set[str] = set()
        for change in changes:
            if not self._in_scope(change.path):
                continue
            old = self._files.get(change.path)
            if old is not None:
                touched.update(o.key for o in old.objects)
            if change.blob is None:
                self._set_file(change.path, None)
            else:
                new = self._read(TreeEntry(change.path, change.blob, change.mode))
                touched.update(o.key for o in new.objects)
                self._set_file(change.path, new)
        return touched

    def _set_file(self, path: str, new: _File | None) -> None:
        """Replace what ``path`` holds, keeping the key index and the problem sets current."""
        old = self._files.pop(path, None)
        self._bad_files.discard(path)
        if old is not None:
            for obj in old.objects:
                locs = [loc for loc in self._locations[obj.key] if loc[0] != path]
                if locs:
                    self._locations[obj.key] = locs
                else:
                    del self._locations[obj.key]
                if len(locs) < 2:
                    self._duplicates.discard(obj.key)
        if new is not None:
            self._files[path] = new
            if new.problems:
                self._bad_files.add(path)
            for obj in new.objects:
                locs = self._locations.setdefault(obj.key, [])
                locs.append((path, obj))
                if len(locs) > 1:
                    self._duplicates.add(obj.key)

    def _read(self, entry: TreeEntry) -> _File:
        if entry.is_symlink:
            target = self.repo.read_blob(entry.blob).decode("utf-8", "replace")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(entry.path), target))
            if posixpath.isabs(target) or resolved == ".." or resolved.startswith("../"):
                return _File((), (ManifestProblem("symlink-escape", f"symlink points out of the repository "
                                                  f"({target})"),))
            return _File((), ())  # a link inside the repository: its target is read on its own
        cached = self._parsed.get(_cache_key(entry.path, entry.blob))
        if cached is not None:
            return cached
        return self._parse(entry.path, entry.blob, self.repo.read_blob(entry.blob))

    def _parse(self, path: str, blob: str, data: bytes) -> _File:
        result = parse_manifests(path, data, scope=self.scope, default_namespace=self.config.default_namespace,
                                 max_bytes=self.config.max_file_bytes)
        objects = []
        for doc in result.documents:
            manifest = redact(doc.manifest, self.redaction)
            objects.append(_Object(format_key(doc.key), content_digest(manifest), manifest, doc.index, doc.line))
        parsed = _File(tuple(objects), tuple(result.problems))
        self._parsed[_cache_key(path, blob)] = parsed
        return parsed

    def _problems(self) -> list[tuple[str | None, ManifestProblem, str | None]]:
        out: list[tuple[str | None, ManifestProblem, str | None]] = [
            (path, p, None) for path in sorted(self._bad_files) for p in self._files[path].problems
        ]
        for key in sorted(self._duplicates):
            locs = self._locations[key]
            if len(locs) > 1:
                where = ", ".join(f"{path} line {obj.line}" for path, obj in locs)
                path, obj = locs[1]
                out.append((path, ManifestProblem("duplicate-key", f"{key} is defined more than once: {where}",
                                                  obj.line), key))
        return out

    def _desired_from_log(self) -> dict[str, _Desired]:
        """What the log holds as desired from this source: the state to diff against."""
        desired: dict[str, _Desired] = {}
        for r in self.log.read(types=("desired.applied", "desired.removed"), source=EventSource.GIT.value):
            ev = r.event
            if isinstance(ev, DesiredApplied) and ev.payload.origin == self.origin and ev.resource:
                desired[ev.resource] = _Desired(content_digest(ev.payload.manifest), ev.payload.path)
            elif isinstance(ev, DesiredRemoved) and ev.payload.origin == self.origin and ev.resource:
                desired.pop(ev.resource, None)
        return desired

    # ------------------------------------------------------------------ events

    def _commit_event(self, c: CommitInfo, valid: bool, effective: datetime,
                      observed_at: datetime | None) -> GitCommit:
        return GitCommit(
            id=event_id("git.commit", self.origin, self._generation, c.sha), source=EventSource.GIT,
            actor=c.author.email, effective_at=effective, revision=c.sha,
            payload=GitCommitPayload(
                sha=c.sha, parents=list(c.parents),
                author=GitPerson(name=c.author.name, email=c.author.email, time=c.author.time),
                committer=GitPerson(name=c.committer.name, email=c.committer.email, time=c.committer.time),
                message=c.message, signed=c.signed, signer_key=c.signer_key, branch=self.branch,
                repository=self.repo.url, origin=self.origin, valid=valid, observed_at=observed_at,
            ),
        )

    def _applied(self, c: _Cause, path: str, obj: _Object) -> DesiredApplied:
        # One validation call for envelope and payload: the hot path of a back-fill.
        return DesiredApplied.model_validate({
            "id": event_id("desired.applied", self.origin, self._generation, c.sha, obj.key),
            "source": EventSource.GIT, "resource": obj.key, "actor": c.actor, "effective_at": c.effective,
            "revision": c.sha,
            "payload": {"commit": c.sha, "path": path, "document_index": obj.index, "line": obj.line,
                        "origin": self.origin, "manifest": obj.manifest},
        })

    def _removed(self, c: _Cause, key: str, old: _Desired) -> DesiredRemoved:
        return DesiredRemoved(
            id=event_id("desired.removed", self.origin, self._generation, c.sha, key), source=EventSource.GIT,
            resource=key, actor=c.actor, effective_at=c.effective, revision=c.sha,
            payload=DesiredRemovedPayload(commit=c.sha, path=old.path, origin=self.origin),
        )

    def _error_event(self, c: _Cause, path: str | None, p: ManifestProblem, key: str | None) -> SourceErrorEvent:
        return SourceErrorEvent(
            id=event_id("source.error", self.origin, self._generation, c.sha, path or "", p.code, str(p.line),
                        key or ""),
            source=EventSource.GIT, resource=key, actor=c.actor, effective_at=c.effective, revision=c.sha,
            payload=SourceErrorPayload(code=p.code, message=p.message, origin=self.origin, commit=c.sha,
                                       path=path, line=p.line),
        )

    def _rewritten(self, old: str, new: str, base: str | None, observed_at: datetime | None) -> GitRewritten:
        return GitRewritten(
            id=event_id("git.rewritten", self.origin, self._generation, old, new), source=EventSource.GIT,
            effective_at=observed_at or utc_now(), revision=new,
            payload=GitRewrittenPayload(branch=self.branch, repository=self.repo.url, origin=self.origin,
                                        old_head=old, new_head=new, merge_base=base),
        )

