"""Diff: normalise both sides, pair by key, compare; the result is data, not text."""

from gitops.diff.compare import OWNERSHIP_LABEL, DiffItem, ObjectDiff, Op, Status, diff_object, diff_states
from gitops.diff.ignore import DiffSettings, IgnoreRule, without_ignored
from gitops.diff.normalize import normalize, same_scalar

__all__ = ["OWNERSHIP_LABEL", "DiffItem", "DiffSettings", "IgnoreRule", "ObjectDiff", "Op", "Status", "diff_object",
           "diff_states", "normalize", "same_scalar", "without_ignored"]
