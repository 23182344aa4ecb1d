"""Live triggering: a pass of the Git source soon after the branch moves.

A local repository is watched with watchdog: git updates a ref by writing
``<ref>.lock`` and renaming it over the ref, or by rewriting ``packed-refs``, so any
event on ``HEAD``, the branch's ref or ``packed-refs`` triggers a pass. A remote
repository is fetched on an interval. Either way a pass runs at least every
``poll_interval`` seconds, in case an event was missed.

The loop is trivial: ``GitFollower.step()`` holds all the logic and tests call it directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from gitops.model.errors import GitOpsError
from gitops.model.times import utc_now
from gitops.sources.filewatch import FileWatch
from gitops.sources.git.ingest import GitIngest, IngestSummary

__all__ = ["GitFollower"]


class GitFollower:
    """Runs ``ingest`` whenever the branch may have moved, until ``stop()``."""

    def __init__(self, ingest: GitIngest, *, on_pass: Callable[[IngestSummary], None] | None = None,
                 on_error: Callable[[Exception], None] | None = None, debounce: float = 0.1) -> None:
        self.ingest = ingest
        self.on_pass = on_pass
        self.on_error = on_error
        self.debounce = debounce
        self.trigger = threading.Event()
        self.polls = 0  # passes made because the poll interval ran out, not because a ref moved
        self.last_seconds = 0.0  # how long the last pass took (fetch and read)
        self._stopped = threading.Event()
        self._watch: FileWatch | None = None

    def start(self) -> None:
        """Start watching the refs (local repositories); a first pass is triggered at once."""
        repo = self.ingest.repo
        if not repo.remote:
            git_dir = repo.git_dir
            branch_ref = git_dir / "refs" / "heads" / self.ingest.branch
            targets = {git_dir / "HEAD", git_dir / "packed-refs", branch_ref}
            self._watch = FileWatch(targets, self.trigger)
        self.trigger.set()

    def step(self) -> IngestSummary:
        """One pass, with valid time 'now' for whatever commits it finds."""
        started = time.monotonic()
        summary = self.ingest.run(observed_at=utc_now())
        self.last_seconds = time.monotonic() - started
        if self.on_pass is not None:
            self.on_pass(summary)
        return summary

    def run(self) -> None:
        """Block, passing on every trigger (and every poll interval), until ``stop()``.
        A failed pass (a remote that cannot be fetched, say) is reported to ``on_error`` and
        tried again at the next trigger: nothing was written by it, so nothing is lost."""
        interval = self.ingest.config.poll_interval
        while not self._stopped.is_set():
            if not self.trigger.wait(timeout=interval):
                self.polls += 1
            if self._stopped.is_set():
                break
            self._stopped.wait(self.debounce)  # let a burst of ref updates settle
            self.trigger.clear()
            try:
                self.step()
            except GitOpsError as e:
                if self.on_error is None:
                    raise
                self.on_error(e)

    def stop(self) -> None:
        self._stopped.set()
        self.trigger.set()
        if self._watch is not None:
            self._watch.stop()
