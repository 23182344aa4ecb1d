"""What the cluster adapter (``gitops.sources.cluster.client``) and its callers speak in:
the kinds a server serves, what an apply left, a watch's events, and the errors API
failures are mapped onto. No pykube here: the ports, the sources and the reconciler use
these without importing the adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitops.model.errors import SourceError

__all__ = ["RECONCILER_AGENT", "AccessDenied", "ApiRefused", "Applied", "Discovery", "KindInfo", "ResourceVersionGone",
           "WatchEvent"]

RECONCILER_AGENT = "gitops-reconciler"
"""The User-Agent prefix of the reconciler's requests: the API server's audit records of
them say so, which is how the watcher knows a delete (which leaves no managedFields
behind) was the reconciler's prune."""


class ResourceVersionGone(SourceError):
    """The resourceVersion to watch from is too old (HTTP 410): list again."""


@dataclass(frozen=True)
class KindInfo:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: frozenset[str]
    names: frozenset[str] = frozenset()  # what kubectl takes for it: plural, singular, short names (lower case)
    status_subresource: bool = False  # its status is written through /status: an apply's ``status`` is ignored

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def name(self) -> str:
        """``Kind.group`` (or ``Kind`` for the core group), as in ResourceKeys and config."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def watchable(self) -> bool:
        return {"list", "watch"} <= self.verbs


@dataclass(frozen=True)
class Discovery:
    """What the server serves, and the group versions that did not answer."""

    kinds: dict[tuple[str, str], KindInfo]
    failed: dict[str, str]  # "group/version" -> why


@dataclass(frozen=True)
class Applied:
    """What a server-side apply left: the object, and whether the server created it (HTTP
    201) rather than changed one that was there (200): the server's answer, not a plan's."""

    object: dict[str, Any]
    created: bool


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK, and CONNECTED first
    object: dict[str, Any]


class AccessDenied(SourceError):
    """The server refused this request (401/403): not an outage, retrying will not help."""


class ApiRefused(SourceError):
    """The API answered a write with an error status (422 invalid, 403, 404, 409, 5xx...):
    its code, its reason (``Invalid``, ``Conflict``...) and its own message."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {code} {reason}: {message}")
        self.code, self.reason, self.message = code, reason, message

    @property
    def transient(self) -> bool:
        """Worth trying again as it is (the server was busy or failed), as opposed to a
        request that will fail the same way until the object or the cluster changes."""
        return self.code == 429 or self.code >= 500
