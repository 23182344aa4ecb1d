"""The difference between Git and the cluster at any moment: the two projections, paired
and diffed. From the log alone (no Git, no cluster)."""

from __future__ import annotations

from gitops.diff import DiffSettings, ObjectDiff, diff_states
from gitops.projections import Moment, actual_at, desired_at
from gitops.store import EventLog

__all__ = ["diff_at"]


def diff_at(log: EventLog, moment: Moment, *, resource: str | None = None, instance: str | None = None,
            field_manager: str = "gitops", settings: DiffSettings | None = None) -> list[ObjectDiff]:
    """Each desired object against the live one at ``moment`` (and the orphans of
    ``instance``, else of ``settings.instance``), sorted by key; only ``resource`` when
    given; with the config's ignore rules and managers."""
    settings = settings or DiffSettings()
    desired = {k: e.manifest for k, e in desired_at(log, moment).items() if resource in (None, k)}
    actual = {k: e.manifest for k, e in actual_at(log, moment).items() if resource in (None, k)}
    return diff_states(desired, actual, instance=instance or settings.instance, field_manager=field_manager,
                       ignore_managers=settings.ignore_managers, ignore=settings.ignore)
