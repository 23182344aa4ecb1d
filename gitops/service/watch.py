"""The long-running process: the Git follower and the cluster source, wired together.

``WatchService`` owns the threads and their lifecycle; the CLI only builds it from options,
runs it and renders what it reports. ``gitops run`` (the reconciler) adds to this object.

Lifecycle: ``build()`` checks every setting and builds the sources (nothing is started and
nothing is written); ``start()`` starts the cluster source (audit backlog, watchers, writer)
and then the Git follower; ``wait()`` blocks until ``request_stop()`` (a signal) or until a
source cannot go on; ``stop()`` stops them in order (Git first, since a Git pass may ask
the cluster source to watch more kinds, then the cluster source, which writes what it has
queued) and closes them. ``error`` says why the service stopped by itself, if it did.

Wiring: the Git source takes each kind's scope from the cluster source's own discovery (no
second one); after a Git pass that applied objects, the cluster source watches the kinds
that entered the desired state.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from gitops.events.models import AnyEvent
from gitops.events.redaction import Redaction, RedactionRule
from gitops.model.errors import StoreError, UsageError
from gitops.model.scope import builtin_scope
from gitops.model.times import utc_now
from gitops.query.access import record_access
from gitops.sources.cluster import ClusterSource, ClusterSourceConfig
from gitops.sources.git import GitIngest, GitSourceConfig, IngestSummary
from gitops.sources.git.watch import GitFollower
from gitops.store import open_log

__all__ = ["Reporter", "WatchService"]


class Reporter(Protocol):
    """What the service tells the person running it; the CLI renders it."""

    def git_pass(self, source: GitIngest, summary: IngestSummary, *, first: bool, at: datetime) -> None:
        """A pass of the Git follower (every pass, whether it appended or not)."""

    def git_error(self, origin: str, error: Exception, *, at: datetime) -> None:
        """A pass failed and will be tried again (a remote that cannot be fetched)."""

    def watching(self, what: str, *, at: datetime) -> None:
        """The service started following ``what`` (a source, or a kind)."""


class WatchService:
    """Follows Git, the cluster and its audit log into the log at ``db_path``."""

    def __init__(self, *, git: GitIngest | None, cluster: ClusterSource | None, reporter: Reporter) -> None:
        self.git = git
        self.cluster = cluster
        self.reporter = reporter
        self._wake = threading.Event()
        self._follower: GitFollower | None = None
        self._git_thread: threading.Thread | None = None
        self._refused: UsageError | None = None
        self._first_pass = True
        self._desired_mark: int | None = None  # the last desired event the last Git pass saw in the log
        self.desired_changed = False  # whether the last Git pass found the desired state moved
        self._owns = False  # built here (build()): closed here too
        self.db_path: str | Path | None = None  # where start and stop are recorded (operator events), if set
        self.command = "watch"

    @classmethod
    def build(cls, db_path: str | Path, *, git: GitSourceConfig | None, cluster: ClusterSourceConfig | None,
              redaction: Redaction | Sequence[RedactionRule], reporter: Reporter) -> WatchService:
        """Check the settings and build the sources; raises a ``UsageError`` (or a source
        error) before anything is started or written. The cluster source is built (and its
        settings checked) first: a bad kubeconfig leaves no database behind."""
        cluster_source = None if cluster is None else ClusterSource(db_path, cluster, redaction=redaction)
        git_source = None
        if git is not None:
            # the cluster source's own discovery (no second one), kept current as it refreshes
            scope = cluster_source.scope() if cluster_source is not None else builtin_scope
            git_source = GitIngest(open_log(db_path), git, redaction=redaction, scope=scope)
        service = cls(git=git_source, cluster=cluster_source, reporter=reporter)
        service._owns = True
        service.db_path = db_path
        return service

    @property
    def error(self) -> Exception | None:
        """Why the service stopped by itself: settings a source refused, or a source that
        could not go on (the cluster source's write failed, every kind was refused, a bug)."""
        if self._refused is not None:
            return self._refused
        return self.cluster.error if self.cluster is not None else None

    # ------------------------------------------------------------------ lifecycle

    def _record(self, outcome: str, detail: str = "") -> None:
        """Record that the service started or stopped (best effort: a log that cannot be
        written is what stopped it, and that error is reported, not this one)."""
        if self.db_path is None:
            return
        try:
            with open_log(self.db_path) as log:
                record_access(log, self.command, {"pid": os.getpid()}, outcome=outcome, detail=detail)
        except StoreError:
            if outcome == "started":
                raise

    def start(self) -> None:
        self._record("started")
        if self.git is not None:  # read before the cluster picks its kinds: what moves after is noticed
            self._desired_mark = self.git.log.last_state_seq("desired")
        if self.cluster is not None:
            self.cluster.start(on_error=lambda e: self._wake.set(), on_appended=self._on_cluster_events)
            audit = f" and its audit log {self.cluster.config.audit_log}" if self.cluster.config.audit_log else ""
            if self.cluster.webhook is not None:
                host, port = self.cluster.webhook.address
                audit += f" and its audit webhook on https://{host}:{port}"
            self.reporter.watching(f"{self.cluster.origin}{audit}", at=utc_now())
        if self.git is not None:
            self._follower = GitFollower(self.git, on_pass=self._on_pass, on_error=self._on_git_error)
            self._follower.start()
            self._git_thread = threading.Thread(target=self._follower.run, name="git", daemon=True)
            self._git_thread.start()
            self.reporter.watching(self.git.origin, at=utc_now())

    def request_stop(self) -> None:
        """Ask ``wait()`` to return (safe from a signal handler)."""
        self._wake.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested or a source cannot go on; False on timeout."""
        return self._wake.wait(timeout)

    def stop(self) -> None:
        """Stop Git first (a pass may still ask the cluster source to watch more), then the
        cluster source (it writes what it has queued), and close everything."""
        if self._follower is not None:
            self._follower.stop()
        if self._git_thread is not None:
            self._git_thread.join(30)
        if self.cluster is not None:
            self.cluster.stop()
        error = self.error
        self._record("stopped", "" if error is None else f"stopped by itself: {error}")
        self.close()

    def close(self) -> None:
        """Close the sources this service built; sources handed in are their owner's to close."""
        if self._owns and self.git is not None:
            self.git.close()
            self.git.log.close()

    # ------------------------------------------------------------------ wiring

    def _on_pass(self, summary: IngestSummary) -> None:
        assert self.git is not None
        self.reporter.git_pass(self.git, summary, first=self._first_pass, at=utc_now())
        self._first_pass = False
        # what Git desires moved: by this pass, or by another process writing the same log (a
        # fleet on PostgreSQL, where another cluster's gitops may ingest a commit first)
        mark = self.git.log.last_state_seq("desired")
        self.desired_changed = bool(summary.applied or summary.removed) or mark != self._desired_mark
        self._desired_mark = mark
        if self.desired_changed and self.cluster is not None:
            for name in self.cluster.refresh():  # new kinds in the desired state are watched too
                self.reporter.watching(name, at=utc_now())

    def _on_cluster_events(self, events: list[AnyEvent]) -> None:
        """The cluster source wrote ``events`` (its writer's thread); ``gitops run`` reacts."""

    def _on_git_error(self, e: Exception) -> None:
        if isinstance(e, UsageError):  # settings that cannot work: trying again would not help
            self._refused = e
            self._wake.set()
            return
        assert self.git is not None
        self.reporter.git_error(self.git.origin, e, at=utc_now())
