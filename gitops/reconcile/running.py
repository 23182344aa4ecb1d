"""Which passes of an instance are under way, so that one a kill cut short is found.

A pass writes a checkpoint ``reconciler:<instance>:running:<process>`` in the transaction
of its ``reconcile.started`` and empties it in that of its ``reconcile.finished``. A pass
that never finished leaves it set. The next pass of the instance records it as
``reconcile.interrupted`` (and empties it, in the same transaction) when its process
cannot be running any more: a process of this host that is gone, or any process, when the
finding pass applies (it holds the instance's lease, or runs without one, so no other
process of the instance is applying now).
"""

from __future__ import annotations

import os
from typing import Any

from gitops.events.models import EventSource, ReconcileInterrupted, ReconcileInterruptedPayload, event_id
from gitops.model.identity import host
from gitops.model.times import utc_now
from gitops.store import Checkpoint, EventLog

__all__ = ["RunningPasses"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    return True


class RunningPasses:
    def __init__(self, log: EventLog, *, instance: str, identity: str, actor: str) -> None:
        self.log = log
        self.instance = instance
        self.identity = identity
        self.actor = actor

    @property
    def _prefix(self) -> str:
        return f"reconciler:{self.instance}:running:"

    def started(self, run_id: str, mode: str) -> Checkpoint:
        """The checkpoint to write with a pass's ``reconcile.started``."""
        return Checkpoint(self._prefix + self.identity, {"run_id": run_id, "mode": mode, "host": host(),
                                                         "pid": os.getpid(), "after_seq": self.log.last_seq()})

    def finished(self) -> Checkpoint:
        """The checkpoint to write with a pass's ``reconcile.finished``."""
        return Checkpoint(self._prefix + self.identity, None)

    def find_interrupted(self, *, applying: bool) -> int:
        """Record the passes that began and never ended, whose process cannot be running;
        returns how many."""
        found = 0
        for name, value in self.log.checkpoints(self._prefix).items():
            if not isinstance(value, dict) or name == self._prefix + self.identity:
                continue
            same_host = value.get("host") == host()
            if not (applying or (same_host and isinstance(value.get("pid"), int) and not _alive(value["pid"]))):
                continue
            self._record(name, value)
            found += 1
        return found

    def _record(self, name: str, value: dict[str, Any]) -> None:
        run_id = str(value.get("run_id"))
        after = int(value.get("after_seq") or 0)
        started_seq, actions = 0, 0
        for r in self.log.read(since_seq=after, types=["reconcile.started", "reconcile.action"]):
            if getattr(r.event.payload, "run_id", None) != run_id:
                continue
            if r.event.type == "reconcile.started":
                started_seq = r.seq
            else:
                actions += 1
        identity = name[len(self._prefix):]
        self.log.append([ReconcileInterrupted(
            id=event_id("reconcile.interrupted", self.instance, run_id), source=EventSource.RECONCILER,
            actor=self.actor, effective_at=utc_now(),
            payload=ReconcileInterruptedPayload(run_id=run_id, instance=self.instance, started_seq=started_seq,
                                                identity=identity, actions=actions, found_by=self.identity))],
            checkpoint=Checkpoint(name, None))
