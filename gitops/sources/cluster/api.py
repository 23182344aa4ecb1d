"""What the cluster adapter (``gitops.sources.cluster.client``) and its callers speak in:
the kinds a server serves, what an apply left, a watch's events, and the errors API
failures are mapped onto. No pykube here: the ports, the sources and the reconciler use
these without importing the adapter."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gitops.model.errors import SourceError

__all__ = ["RECONCILER_AGENT", "AccessDenied", "ApiRefused", "Applied", "Discovery", "KindInfo", "ResourceVersionGone",
           "WatchEvent", "without_go_values"]

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


_GO_VALUE = re.compile(r"Invalid value: ([A-Za-z_][\w]*\.[A-Za-z_][\w]*)\{")


def without_go_values(message: str) -> str:
    """``message`` with each Go value the API server printed after "Invalid value:" cut to
    its type: ``core.PodTemplateSpec{…}``. A refused Job template is about 3 KB of Go
    struct that says nothing the field path does not, in every line, log row and
    notification about it, with every value of the object, Secret-like ones too (an
    environment variable's value) that redaction never saw."""
    out: list[str] = []
    at = 0
    while (m := _GO_VALUE.search(message, at)) is not None:
        depth, i, quoted = 0, m.end() - 1, False
        while i < len(message):
            ch = message[i]
            if quoted:
                if ch == "\\":
                    i += 1
                elif ch == '"':
                    quoted = False
            elif ch == '"':
                quoted = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        if depth != 0:  # not a whole value: left as it is
            break
        out.append(message[at:m.end()] + "…}")
        at = i + 1
    return "".join(out) + message[at:]


class ApiRefused(SourceError):
    """The API answered a write with an error status (422 invalid, 403, 404, 409, 5xx...):
    its code, its reason (``Invalid``, ``Conflict``...) and its own message (Go values cut,
    ``without_go_values``)."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        message = without_go_values(message)
        super().__init__(f"HTTP {code} {reason}: {message}")
        self.code, self.reason, self.message = code, reason, message

    @property
    def transient(self) -> bool:
        """Worth trying again as it is (the server was busy or failed), as opposed to a
        request that will fail the same way until the object or the cluster changes."""
        return self.code == 429 or self.code >= 500
