"""The cluster source: which kinds to watch, and the threads that watch them.

By default every kind that appears in the desired state plus Namespaces, more by
configuration (``kinds``, ``'*'`` for every listable kind). Scope and versions come from
discovery; a configured or desired kind the server does not serve is a ``source.error``
event, not a crash.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gitops.events.models import AnyEvent
from gitops.events.redaction import Redaction, RedactionRule, as_redaction
from gitops.model.errors import ClusterIdentityError, ConfigError
from gitops.model.keys import canonical_group, parse_key
from gitops.model.schema import KindSchemas
from gitops.model.scope import Scope
from gitops.model.times import utc_now
from gitops.sources.cluster.api import AccessDenied, KindInfo
from gitops.sources.cluster.attribution import fingerprint, managers
from gitops.sources.cluster.audit import AuditFeed, AuditIndex
from gitops.sources.cluster.audit_file import HOLD, AuditTailer
from gitops.sources.cluster.audit_records import AuditReader
from gitops.sources.cluster.audit_webhook import AuditWebhook, LogAuditFeed, RequestCallback
from gitops.sources.cluster.client import ClusterClient
from gitops.sources.cluster.config import ClusterSourceConfig
from gitops.sources.cluster.kinds import resolve_kind, served_scope
from gitops.sources.cluster.port import Clock, ClusterPort
from gitops.sources.cluster.watcher import KindWatcher, OutageTracker, Problem, Seen, stream_name
from gitops.sources.cluster.writer import Writer
from gitops.store import Checkpoint, EventLog, open_log
from gitops.store.openapi import save_schemas

__all__ = ["ClusterSource", "PassSummary", "check_audit_log"]


@dataclass
class PassSummary:
    kinds: int = 0
    events: int = 0
    audit_events: int = 0  # records read: kept in the changes they explain, or written as audit events
    unserved: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()  # kinds the server refused to list


def check_audit_log(config: ClusterSourceConfig) -> None:
    """A configured audit log must be a file, or (with ``audit_log_later``) a file that may
    appear in a folder that exists; otherwise attribution would quietly degrade."""
    if config.audit_log is None:
        return
    path = Path(config.audit_log)
    if path.is_dir():
        raise ConfigError(f"audit log {path} is a directory, not the API server's audit log file")
    if path.exists():
        return
    if not config.audit_log_later:
        raise ConfigError(f"audit log {path} does not exist (if the API server will create it, say so: "
                          "--audit-log-later, or audit_log_later in the config)")
    if not path.parent.is_dir():
        raise ConfigError(f"audit log {path} cannot appear: its folder {path.parent} does not exist")


class ClusterSource:
    """Reads one cluster into the log at ``db_path``."""

    def __init__(self, db_path: str | Path, config: ClusterSourceConfig, *,
                 redaction: Redaction | Sequence[RedactionRule] = (), client: ClusterPort | None = None,
                 clock: Clock = utc_now) -> None:
        self.db_path = db_path
        self.config = config
        self.redaction = as_redaction(redaction)
        self.clock = clock
        check_audit_log(config)
        if config.audit_webhook is not None:
            config.audit_webhook.check()
        self.client: ClusterPort = client or ClusterClient(config.kubeconfig, context=config.context,
                                                           watch_timeout=config.watch_timeout)
        self.origin = f"cluster:{config.name or self.client.server}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._writer: Writer | None = None
        self._tailer: AuditTailer | None = None
        self._feed: LogAuditFeed | None = None
        self.webhook: AuditWebhook | None = None
        self.on_audit_request: RequestCallback | None = None  # told of each request the audit webhook answers
        self.on_audit_dropped: Callable[[], None] | None = None  # ... and of each connection it dropped before one
        self._outages: OutageTracker | None = None
        self._watching: set[str] = set()  # Kind[.group] names
        self._started: list[KindWatcher] = []
        self._audited: dict[tuple[str, str], tuple[str, bool]] = {}  # (group, plural) -> (kind, namespaced)
        self._refresh_lock = threading.Lock()
        self._served: dict[tuple[str, str], KindInfo] = {}  # the last discovery
        self._unanswered: dict[str, str] = {}  # group versions the last discovery could not read
        self._error: Exception | None = None
        self._on_error: Callable[[Exception], None] | None = None

    # ------------------------------------------------------------------ selection

    def _discover(self) -> dict[tuple[str, str], KindInfo]:
        found = self.client.discover()
        self._served, self._unanswered = found.kinds, found.failed
        return self._served

    def _keep_schemas(self, log: EventLog) -> None:
        """Keep the server's schema in the log (when it changed), for every diff to use."""
        doc = self.client.openapi()
        if doc is not None:
            save_schemas(log, self.origin, KindSchemas.from_openapi(doc))

    def scope(self) -> Scope:
        """Whether a kind is namespaced, from this source's discovery of the cluster (made
        now if ``start()`` has not made one), kept current by ``refresh()``: a Git source
        watching beside it learns of CRDs installed later. Kinds the cluster does not
        serve fall back to the built-in table."""
        if not self._served:
            self._discover()
        return served_scope(lambda: self._served)

    def select(self, log: EventLog, served: dict[tuple[str, str], KindInfo]) -> tuple[list[KindInfo], list[Problem]]:
        wanted: set[tuple[str, str]] = {("", "Namespace")}
        for resource in log.distinct_resources(["desired.applied"]):
            key = parse_key(resource)
            wanted.add((key.group, key.kind))
        if "*" in self.config.kinds:  # one watch per object: an old group's name for a kind is left out
            wanted.update((g, k) for (g, k), info in served.items() if info.watchable and not (
                canonical_group(g, k) != g and (canonical_group(g, k), k) in served))
        wanted.update(resolve_kind(k, served) for k in self.config.kinds if k != "*")
        kinds: list[KindInfo] = []
        problems = [Problem("group-unavailable", f"{gv} did not answer discovery ({why}); its kinds are not "
                            "watched until it does", gv) for gv, why in sorted(self._unanswered.items())]
        for group, kind in sorted(wanted):
            info = served.get((group, kind))
            name = f"{kind}.{group}" if group else kind
            if info is None:
                problems.append(Problem("kind-not-served", f"the cluster does not serve {name}", name))
            elif not info.watchable:
                problems.append(Problem("kind-not-watchable", f"{name} cannot be listed and watched", name))
            else:
                kinds.append(info)
        return kinds, problems

    def _known(self, log: EventLog, kinds: list[KindInfo]) -> dict[str, dict[str, Seen]]:
        """What the log last recorded of each object of these kinds (its current-state table)."""
        known: dict[str, dict[str, Seen]] = {k.name: {} for k in kinds}
        for resource, payload in log.current_payloads("actual", origin=self.origin):
            key = parse_key(resource)
            name = f"{key.kind}.{key.group}" if key.group else key.kind
            m = payload.get("manifest")
            if name in known and isinstance(m, dict):
                known[name][resource] = Seen(fingerprint(m, noisy=name in self.config.noisy_kinds), managers(m),
                                             (m.get("metadata") or {}).get("uid"),
                                             str(payload.get("resource_version") or "") or None)
        return known

    def _prepare(self, log: EventLog, *, webhook: bool = False
                 ) -> tuple[list[KindWatcher], Writer, AuditTailer | None, list[Problem]]:
        """The watchers, their writer and the audit records' feeds; with ``webhook`` (a service),
        the webhook's records in the log are read too, and old ones of the file not held."""
        self._check_identity(log)
        # a discovery made moments ago (for the Git source's scope) serves: no second one at start
        kinds, problems = self.select(log, self._served or self._discover())
        self._keep_schemas(log)
        index = tailer = None
        feeds: list[AuditFeed] = []
        if self.config.audit_log or (webhook and self.config.audit_webhook is not None):
            index = AuditIndex()
        if self.config.audit_log:
            assert index is not None
            tailer = AuditTailer(open_log(self.db_path), self.config.audit_log, resolve=self._resolve_audited,
                                 index=index, origin=self.origin, hold=HOLD, stale=HOLD if webhook else None)
            feeds.append(tailer)
        if webhook and self.config.audit_webhook is not None:
            assert index is not None
            self._feed = LogAuditFeed(open_log(self.db_path), index, origin=self.origin,
                                      delay=self.config.audit_webhook.delay)
            feeds.append(self._feed)
        writer = Writer(log, origin=self.origin, config=self.config, index=index, feeds=feeds, clock=self.clock)
        self._outages = OutageTracker(writer.put, clock=self.clock)
        watchers = self._watchers(log, kinds, writer)
        for p in problems:
            writer.put(p)
        return watchers, writer, tailer, problems

    def _check_identity(self, log: EventLog) -> None:
        """Refuse a cluster other than the one the log knows under this origin: a context or
        kubeconfig that now points elsewhere would record the first cluster's objects as
        deleted, and a pass would act on the wrong cluster with its history. The first
        contact records the cluster's identity; a cluster that cannot tell (RBAC) is let be."""
        uid = self.client.identity()
        if uid is None:
            return
        name = f"{self.origin}:identity"
        known = log.checkpoint(name)
        if isinstance(known, dict) and known.get("uid"):
            if known["uid"] != uid:
                raise ClusterIdentityError(
                    f"{self.client.server} is not the cluster this log records as {self.origin}: its kube-system "
                    f"Namespace has uid {uid}, the log's cluster {known['uid']} (first reached at "
                    f"{known.get('server', '?')}); check the kubeconfig and context, or give this cluster a name "
                    "of its own (cluster.name, --cluster-name)")
            return
        log.append([], checkpoint=Checkpoint(name, {"uid": uid, "server": self.client.server}))

    def _resolve_audited(self, group: str, plural: str) -> tuple[str, bool] | None:
        return self._audited.get((group, plural))

    def _watchers(self, log: EventLog, kinds: list[KindInfo], writer: Writer) -> list[KindWatcher]:
        """Watchers for ``kinds``, each knowing what the log last recorded of its objects."""
        known = self._known(log, kinds)
        checkpoints = log.checkpoints(f"{self.origin}:")
        watchers = []
        for k in kinds:
            # with cluster.namespaces, a namespaced kind is read in those namespaces only: one
            # list and watch each, as a reconciler whose Roles are there alone can
            scopes: list[str | None] = list(self.config.namespaces) if k.namespaced and self.config.namespaces \
                else [None]
            for namespace in scopes:
                stream = stream_name(k, namespace)
                cp = checkpoints.get(writer.checkpoint_name(stream))
                rv = cp.get("resourceVersion") if isinstance(cp, dict) else None
                mine = known[k.name] if namespace is None else {
                    key: seen for key, seen in known[k.name].items() if parse_key(key).namespace == namespace}
                assert self._outages is not None
                watchers.append(KindWatcher(self.client, k, config=self.config, known=mine, resource_version=rv,
                                            out=writer.put, outages=self._outages, redaction=self.redaction,
                                            clock=self.clock, namespace=namespace))
            self._watching.add(k.name)
            # Audit records are kept for the kinds watched here, noisy ones aside: a real
            # cluster's audit log is mostly lease renewals and node heartbeats.
            if k.name not in self.config.noisy_kinds:
                self._audited[(k.group, k.plural)] = (k.kind, k.namespaced)
        return watchers

    # ------------------------------------------------------------------ one pass

    def ingest_once(self) -> PassSummary:
        """List every selected kind once and record what differs from the log."""
        with open_log(self.db_path) as log:
            watchers, writer, tailer, problems = self._prepare(log)
            if tailer is not None:
                tailer.catch_up()
            forbidden = []
            for w in watchers:
                try:
                    w.list_pass()
                except AccessDenied as e:
                    writer.put(Problem("kind-forbidden", str(e), w.stream))
                    forbidden.append(w.stream)
            writer.drain()
            if tailer is not None:
                tailer.flush()  # the records no change took
                tailer.stop()
                tailer.log.close()
            return PassSummary(len(watchers), writer.appended, tailer.records if tailer is not None else 0,
                               tuple(p.kind for p in problems), tuple(forbidden))

    # ------------------------------------------------------------------ following

    @property
    def unreachable(self) -> bool:
        """Whether the API server cannot be reached now (an outage under way)."""
        return self._outages is not None and self._outages.down

    @property
    def error(self) -> Exception | None:
        """Why the source cannot go on (its writes failed), if so."""
        return self._error

    def _failed(self, e: Exception) -> None:
        self._error = e
        if self._on_error is not None:
            self._on_error(e)

    def start(self, *, on_error: Callable[[Exception], None] | None = None,
              on_appended: Callable[[list[AnyEvent]], None] | None = None) -> None:
        """Read the audit log's backlog, then start watching in background threads;
        ``stop()`` ends them. ``on_error`` is told if the source cannot go on;
        ``on_appended`` of each batch of events written (from the writer's thread)."""
        log = open_log(self.db_path)
        watchers, writer, tailer, _ = self._prepare(log, webhook=True)
        self._writer, self._tailer = writer, tailer
        self._on_error = on_error
        writer.on_error = self._failed
        writer.on_appended = on_appended
        if tailer is not None:
            tailer.catch_up()  # a first start may have a long audit history to read
        if self.config.audit_webhook is not None:  # once the kinds watched are known: records of others are not kept
            self.webhook = AuditWebhook(self.db_path, self.config.audit_webhook,
                                        reader=AuditReader(resolve=self._resolve_audited, origin=self.origin),
                                        on_request=self.on_audit_request, on_dropped=self.on_audit_dropped)
            self.webhook.start()
        self._threads.append(threading.Thread(target=writer.run, name="cluster-writer", daemon=True))
        if tailer is not None:
            tailer.start()
            self._threads.append(threading.Thread(target=tailer.run, kwargs={"on_error": self._failed},
                                                  name="audit-tailer", daemon=True))
        self._threads.append(threading.Thread(target=self._rediscover, name="rediscover", daemon=True))
        for t in self._threads:
            t.start()
        self._start_watchers(watchers)

    def _rediscover(self) -> None:
        """While an API group does not answer discovery, ask again every ``discovery_retry``
        seconds; its kinds are watched from when it answers."""
        while not self._stop.wait(self.config.discovery_retry):
            if self._unanswered:
                self.refresh()

    def _watch(self, watcher: KindWatcher) -> None:
        """A watcher's thread. Outages and 410s it handles itself; anything else it raises is
        a bug: the source stops (a watch that silently stopped recording a kind would be
        worse) and the thread dies with its traceback."""
        try:
            watcher.run(self._stop)
        except Exception as e:
            self._failed(e)
            raise

    def _check_forbidden(self) -> None:
        """Every kind refused (RBAC): watching on would record nothing, silently."""
        started = list(self._started)
        if started and all(w.forbidden for w in started):
            self._failed(AccessDenied(f"the Kubernetes API at {self.client.server} refused to list every kind "
                                      f"watched ({', '.join(w.stream for w in started)}): check the "
                                      "credentials' RBAC rights"))

    def wait_synced(self, timeout: float) -> bool:
        """Wait until every kind watched is listed (or its watch resumed), as an informer's
        cache sync: changes made after that are seen as they happen. False on timeout."""
        deadline = time.monotonic() + timeout
        return all(w.synced.wait(max(0.0, deadline - time.monotonic())) for w in list(self._started))

    def watches(self, kind: str) -> bool:
        """Whether a watch records changes to objects of ``kind`` (``Kind[.group]``, as keys
        name it) now: started, and not refused by RBAC."""
        return any(w.kind.name == kind and not w.forbidden for w in list(self._started))

    def _start_watchers(self, watchers: list[KindWatcher]) -> None:
        self._started.extend(watchers)
        for w in watchers:
            w.on_forbidden = self._check_forbidden
            t = threading.Thread(target=self._watch, args=(w,), name=f"watch-{w.stream}", daemon=True)
            self._threads.append(t)
            t.start()

    def refresh(self) -> list[str]:
        """Start watching the kinds that entered the desired state (or the cluster) since
        ``start()``; returns their names. Called when Git brings new kinds."""
        if self._writer is None or self._stop.is_set():
            return []
        with self._refresh_lock, open_log(self.db_path) as log:
            kinds, problems = self.select(log, self._discover())
            self._keep_schemas(log)
            watchers = self._watchers(log, [k for k in kinds if k.name not in self._watching], self._writer)
        for p in problems:
            self._writer.put(p)  # a problem already recorded has the same id: appended once
        self._start_watchers(watchers)
        return list(dict.fromkeys(w.kind.name for w in watchers))

    def stop(self) -> None:
        """Stop watching, write what is queued, and close."""
        self._stop.set()
        self.client.close()
        if self.webhook is not None:
            self.webhook.stop()  # what it acknowledged is in the log already
        if self._tailer is not None:
            self._tailer.stop()
        for t in self._threads:
            if not t.name.startswith("cluster-writer"):
                t.join(timeout=30)
        if self._writer is not None:
            self._writer.put(None)
        for t in self._threads:
            t.join(timeout=30)
        if self._writer is not None:
            self._writer.log.close()
        if self._tailer is not None:
            self._tailer.close()  # the records no change took are written
        if self._feed is not None:
            self._feed.close()
