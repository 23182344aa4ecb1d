"""The state at any moment, from the log alone: ``desired_at``, ``actual_at`` and what a
user may give as the moment (``resolve_at``).

"As of T" means valid time by default: what was desired, and what was running, at T (each
event's ``effective_at``). With ``as_recorded`` it means what the log knew at T (its
``recorded_at``). A commit sha means the desired state at that commit, and the actual state
at the moment the commit took effect.

At or after the log's last event, a state is read from the current-state table
(O(objects)); before it, from the nearest snapshot and the events after it
(``gitops.store.current``): O(objects + events since the snapshot), not O(all events).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from gitops.events.models import GitCommit, Recorded
from gitops.model.errors import InvalidTimeError, UsageError
from gitops.model.revisions import sha_prefix
from gitops.model.times import format_time, is_duration, parse_time, utc_now
from gitops.projections.fold import ActualEntry, DesiredEntry, fold_actual, fold_desired, stream_actual, stream_desired
from gitops.store import EventLog

__all__ = ["Moment", "actual_at", "actual_entries", "desired_at", "desired_entries", "resolve_at"]

Side = Literal["desired", "actual"]

@dataclass(frozen=True)
class Moment:
    """A point in the log's history: a time on one of its two axes, or a commit."""

    at: datetime
    as_recorded: bool = False
    commit: str | None = None  # a git.commit's sha: the desired state is that commit's
    commit_seq: int | None = None  # the last event of that commit (its desired.* included)

    @property
    def axis(self) -> Literal["effective", "recorded"]:
        return "recorded" if self.as_recorded else "effective"

    def as_json(self) -> dict[str, Any]:
        """The moment for programs: an RFC 3339 time, its axis, and the commit when it is one."""
        return {"at": format_time(self.at), "axis": "recorded" if self.as_recorded else "valid",
                "commit": self.commit}

    def describe(self) -> str:
        axis = "recorded" if self.as_recorded else "valid"
        return f"commit {self.commit[:12]} ({format_time(self.at)})" if self.commit else f"{format_time(self.at)} " \
            f"({axis} time)"


def resolve_at(log: EventLog, text: str, *, as_recorded: bool = False, now: datetime | None = None,
               origin: str | None = None) -> Moment:
    """What the user typed as ``--at``: RFC 3339, a date, a relative time, or a commit sha
    (full, or a unique prefix of at least 4 hex digits). Refused (``UsageError``): an unknown
    or ambiguous sha, a time before the log begins or in the future. A commit is that Git
    source's when ``origin`` is given: two readings of one branch each record it, at their
    own place in the log, and the state at the commit is where its own reading recorded it."""
    now = now or utc_now()
    raw = text.strip()
    # all digits (a year, say) is no sha, and a duration (100d) is a time: a longer prefix names that commit
    sha = None if raw.isdigit() or is_duration(raw) else sha_prefix(raw)
    if sha is not None:
        return _commit_moment(log, sha, origin)
    try:
        at = parse_time(raw, now=now)
    except InvalidTimeError as e:
        head = _branch_head(log, raw, origin)
        if head is None:
            raise InvalidTimeError(f"{e}; or a commit: a sha (or a unique prefix), HEAD, or a branch the log "
                                   "has read") from None
        return _commit_moment(log, head, origin)
    if at > now:
        raise UsageError(f"{format_time(at)} is in the future: the log knows nothing of it yet")
    earliest = log.first_time("recorded" if as_recorded else "effective")
    if earliest is None:
        raise UsageError("the log is empty: there is no past to replay")
    if at < earliest:
        raise UsageError(f"{format_time(at)} is before the log begins ({format_time(earliest)})")
    return Moment(at, as_recorded)


def _branch_head(log: EventLog, name: str, origin: str | None = None) -> str | None:
    """The newest commit the log read of branch ``name`` (``HEAD``: of any branch; of source
    ``origin`` when given), if any."""
    for r in log.read(types=["git.commit"], descending=True):
        if isinstance(r.event, GitCommit) and name in ("HEAD", r.event.payload.branch) \
                and origin in (None, r.event.payload.origin):
            return r.event.payload.sha
    return None


def _commit_moment(log: EventLog, prefix: str, origin: str | None = None) -> Moment:
    found = [r for r in log.read(types=["git.commit"], commit_prefix=prefix)
             if origin is None or (isinstance(r.event, GitCommit) and r.event.payload.origin == origin)]
    shas = sorted({str(r.event.revision) for r in found})
    if not shas:
        raise UsageError(f"no commit {prefix!r} in the log" + (f" (of {origin})" if origin else ""))
    if len(shas) > 1:
        raise UsageError(f"commit {prefix!r} is ambiguous: it may be {', '.join(s[:12] for s in shas)}")
    first = found[0]  # a commit read again after a rewrite keeps the state it had the first time
    assert isinstance(first.event, GitCommit)
    last = first.seq
    for r in log.read(since_seq=first.seq):  # the commit's own events follow it, in one transaction
        if r.event.revision != shas[0]:
            break
        last = r.seq
    return Moment(first.event.effective_at, False, shas[0], last)


def _now(log: EventLog, moment: Moment) -> bool:
    """Whether ``moment`` is at or after everything the log holds: then the state is the
    current-state table's, read in O(objects)."""
    if moment.commit_seq is not None:
        return False
    last = log.last_time(moment.axis)
    return last is None or moment.at >= last


def _rows(log: EventLog, side: Side, moment: Moment, origin: str | None) -> Iterator[Recorded]:
    """The events that set each object present on ``side`` at ``moment``, by resource."""
    if _now(log, moment):
        return log.current(side, origin=origin)
    if side == "desired" and moment.commit_seq is not None:
        return log.state_at(side, until_seq=moment.commit_seq, origin=origin)
    return log.state_at(side, at=moment.at, axis=moment.axis, origin=origin)


def desired_at(log: EventLog, moment: Moment, *, origin: str | None = None) -> dict[str, DesiredEntry]:
    """The desired state at ``moment``."""
    return fold_desired(_rows(log, "desired", moment, origin))


def actual_at(log: EventLog, moment: Moment, *, origin: str | None = None) -> dict[str, ActualEntry]:
    """The actual state at ``moment`` (for a commit: when it took effect)."""
    return fold_actual(_rows(log, "actual", moment, origin))


def desired_entries(log: EventLog, moment: Moment, *, origin: str | None = None) -> Iterator[tuple[str, DesiredEntry]]:
    """``desired_at`` one object at a time, in key order, in bounded memory (a replay of
    10,000 objects printed as it is read). Consume it while ``log`` is open."""
    return stream_desired(_rows(log, "desired", moment, origin))


def actual_entries(log: EventLog, moment: Moment, *, origin: str | None = None) -> Iterator[tuple[str, ActualEntry]]:
    """``actual_at`` one object at a time, likewise."""
    return stream_actual(_rows(log, "actual", moment, origin))
