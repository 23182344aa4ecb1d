"""List + watch per kind, the informer way, into the event log.

One ``KindWatcher`` thread per kind lists, then watches from the list's resourceVersion
(with bookmarks), and turns what it sees into ``Change`` values: it knows what the log
last saw of each object, so updates that change nothing that matters are dropped here.
On 410 Gone it lists again and reports what changed meanwhile, deletions included, as
synthetic changes; when the server cannot be reached it retries with capped exponential
backoff and jitter.

What the watchers see goes to one ``Writer`` (``gitops.sources.cluster.writer``), which
owns the database connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from gitops.events.redaction import NO_KEY, Redaction, redact, scheme_field
from gitops.model.errors import ClusterUnavailableError
from gitops.model.keys import ResourceKey, canonical_group, format_key
from gitops.model.times import utc_now
from gitops.sources.cluster.api import AccessDenied, KindInfo, ResourceVersionGone, WatchEvent
from gitops.sources.cluster.attribution import Managers, candidates, fingerprint, managers, writer, written_at
from gitops.sources.cluster.config import ClusterSourceConfig
from gitops.sources.cluster.port import Backoff, Clock, ClusterPort

__all__ = ["Change", "Item", "KindWatcher", "Outage", "OutageTracker", "Problem", "Progress", "Seen", "stream_name"]


@dataclass(frozen=True)
class Seen:
    """What the log last recorded of an object."""

    fingerprint: str
    managers: Managers
    uid: str | None = None
    resource_version: str | None = None


@dataclass(frozen=True)
class Change:
    key: str
    kind: str  # Kind[.group], for the checkpoint
    resource_version: str | None
    observed_at: datetime
    manifest: dict[str, Any] | None = None  # None for deletions
    change: Literal["added", "modified", "relisted", "deleted"] = "modified"
    writer: tuple[str, str] | None = None  # the field manager that made it, when managedFields tell
    written_at: datetime | None = None  # when that manager's entry says it wrote (the API server's clock)
    synthetic: bool = False
    uid: str | None = None
    candidates: tuple[str, ...] = ()  # managers that may have made it, when managedFields cannot tell
    late: bool = False  # seen after the fact (a list, a watch resumed): it happened before observed_at
    previous_rv: str | None = None  # the resourceVersion of the version of it the log held before
    digest_scheme: str | None = None  # the payload's, when its secret values are digested under a key


@dataclass(frozen=True)
class Progress:
    """A kind's new resourceVersion with nothing to record (bookmark, noise)."""

    kind: str
    resource_version: str


@dataclass(frozen=True)
class Outage:
    started: bool
    reason: str
    at: datetime


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    kind: str


Item = Change | Progress | Outage | Problem


class OutageTracker:
    """One outage for the whole cluster, however many watchers notice it."""

    def __init__(self, out: Callable[[Item], None], *, clock: Clock = utc_now) -> None:
        self._down = False
        self._lock = threading.Lock()
        self._out = out
        self._clock = clock

    @property
    def down(self) -> bool:
        """Whether the API server is unreachable now (as the last watcher to try found it)."""
        return self._down

    def failed(self, reason: str) -> None:
        with self._lock:
            if not self._down:
                self._down = True
                self._out(Outage(True, reason, self._clock()))

    def recovered(self) -> None:
        with self._lock:
            if self._down:
                self._down = False
                self._out(Outage(False, "the API server answers again", self._clock()))


def object_key(obj: dict[str, Any], kind: KindInfo) -> str:
    meta = obj.get("metadata") or {}
    namespace = str(meta.get("namespace") or "") if kind.namespaced else ""
    return format_key(ResourceKey(canonical_group(kind.group, kind.kind), kind.kind, namespace,
                                  str(meta.get("name", ""))))


def stream_name(kind: KindInfo, namespace: str | None) -> str:
    """The name of what one watcher follows: ``Kind.group``, or ``Kind.group@namespace`` for
    a namespaced kind watched in one namespace (its checkpoint is named after it)."""
    return kind.name if namespace is None else f"{kind.name}@{namespace}"


