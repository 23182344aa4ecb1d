"""The read side: questions answered from the log alone."""

from gitops.diff.drift import DriftEpisode, drift_episodes
from gitops.query.status import ObjectView, diff_at, views_at

__all__ = ["DriftEpisode", "ObjectView", "diff_at", "drift_episodes", "views_at"]
