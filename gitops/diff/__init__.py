"""Diff: normalise both sides, pair by key, compare; the result is data, not text."""

from gitops.diff.compare import OWNERSHIP_LABEL, DiffItem, ObjectDiff, Op, Status, diff_object, diff_states, take_over
from gitops.diff.drift import DriftEpisode, DriftTracker, drift_episodes
from gitops.diff.ignore import DiffSettings, IgnoreRule, without_ignored
from gitops.diff.normalize import normalize, same_scalar

__all__ = ["OWNERSHIP_LABEL", "DiffItem", "DiffSettings", "DriftEpisode", "DriftTracker", "IgnoreRule", "ObjectDiff",
           "Op", "Status", "diff_object", "diff_states", "drift_episodes", "normalize", "same_scalar", "take_over",
           "without_ignored"]
