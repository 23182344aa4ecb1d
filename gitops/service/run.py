"""``gitops run``: the Git follower, the cluster watcher and its audit-log tail (the
``WatchService``), plus the scheduler, the reconciler, leader election and the health and
metrics endpoints, in one process.

- **Scheduling** (APScheduler): a pass every ``interval`` seconds (with jitter), and a pass
  soon after a new commit (the Git follower applied objects) or a drift (the cluster
  watcher recorded a change to a desired or owned object that the reconciler did not
  make). A burst of triggers within ``debounce`` seconds gives one pass; a lock makes sure
  two passes never run at once (a trigger during a pass gives one more pass after it).
- **Leadership**: with the lease on (the default), only the holder of the Lease runs
  passes; every instance records observations. Gaining and losing it are recorded.
- **Stopping** (SIGTERM/SIGINT): the current pass stops after the action in progress and
  records its end, the lease is released (a standby takes over at once), the sources
  write what they hold, and the process exits 0.
- **Endpoints** on ``metrics_address`` (loopback by default): ``/healthz`` (200 while every
  part runs), ``/readyz`` (200 once the cluster is synced and, on the leader, a first pass
  finished), ``/metrics`` (Prometheus text).
- **Checkpoints** (``gitops.service.checkpoints``): when a signing key exists, the leader
  signs and publishes one every ``integrity.checkpoint_every`` events or minutes.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gitops.diff import DiffSettings
from gitops.events.models import (
    AnyEvent,
    Attribution,
    ClusterDeleted,
    ClusterObserved,
    EventSource,
    ReconcileLeader,
    ReconcileLeaderPayload,
    event_id,
)
from gitops.events.redaction import Redaction, RedactionRule
from gitops.model.errors import ConfigError, GitOpsError
from gitops.model.times import utc_now
from gitops.reconcile import PassResult, Reconciler, ReconcileSettings
from gitops.service.checkpoints import Checkpointed, Checkpointer
from gitops.service.leader import LeaseElector, process_identity
from gitops.service.metrics import RunMetrics
from gitops.service.watch import Reporter, WatchService
from gitops.sources.cluster import ClusterSourceConfig
from gitops.sources.cluster.api import RECONCILER_AGENT
from gitops.sources.cluster.client import ClusterClient
from gitops.sources.git import GitSourceConfig
from gitops.store import open_log

__all__ = ["RunReporter", "RunService", "build_reconciler"]


class RunReporter(Reporter, Protocol):
    def reconciled(self, result: PassResult, *, trigger: str, at: datetime) -> None:
        """A pass ended."""

    def leadership(self, acquired: bool, *, lease: str, holder: str | None, at: datetime) -> None:
        """This process started or stopped leading."""

    def standby(self, *, lease: str, holder: str | None, at: datetime) -> None:
        """This process is a standby: ``holder`` holds the lease and applies."""

    def refused(self, why: str, *, at: datetime) -> None:
        """The API server refuses this process the lease (RBAC): it cannot lead until granted."""

    def checkpointed(self, done: Checkpointed | None, error: Exception | None, *, at: datetime) -> None:
        """A signed checkpoint was made and published (``done``), or could not be (``error``)."""


def build_reconciler(db_path: str | Path, service: WatchService, settings: ReconcileSettings, *,
                     diff: DiffSettings, redaction: Redaction | Sequence[RedactionRule],
                     cluster: ClusterSourceConfig) -> tuple[Reconciler, ClusterClient]:
    """A reconciler over the service's sources: desired from its Git source (the manifests
    to apply read from Git at the commit the log names), actual from its cluster source,
    applying through a client of its own."""
    if service.git is None or service.cluster is None:
        raise ConfigError("reconciling needs a Git repository and a cluster")
    git = service.git
    port = ClusterClient(cluster.kubeconfig, context=cluster.context,
                         user_agent=f"{RECONCILER_AGENT}/{settings.instance} ({settings.field_manager})")

    def last_valid() -> str | None:
        cp = git.checkpoint() or {}
        value = cp.get("last_valid")
        return str(value) if value else None

    reconciler = Reconciler(open_log(db_path), port, settings=settings, desired_origin=git.origin,
                            actual_origin=service.cluster.origin, manifests=git.manifests_at, last_valid=last_valid,
                            diff=diff, redaction=redaction, identity=process_identity("reconciler-"),
                            namespaces=cluster.namespaces)
    return reconciler, port


class RunService(WatchService):
    """Followers (inherited) + reconciler + scheduler + leader election + endpoints."""

    def __init__(self, *, base: WatchService, reconciler: Reconciler, port: ClusterClient,
                 settings: ReconcileSettings, reporter: RunReporter, db_path: str | Path,
                 allow_mass_prune: bool = False, checkpointer: Checkpointer | None = None) -> None:
        super().__init__(git=base.git, cluster=base.cluster, reporter=reporter)
        self.checkpointer = checkpointer
        self._owns = base._owns
        self.reporter: RunReporter = reporter
        self.reconciler = reconciler
        self.settings = settings
        self.allow_mass_prune = allow_mass_prune
        self.db_path = db_path
        self.identity = process_identity()
        self._events_log = open_log(db_path)  # this thread's own connection, for leadership events
        self._events_lock = threading.Lock()
        self.metrics = RunMetrics(instance=settings.instance, last_seq=self._last_seq)
        if base.cluster is not None:  # the audit webhook starts with the cluster source, and counts from the first
            base.cluster.on_audit_request = self.metrics.audit_request
            base.cluster.on_audit_dropped = self.metrics.audit_dropped
        for client in {id(c): c for c in (port, getattr(base.cluster, "client", None)) if c is not None}.values():
            if isinstance(client, ClusterClient):
                client.on_response(self.metrics.request)
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self._pass_lock = threading.Lock()
        self._waiting = 0  # passes begun that wait for the one in progress: each will see what is new
        self._waiting_lock = threading.Lock()  # for its updates only; it is read without
        self._stopping = threading.Event()
        self.elector: LeaseElector | None = None
        if settings.lease.enabled:
            self.elector = LeaseElector.for_instance(port, settings, self.identity)
        self._elector_thread: threading.Thread | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self.passes = 0

    @classmethod
    def build_run(cls, db_path: str | Path, *, git: GitSourceConfig, cluster: ClusterSourceConfig,
                  settings: ReconcileSettings, diff: DiffSettings, redaction: Redaction | Sequence[RedactionRule],
                  reporter: RunReporter, allow_mass_prune: bool = False,
                  checkpointer: Checkpointer | None = None) -> RunService:
        base = WatchService.build(db_path, git=git, cluster=cluster, redaction=redaction, reporter=reporter)
        reconciler, port = build_reconciler(db_path, base, settings, diff=diff, redaction=redaction, cluster=cluster)
        return cls(base=base, reconciler=reconciler, port=port, settings=settings, reporter=reporter,
                   db_path=db_path, allow_mass_prune=allow_mass_prune, checkpointer=checkpointer)

    # ------------------------------------------------------------------ lifecycle

    @property
    def leading(self) -> bool:
        """Whether this process applies: it holds the lease, or runs without one."""
        return self.elector is None or self.elector.leading

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the endpoints listen (the port chosen, when 0 was asked), if they do."""
        if self._http is None:
            return None
        host, port = self._http.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._start_http()
        super().start()
        assert self.cluster is not None
        self.reconciler.cluster_synced = self.cluster.wait_synced  # no pass plans from a half-listed cluster
        # the watch records what the passes apply, in the order the cluster made it (its writer
        # holds a change up to audit_wait for its audit record): see gitops.reconcile.observations
        self.reconciler.observations.timeout = self.cluster.config.audit_wait + 5.0
        self.reconciler.observations.watches = self.cluster.watches
        self.cluster.wait_synced(60)
        interval = self.settings.interval
        self.scheduler.add_job(self._scheduled, "interval", seconds=interval, jitter=interval * self.settings.jitter,
                               id="interval", max_instances=1, coalesce=True)
        if self.checkpointer is not None:
            self.scheduler.add_job(self._checkpoint, "interval", seconds=self.checkpointer.tick_seconds,
                                   id="checkpoint", max_instances=1, coalesce=True, next_run_time=utc_now())
        self.scheduler.start()
        if self.elector is not None:
            self._elector_thread = threading.Thread(target=self._elect, name="leader-election", daemon=True)
            self._elector_thread.start()
        else:
            self.request_pass("start")

    def stop(self) -> None:
        self._stopping.set()
        self.reconciler.stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)  # the pass in progress ends after its current action
        with self._pass_lock:
            pass
        if self._elector_thread is not None:
            self._elector_thread.join(30)
        if self.elector is not None and self.elector.leading:
            self.elector.release()
            self._leadership(False)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        super().stop()
        if self.checkpointer is not None:
            self.checkpointer.close()
        self.reconciler.log.close()
        self._events_log.close()

    # ------------------------------------------------------------------ passes

    def request_pass(self, trigger: str) -> None:
        """A pass soon: after ``debounce`` seconds, joined by every trigger until then."""
        if self._stopping.is_set() or not self.leading or not self.scheduler.running:
            return
        if self._waiting:  # a pass that has not read the log yet: it will see this
            return
        # no lock of ours is held here: APScheduler's shutdown holds its job stores' lock while it
        # waits for the running passes, and a pass takes _waiting_lock as it begins
        if self.scheduler.get_job("triggered") is None:
            # a second instance waits for a pass in progress, which may have read the log before
            # what triggered this (APScheduler would skip it, and the change wait an interval)
            run_at = utc_now() + timedelta(seconds=self.settings.debounce)
            self.scheduler.add_job(self._run_pass, "date", run_date=run_at, args=[trigger], id="triggered",
                                   replace_existing=True, misfire_grace_time=None, max_instances=2)

    def _scheduled(self) -> None:
        self._run_pass("interval")

    def _run_pass(self, trigger: str) -> None:
        with self._waiting_lock:
            self._waiting += 1
        with self._pass_lock:
            with self._waiting_lock:
                self._waiting -= 1
            if self._stopping.is_set() or not self.leading:
                return
            result = self.reconciler.run_pass(trigger=trigger, allow_mass_prune=self.allow_mass_prune)
            self.passes += 1
            if result.kinds_changed and self.cluster is not None:  # a CRD installed meanwhile: watch its kind, and
                for name in self.cluster.refresh():  # the Git source names its objects as the cluster serves them
                    self.reporter.watching(name, at=utc_now())
        self.metrics.observe_pass(result, drift_open=self.reconciler.open_drift, now=time.time())
        self.reporter.reconciled(result, trigger=trigger, at=utc_now())

    def _checkpoint(self) -> None:
        assert self.checkpointer is not None
        if self._stopping.is_set() or not self.leading:  # one process publishes: the leader
            return
        try:
            done = self.checkpointer.tick()
        except GitOpsError as e:
            self.reporter.checkpointed(None, e, at=utc_now())
            return
        if done is not None:
            self.reporter.checkpointed(done, None, at=utc_now())

    def _on_pass(self, summary: Any) -> None:
        if self._follower is not None:
            self.metrics.git_fetch.observe(self._follower.last_seconds)
        self.metrics.git_head_errors.set(summary.head_errors)
        super()._on_pass(summary)
        if self.desired_changed:  # this pass's commits, or those another process wrote to the shared log
            self.request_pass("commit")

    def _on_cluster_events(self, events: list[AnyEvent]) -> None:
        health = False
        for ev in events:
            # the desired and owned objects of the last pass: a change to one by another hand is drift;
            # the control plane's (a controller writing a status) may change its health: judged at once too
            if (isinstance(ev, (ClusterObserved, ClusterDeleted)) and ev.resource in self.reconciler.watched
                    and ev.payload.attribution != Attribution.RECONCILER):
                if not ev.payload.control_plane:
                    self.request_pass("drift")
                    return
                health = True
        if health:
            self.request_pass("health")

    # ------------------------------------------------------------------ leadership

    def _elect(self) -> None:
        assert self.elector is not None
        seen: str | None = None
        while not self._stopping.is_set():
            was = self.leading
            now = self.elector.tick()
            if now != was:
                self._leadership(now)
                if now:
                    self.request_pass("leader")
            if not now and self.elector.refusal is not None:  # RBAC: say what is refused, not "standby"
                if seen != self.elector.refusal:
                    seen = self.elector.refusal
                    self.reporter.refused(self.elector.refusal, at=utc_now())
            elif not now and self.elector.holder != seen:  # a standby says so, and names who applies
                seen = self.elector.holder
                self.reporter.standby(lease=self.elector.lease, holder=seen, at=utc_now())
            elif now:
                seen = None
            self._stopping.wait(self.settings.lease.renew)

    def _leadership(self, acquired: bool) -> None:
        assert self.elector is not None
        self.metrics.leader.set(1 if acquired else 0)
        e = self.elector
        at = utc_now()
        with self._events_lock:
            self._events_log.append([ReconcileLeader(
                id=event_id("reconcile.leader", e.lease, self.identity, str(acquired), at.isoformat()),
                source=EventSource.RECONCILER, actor=self.identity, effective_at=at,
                payload=ReconcileLeaderPayload(instance=self.settings.instance, lease=e.lease, identity=self.identity,
                                               acquired=acquired, previous=e.previous if acquired else None))])
        self.reporter.leadership(acquired, lease=e.lease, holder=e.holder, at=at)

    # ------------------------------------------------------------------ endpoints

    def _last_seq(self) -> float:
        with self._events_lock:
            return float(self._events_log.last_seq())

    @property
    def healthy(self) -> bool:
        return self.error is None and not self._stopping.is_set()

    @property
    def ready(self) -> bool:
        return self.readiness()[0]

    def readiness(self) -> tuple[bool, str]:
        """Whether the service is ready, and what ``/readyz`` says: not while the API server
        cannot be reached or the cluster is not listed yet, nor before the lease was tried
        and a leader's first pass; a standby is ready, and says which process holds the
        lease; a process the API server refuses the lease is not, and says why before anything
        else (it can neither lead nor take over: no standby)."""
        if not self.healthy:
            return False, f"not ready: {self.error or 'stopping'}"
        refused = None if self.leading or self.elector is None else self.elector.refusal
        if refused is not None:  # the API server's answer, whatever else is not ready yet
            return False, f"not ready: {refused}"
        if self.cluster is None or self.cluster.unreachable:
            return False, "not ready: the Kubernetes API server cannot be reached"
        if not self.cluster.wait_synced(0):
            return False, "not ready: the cluster is not listed yet"
        if not self.leading:
            assert self.elector is not None
            if not self.elector.tried:  # it may lead in a moment: ready now would admit it before its first pass
                return False, f"not ready: the lease {self.elector.lease} has not been tried yet"
            return True, f"ok: standby; the lease {self.elector.lease} is held by {self.elector.holder or 'nobody'}"
        if self.passes == 0:
            return False, "not ready: the first pass has not finished"
        return True, "ok"

    def _start_http(self) -> None:
        address = self.settings.metrics_address
        if not address:
            return
        host, _, port = address.rpartition(":")
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body, status, ctype = generate_latest(service.metrics.registry), 200, CONTENT_TYPE_LATEST
                elif self.path == "/healthz":
                    ok = service.healthy
                    body, status, ctype = (b"ok\n" if ok else b"not healthy\n"), (200 if ok else 503), "text/plain"
                elif self.path == "/readyz":
                    ok, text = service.readiness()
                    body, status, ctype = f"{text}\n".encode(), (200 if ok else 503), "text/plain"
                else:
                    body, status, ctype = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds: not worth a line each

        try:
            self._http = _ProbeServer((host or "127.0.0.1", int(port)), Handler)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot serve metrics on {address}: {e}") from None
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(target=self._http.serve_forever, name="http", daemon=True)
        self._http_thread.start()


class _ProbeServer(ThreadingHTTPServer):
    """The probes' and metrics' server: a client that goes away before its request is whole
    (a reset, a timeout: a load balancer's check may do that every few seconds) is not
    printed as a thread's traceback on the service's output. Any other error is."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)
