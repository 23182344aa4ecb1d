"""The Git source: a branch's history, and every new commit, as desired-state events."""

from gitops.sources.git.config import GitSourceConfig
from gitops.sources.git.ingest import GitIngest, IngestSummary

__all__ = ["GitIngest", "GitSourceConfig", "IngestSummary"]
