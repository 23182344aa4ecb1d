"""The read side: questions answered from the log alone."""

from gitops.diff.drift import DriftEpisode, drift_episodes
from gitops.query.status import diff_at

__all__ = ["DriftEpisode", "diff_at", "drift_episodes"]
