"""The cluster source: list + watch into the log, attributed to who made each change."""

from typing import TYPE_CHECKING

from gitops.model.lazy import lazy_exports

if TYPE_CHECKING:
    from gitops.sources.cluster.config import ClusterSourceConfig
    from gitops.sources.cluster.kinds import discovery_scope
    from gitops.sources.cluster.source import ClusterSource, PassSummary

__all__ = ["ClusterSource", "ClusterSourceConfig", "PassSummary", "discovery_scope"]

__getattr__ = lazy_exports(__name__, {
    "ClusterSourceConfig": ".config",
    "ClusterSource": ".source",
    "PassSummary": ".source",
    "discovery_scope": ".kinds",
})
