"""The health step of a pass: each desired object's health (``gitops.diff.health``) judged
from its live state, and a ``health.changed`` event appended when it differs from what
the instance last recorded, so that health has history, replay and reports like all the
rest. What was last recorded is kept in a checkpoint written with those events."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from gitops.diff.health import Health, HealthRule, assess
from gitops.events.models import EventSource, HealthChanged, HealthChangedPayload, event_id
from gitops.projections import ActualEntry, DesiredEntry
from gitops.store import Checkpoint, EventLog

__all__ = ["HealthRecorder"]


class HealthRecorder:
    def __init__(self, log: EventLog, *, instance: str, rules: Sequence[HealthRule],
                 clock: Callable[[], datetime], cluster: str = "") -> None:
        self.log, self.instance, self.rules, self.clock = log, instance, tuple(rules), clock
        self.cluster = cluster  # the origin of the cluster whose objects are judged
        self.last: dict[str, str] = {}  # each desired object's health as the last record() judged it

    @property
    def checkpoint_name(self) -> str:
        return f"reconciler:{self.instance}:health"

    def record(self, desired: Mapping[str, DesiredEntry], actual: Mapping[str, ActualEntry]) -> list[HealthChanged]:
        """Judge every desired object; append the changes (and the new checkpoint) at once."""
        cp = self.log.checkpoint(self.checkpoint_name)
        last: dict[str, Any] = dict(cp) if isinstance(cp, dict) else {}
        now = self.clock()
        changed: list[HealthChanged] = []
        state: dict[str, str] = {}
        for key in sorted(desired):
            live = actual.get(key)
            health = assess(key.split("/", 1)[0], live.manifest if live is not None else None, self.rules)
            state[key] = health.status.value
            before = last.get(key)
            if before != health.status.value:
                changed.append(self._event(key, before, health, live, now))
        if changed or state != last:
            self.log.append(changed, checkpoint=Checkpoint(self.checkpoint_name, state))
        self.last = state
        return changed

    def _event(self, key: str, before: str | None, health: Health, live: ActualEntry | None,
               now: datetime) -> HealthChanged:
        was = f" (was {before})" if before else ""
        why = f": {health.reason}" if health.reason else ""
        told = f": {health.message}" if health.message else ""
        return HealthChanged(
            id=event_id("health.changed", self.instance, key, str(before), health.status.value,
                        str(live.seq if live else None), now.isoformat()),
            source=EventSource.RECONCILER, resource=key, effective_at=now,
            payload=HealthChangedPayload(
                cluster=self.cluster, instance=self.instance, status=health.status.value, previous=before,
                reason=health.reason,
                detail=health.message, cause_seq=live.seq if live is not None else None,
                message=f"{health.status.value}{was}{why}{told}"))

