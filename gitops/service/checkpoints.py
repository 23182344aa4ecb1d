"""``gitops run``'s signed checkpoints: one every ``integrity.checkpoint_every`` events or
minutes (whichever comes first, and only when events came since the last), signed with the
key of ``gitops keys init`` and published where the config says (``make_checkpoint``).

The leader checkpoints (with the lease on, one process of an instance), so that two
processes never race to publish. A failure (a publish place that cannot be reached, a log
that no longer extends what was published) is reported and retried a minute later; a log
whose head disagrees with its rows is never signed (``EventLog.tree_head``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gitops.events.models import IntegrityCheckpoint
from gitops.model.note import Signer
from gitops.model.times import utc_now
from gitops.query.integrity import IntegritySettings, make_checkpoint
from gitops.store import EventLog, open_log

__all__ = ["Checkpointed", "Checkpointer"]

RETRY_SECONDS = 60.0


@dataclass(frozen=True)
class Checkpointed:
    size: int
    published: list[str]


class Checkpointer:
    """Decides when a checkpoint is due and makes it, on a connection of its own (one thread)."""

    def __init__(self, db_path: str | Path, settings: IntegritySettings, signer: Signer) -> None:
        self.db_path = db_path
        self.settings = settings
        self.signer = signer
        self._log: EventLog | None = None
        self._retry_at = 0.0

    @property
    def tick_seconds(self) -> float:
        """How often ``tick`` looks: often enough for the count, and for the time."""
        minutes = self.settings.checkpoint_every.minutes
        return min(10.0, minutes * 60) if minutes else 10.0  # two indexed reads: cheap

    def _last(self, log: EventLog) -> tuple[int, datetime | None]:
        """(the seq of the last checkpoint's own event, when it was made); (0, None) if none."""
        last = next(iter(log.read(types=["integrity.checkpoint"], descending=True, limit=1)), None)
        if last is None or not isinstance(last.event, IntegrityCheckpoint):
            return 0, None
        return last.seq, last.event.effective_at

    def due(self, log: EventLog, now: datetime) -> bool:
        every = self.settings.checkpoint_every
        seq, at = self._last(log)
        new = log.last_seq() - seq
        if new <= 0:
            return False
        if every.events and new >= every.events:
            return True
        return bool(every.minutes) and (at is None or (now - at).total_seconds() >= every.minutes * 60)

    def tick(self) -> Checkpointed | None:
        """A checkpoint if one is due (raises what ``make_checkpoint`` raises; the next try
        is then a minute later)."""
        if time.monotonic() < self._retry_at:
            return None
        if self._log is None:
            self._log = open_log(self.db_path)
        try:
            if not self.due(self._log, utc_now()):
                return None
            cp, published = make_checkpoint(self._log, self.signer, self.settings)
        except Exception:
            self._retry_at = time.monotonic() + RETRY_SECONDS
            raise
        return Checkpointed(cp.size, published)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
