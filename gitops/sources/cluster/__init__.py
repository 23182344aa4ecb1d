"""The cluster source: list + watch into the log, attributed to who made each change."""

from gitops.sources.cluster.config import ClusterSourceConfig
from gitops.sources.cluster.source import ClusterSource, PassSummary, discovery_scope

__all__ = ["ClusterSource", "ClusterSourceConfig", "PassSummary", "discovery_scope"]
