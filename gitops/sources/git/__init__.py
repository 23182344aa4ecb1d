"""The Git source: a branch's history, and every new commit, as desired-state events."""

from typing import TYPE_CHECKING

from gitops.model.lazy import lazy_exports

if TYPE_CHECKING:
    from gitops.sources.git.config import GitSourceConfig
    from gitops.sources.git.ingest import GitIngest, IngestSummary

__all__ = ["GitIngest", "GitSourceConfig", "IngestSummary"]

__getattr__ = lazy_exports(__name__, {
    "GitSourceConfig": ".config",
    "GitIngest": ".ingest",
    "IngestSummary": ".ingest",
})
