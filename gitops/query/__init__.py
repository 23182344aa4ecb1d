"""The read side: questions answered from the log alone."""

from typing import TYPE_CHECKING

from gitops.model.lazy import lazy_exports

if TYPE_CHECKING:
    from gitops.diff.drift import DriftEpisode, drift_episodes
    from gitops.query.status import ObjectView, diff_at, views_at

__all__ = ["DriftEpisode", "ObjectView", "diff_at", "drift_episodes", "views_at"]

__getattr__ = lazy_exports(__name__, {
    "DriftEpisode": "gitops.diff.drift",
    "drift_episodes": "gitops.diff.drift",
    "ObjectView": ".status",
    "diff_at": ".status",
    "views_at": ".status",
})
