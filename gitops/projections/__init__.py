"""Projections: the desired and the actual state, for now and for any moment in the past,
derived from the event log alone (no Git, no cluster)."""

from typing import TYPE_CHECKING

from gitops.model.lazy import lazy_exports

if TYPE_CHECKING:
    from gitops.projections.fold import ActualEntry, DesiredEntry, fold_actual, fold_desired
    from gitops.projections.replay import Moment, actual_at, actual_entries, desired_at, desired_entries, resolve_at

__all__ = ["ActualEntry", "DesiredEntry", "Moment", "actual_at", "actual_entries", "desired_at", "desired_entries",
           "fold_actual", "fold_desired", "resolve_at"]

__getattr__ = lazy_exports(__name__, {
    "ActualEntry": ".fold",
    "DesiredEntry": ".fold",
    "fold_actual": ".fold",
    "fold_desired": ".fold",
    "Moment": ".replay",
    "actual_at": ".replay",
    "actual_entries": ".replay",
    "desired_entries": ".replay",
    "desired_at": ".replay",
    "resolve_at": ".replay",
})
