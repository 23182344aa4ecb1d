"""Running the long-running service from a command: one reporter and one run loop for
``gitops watch`` and ``gitops ingest git --watch``."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gitops.cli.runlog import LOG
from gitops.model.errors import SourceError, StoreError

if TYPE_CHECKING:  # named in signatures only: ``log --watch`` needs none of the services
    from gitops.service.watch import WatchService
    from gitops.sources.git import GitIngest, IngestSummary

__all__ = ["Reporter", "Shown", "describe", "follow", "run_until_stopped", "warn_missing_paths"]

T = TypeVar("T")


class Shown:
    """Passes rows through and keeps the highest seq among them: where ``follow`` starts,
    so that a row appended while the first ones were read is neither missed nor shown twice."""

    def __init__(self, start: int) -> None:
        self.last = start

    def passing(self, rows: Iterable[T], seq_of: Callable[[T], int]) -> Iterator[T]:
        for r in rows:
            self.last = max(self.last, seq_of(r))
            yield r


def follow(fetch: Callable[[int], Iterable[T]], after: int, show: Callable[[list[T]], object], *,
           seq_of: Callable[[T], int], poll: float = 1.0) -> None:
    """``--watch``: every ``poll`` seconds, show the rows ``fetch(after)`` finds past the
    last seq shown (``after`` at first: the log's last seq before the first rows were read,
    or a later one they held), until Ctrl-C, which ends it as a success (``kubectl get -w``)."""
    try:
        while True:
            time.sleep(poll)
            rows = list(fetch(after))
            if rows:
                show(rows)
                sys.stdout.flush()
                after = max(seq_of(r) for r in rows)
    except KeyboardInterrupt:
        return


def describe(s: IngestSummary) -> str:
    invalid = f" ({s.invalid_commits} invalid)" if s.invalid_commits else ""
    if s.head_errors:
        invalid += f"; the head is invalid ({s.head_errors} errors): the last valid commit stays desired"
    head = f"; head {s.head[:12]}" if s.head else "; the branch has no commits"
    notes = "; the settings changed since the last pass, so the last commit read was read again" \
        if s.reconfigured else ""
    if s.rescoped:
        notes += (f"; the cluster now serves {', '.join(s.rescoped)} as cluster-scoped, so the last commit read "
                  "was read again")
    if s.rewritten:
        notes += "; history was rewritten (force-push), continued from the merge base"
    return (f"{s.commits} commits{invalid}, {s.objects_changed} objects changed "
            f"({s.applied} applied, {s.removed} removed), {s.errors} errors{head}{notes}")


def warn_missing_paths(source: GitIngest, summary: IngestSummary, *, logged: bool = False) -> None:
    """Say which configured paths the head lacks: a line of a service's log (``logged``), or
    a plain warning of a command."""
    if summary.head is None:
        return
    for path in source.missing_paths(summary.head):
        text = f"{path} does not exist at the head of {source.branch} ({summary.head[:12]}); nothing is read from it"
        if logged:
            LOG.warning(text)
        else:
            click.echo(f"warning: {text}", err=True)


class Reporter:
    """Renders what the service reports: each pass that appended, on stdout with its time;
    errors and what is watched, on stderr. ``first_pass_done``: the command already
    reported a first pass (``ingest git --watch``), so the first one here is not special."""

    def __init__(self, *, first_pass_done: bool = False) -> None:
        self.first_pass_done = first_pass_done

    def git_pass(self, source: GitIngest, summary: IngestSummary, *, first: bool, at: datetime) -> None:
        if first and not self.first_pass_done:
            warn_missing_paths(source, summary, logged=True)
        if summary.commits or summary.rewritten or summary.reconfigured:
            line = LOG.error if summary.head_errors else LOG.info  # a broken push is not business as usual
            line(f"{source.origin}: {describe(summary)}", at=at, out=True, origin=source.origin, head=summary.head)

    def git_error(self, origin: str, error: Exception, *, at: datetime) -> None:
        LOG.error(f"{origin}: {error}; trying again at the next change or poll", at=at, origin=origin)

    def watching(self, what: str, *, at: datetime) -> None:
        LOG.info(f"watching {what}", at=at)


def run_until_stopped(service: WatchService, *, db: str, started: Callable[[], None] | None = None) -> None:
    """Start ``service``, wait for SIGINT/SIGTERM or for it to stop by itself, stop it in
    order, and turn why it stopped into an error (one line; a bug with its traceback)."""

    def on_signal(signum: int, frame: Any) -> None:
        service.request_stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        service.start()
        if started is not None:
            started()
        LOG.info("Ctrl-C or SIGTERM stops")
        service.wait()
    finally:
        service.stop()
    error = service.error
    if error is None:
        LOG.info("stopped; everything seen was written")
        return
    if isinstance(error, SourceError):
        raise SourceError(f"the cluster source stopped: {error}")
    if isinstance(error, StoreError):
        raise StoreError(f"the cluster source stopped: could not write to {db}: {error}")
    raise error  # a usage error (one line), or a bug (with its traceback)