class KindWatcher:
    """Keeps the log's record of one kind current."""

    def __init__(self, client: ClusterPort, kind: KindInfo, *, config: ClusterSourceConfig,
                 known: dict[str, Seen], resource_version: str | None, out: Callable[[Item], None],
                 outages: OutageTracker, redaction: Redaction = NO_KEY, clock: Clock = utc_now,
                 namespace: str | None = None) -> None:
        self.client = client
        self.clock = clock
        self.kind = kind
        self.namespace = namespace  # a namespaced kind watched in this namespace only (cluster.namespaces)
        # what its resourceVersions are positions in: the kind, or the kind in one namespace
        self.stream = stream_name(kind, namespace)
        self.config = config
        self.known = known
        self.rv = resource_version
        self.out = out
        self.outages = outages
        self.redaction = redaction
        self.noisy = kind.name in config.noisy_kinds
        # set once the kind is listed or its watch resumed: from then on a change to it is
        # seen as it happens (an object made before is a "relisted" one)
        self.synced = threading.Event()
        self.forbidden = False  # the server refused to list or watch it (RBAC)
        self.behind: str | None = None  # the collection's resourceVersion when a resumed watch began
        self.on_forbidden: Callable[[], None] | None = None

    def _observe(self, obj: dict[str, Any], change: Literal["added", "modified", "relisted"],
                 now: datetime, *, late: bool = False) -> Change | None:
        manifest = redact(obj, self.redaction)
        key = object_key(obj, self.kind)
        fp = fingerprint(manifest, noisy=self.noisy)
        before = self.known.get(key)
        after = managers(manifest)
        meta = obj.get("metadata") or {}
        rv, uid = str(meta.get("resourceVersion", "")), meta.get("uid")
        if before is not None and before.fingerprint == fp:
            return None  # nothing that matters changed
        if before is not None and rv and before.resource_version == rv and before.uid == uid:
            # the version the log holds, seen again: what differs is how it is stored (the digest
            # key changed), not the object; the next change of it is recorded under the new key
            return None
        if before is not None and before.uid and uid and before.uid != uid:
            # deleted and made again under the same name while nothing watched: two objects
            self.out(Change(key, self.stream, rv, now, None, "deleted", None, synthetic=True, uid=before.uid,
                            late=True))
            before = None
        self.known[key] = Seen(fp, after, uid, rv)
        previous = before.managers if before else None
        return Change(key, self.stream, rv, now, manifest, change, writer(previous, after), uid=uid,
                      candidates=tuple(candidates(previous, after)), late=late or change == "relisted",
                      digest_scheme=scheme_field(obj, self.redaction).get("digest_scheme"),
                      previous_rv=before.resource_version if before is not None else None,
                      written_at=written_at(previous, after))

    def list_pass(self) -> int:
        """List the kind, report what differs from the log (deletions too); returns how many."""
        items, rv = self.client.list(self.kind, self.namespace)
        self.outages.recovered()
        now = self.clock()
        seen: set[str] = set()
        n = 0
        for obj in items:
            seen.add(object_key(obj, self.kind))
            c = self._observe(obj, "relisted", now)
            if c is not None:
                self.out(c)
                n += 1
        for key in sorted(set(self.known) - seen):
            gone = self.known.pop(key)
            # gone while nothing watched: who deleted it, and when, is not known
            self.out(Change(key, self.stream, rv, now, None, "deleted", None, synthetic=True, uid=gone.uid,
                            late=True))
            n += 1
        self.out(Progress(self.stream, rv))
        self.rv = rv
        self.synced.set()
        return n

    def handle(self, ev: WatchEvent) -> None:
        if ev.type == "CONNECTED":
            self.outages.recovered()
            self.synced.set()
            return
        rv = str((ev.object.get("metadata") or {}).get("resourceVersion", ""))
        if ev.type == "BOOKMARK":
            self.rv = rv
            self.out(Progress(self.stream, rv))
            return
        now = self.clock()
        late = self._late(rv)
        if ev.type == "DELETED":
            key = object_key(ev.object, self.kind)
            self.known.pop(key, None)
            # nothing of the object is recorded, only who deleted it where the audit log tells:
            # a delete leaves no managedFields entry, so its last writer is no evidence
            self.out(Change(key, self.stream, rv, now, None, "deleted", None,
                            uid=(ev.object.get("metadata") or {}).get("uid"), late=late))
        else:
            c = self._observe(ev.object, "added" if ev.type == "ADDED" else "modified", now, late=late)
            self.out(c if c is not None else Progress(self.stream, rv))
        self.rv = rv

    def _late(self, rv: str) -> bool:
        """Whether a watch event replays a change made before the watch (re)connected: its
        resourceVersion is at most the collection's when it did. (Resource versions are
        compared only when both are integers, as etcd's are; otherwise no event is late.)"""
        if self.behind is None:
            return False
        try:
            if int(rv) <= int(self.behind):
                return True
        except ValueError:
            pass
        self.behind = None  # caught up: the rest comes as it happens
        return False

    def run(self, stop: threading.Event) -> None:
        """List when there is no resourceVersion to resume from, then watch; relist on 410;
        back off and retry while the server is unreachable. Returns when ``stop`` is set."""
        backoff = Backoff(self.config.backoff_initial, self.config.backoff_max)
        resuming = self.rv is not None  # from a checkpoint: what happened since is replayed, late
        while not stop.is_set():
            try:
                if self.rv is None:
                    self.list_pass()
                    resuming = False
                if resuming:
                    self.behind = self.client.collection_version(self.kind, self.namespace)
                    resuming = False
                for ev in self.client.watch(self.kind, self.rv or "0", self.namespace):
                    self.handle(ev)
                    if stop.is_set():
                        return
                backoff.reset()
            except ResourceVersionGone:
                self.rv = None  # relist: whatever happened meanwhile is found by comparing
            except AccessDenied as e:
                self.out(Problem("kind-forbidden", str(e), self.stream))
                self.forbidden = True
                self.synced.set()  # nothing more will come of this kind: do not keep anyone waiting
                if self.on_forbidden is not None:
                    self.on_forbidden()
                return  # RBAC will not change by retrying; the error is on record
            except ClusterUnavailableError as e:
                if stop.is_set():
                    return
                resuming = True  # what happens during the outage is seen when it ends
                self.outages.failed(str(e))
                stop.wait(backoff.delay())
