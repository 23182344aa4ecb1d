"""Diff: normalise both sides, pair by key, compare; the result is data, not text."""

from typing import TYPE_CHECKING

# imported now: its module has the same name, and importing the submodule would make the
# package's attribute the module, not the function
from gitops.diff.normalize import normalize, same_scalar
from gitops.model.lazy import lazy_exports

if TYPE_CHECKING:
    from gitops.diff.compare import comparable, diff_object, diff_states, is_zero, list_keys
    from gitops.diff.drift import DriftEpisode, DriftTracker, drift_episodes
    from gitops.diff.ignore import DiffSettings, IgnoreRule, without_ignored
    from gitops.diff.items import OWNERSHIP_LABEL, DiffItem, ObjectDiff, Op, Status
    from gitops.diff.managed import CLIENT_SIDE_APPLY, extra_fields, take_over

__all__ = ["CLIENT_SIDE_APPLY", "OWNERSHIP_LABEL", "DiffItem", "DiffSettings", "DriftEpisode", "DriftTracker",
           "IgnoreRule", "ObjectDiff", "Op", "Status", "comparable", "diff_object", "diff_states", "drift_episodes",
           "extra_fields", "is_zero", "list_keys", "normalize", "same_scalar", "take_over", "without_ignored"]

__getattr__ = lazy_exports(__name__, {
    "comparable": ".compare",
    "diff_object": ".compare",
    "diff_states": ".compare",
    "is_zero": ".compare",
    "list_keys": ".compare",
    "DriftEpisode": ".drift",
    "DriftTracker": ".drift",
    "drift_episodes": ".drift",
    "DiffSettings": ".ignore",
    "IgnoreRule": ".ignore",
    "without_ignored": ".ignore",
    "OWNERSHIP_LABEL": ".items",
    "DiffItem": ".items",
    "ObjectDiff": ".items",
    "Op": ".items",
    "Status": ".items",
    "CLIENT_SIDE_APPLY": ".managed",
    "extra_fields": ".managed",
    "take_over": ".managed",
})
