"""The difference between Git and the cluster at any moment: the two projections, paired
and diffed. From the log alone (no Git, no cluster): the server's schema is the one the
cluster source kept in the log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitops.diff import DiffSettings, ObjectDiff, diff_states
from gitops.diff.view import diff_view
from gitops.projections import Moment, actual_at, desired_at
from gitops.store import EventLog
from gitops.store.openapi import load_schemas

__all__ = ["ObjectView", "diff_at", "views_at"]


@dataclass(frozen=True)
class ObjectView:
    """One object's diff, and both sides as whole objects to show it as text (``diff_view``)."""

    diff: ObjectDiff
    desired: dict[str, Any] | None
    live: dict[str, Any] | None


def _states(log: EventLog, moment: Moment, resource: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    desired = {k: e.manifest for k, e in desired_at(log, moment).items() if resource in (None, k)}
    actual = {k: e.manifest for k, e in actual_at(log, moment).items() if resource in (None, k)}
    return desired, actual


def diff_at(log: EventLog, moment: Moment, *, resource: str | None = None, instance: str | None = None,
            field_manager: str = "gitops", settings: DiffSettings | None = None) -> list[ObjectDiff]:
    """Each desired object against the live one at ``moment`` (and the orphans of
    ``instance``, else of ``settings.instance``), sorted by key; only ``resource`` when
    given; with the config's ignore rules and managers."""
    return [v.diff for v in views_at(log, moment, resource=resource, instance=instance,
                                     field_manager=field_manager, settings=settings, views=False)]


def views_at(log: EventLog, moment: Moment, *, resource: str | None = None, instance: str | None = None,
             field_manager: str = "gitops", settings: DiffSettings | None = None,
             views: bool = True) -> list[ObjectView]:
    """``diff_at`` with both sides of each differing object (``views``) to show as text."""
    settings = settings or DiffSettings()
    schemas = load_schemas(log)
    desired, actual = _states(log, moment, resource)
    diffs = diff_states(desired, actual, instance=instance or settings.instance, field_manager=field_manager,
                        ignore_managers=settings.ignore_managers, ignore=settings.ignore, schemas=schemas)
    out = []
    for d in diffs:
        left = right = None
        if views and d.status.value != "in-sync":
            left, right = diff_view(desired.get(d.key), actual.get(d.key), field_manager=field_manager,
                                    ignore_managers=settings.ignore_managers, ignore=settings.ignore,
                                    schemas=schemas)
        out.append(ObjectView(d, left, right))
    return out
