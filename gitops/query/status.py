"""The difference between Git and the cluster at any moment: the two projections, paired
and diffed. From the log alone (no Git, no cluster)."""

from __future__ import annotations

from collections.abc import Sequence

from gitops.diff import ObjectDiff, diff_states
from gitops.projections import Moment, actual_at, desired_at
from gitops.store import EventLog

__all__ = ["diff_at"]


def diff_at(log: EventLog, moment: Moment, *, resource: str | None = None, instance: str | None = None,
            field_manager: str = "gitops", ignore_managers: Sequence[str] = ()) -> list[ObjectDiff]:
    """Each desired object against the live one at ``moment`` (and the orphans of
    ``instance``), sorted by key; only ``resource`` when given."""
    desired = {k: e.manifest for k, e in desired_at(log, moment).items() if resource in (None, k)}
    actual = {k: e.manifest for k, e in actual_at(log, moment).items() if resource in (None, k)}
    return diff_states(desired, actual, instance=instance, field_manager=field_manager,
                       ignore_managers=ignore_managers)
