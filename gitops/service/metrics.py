"""The metrics ``gitops run`` serves on ``/metrics``, named and typed as Prometheus asks
(counters end in ``_total``, durations are histograms in seconds, ``*_info`` gauges carry
labels and the value 1) and as Argo CD and Flux users build alerts on: passes and their
duration by result, actions by action, kind and result, objects by sync status, health and
kind, open drift, the commit last applied, and the latency of Git fetches and API
requests. No ``*_created`` series: they double every counter for nothing a dashboard uses.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable
from importlib.metadata import version

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from gitops.reconcile import PassResult

__all__ = ["RunMetrics"]

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the client

_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_REQUEST_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _Appended(Collector):
    """``gitops_events_appended_total``: the log's last seq, which only grows."""

    def __init__(self, last_seq: Callable[[], float]) -> None:
        self.last_seq = last_seq

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily("gitops_events_appended", "Events appended to the log (its last seq)",
                                  value=self.last_seq())


class RunMetrics:
    def __init__(self, *, instance: str, last_seq: Callable[[], float]) -> None:
        self.registry = r = CollectorRegistry()
        Gauge("gitops_info", "The gitops version and the reconciler instance", ["version", "instance"],
              registry=r).labels(version("gitops"), instance).set(1)
        self.passes = Counter("gitops_reconcile_passes", "Reconcile passes, by outcome and mode (apply, dry-run, "
                              "detect-only)", ["outcome", "mode"], registry=r)
        self.duration = Histogram("gitops_reconcile_duration_seconds", "Duration of reconcile passes, by result",
                                  ["result"], registry=r, buckets=_SECONDS)
        self.actions = Counter("gitops_actions", "Actions of the reconciler (create, update, prune), by the kind "
                               "of object and their result", ["action", "kind", "result"], registry=r)
        self.objects = Gauge("gitops_objects", "Objects of the last pass, by sync status, health and kind",
                             ["sync", "health", "kind"], registry=r)
        self.out_of_sync = Gauge("gitops_objects_out_of_sync", "Objects that differ from Git after the last pass "
                                 "(what it applied counts as in sync)", registry=r)
        self.drift_open = Gauge("gitops_drift_open", "Drift episodes open", registry=r)
        self.last_applied = Gauge("gitops_last_applied_commit_info", "The commit the last applying pass that "
                                  "succeeded acted on", ["commit"], registry=r)
        self.last_success = Gauge("gitops_last_successful_pass_timestamp_seconds",
                                  "Unix time of the last pass that succeeded", registry=r)
        self.leader = Gauge("gitops_leader", "1 while this process holds the lease and applies", registry=r)
        self.git_head_errors = Gauge("gitops_git_head_errors", "Errors that make the newest commit the Git source "
                                     "read invalid (0: valid); the cluster is held to the last valid commit",
                                     registry=r)
        self.git_fetch = Histogram("gitops_git_fetch_duration_seconds", "Duration of a Git source's pass (fetch "
                                   "and read)", registry=r, buckets=_SECONDS)
        self.api_requests = Histogram("gitops_api_request_duration_seconds", "Latency of requests to the "
                                      "Kubernetes API, by verb and status code", ["verb", "code"], registry=r,
                                      buckets=_REQUEST_SECONDS)
        self.audit_webhook = Counter("gitops_audit_webhook_requests", "Requests to the audit webhook, by HTTP "
                                     "status (401: refused as unauthenticated)", ["code"], registry=r)
        self.audit_records = Counter("gitops_audit_webhook_records", "Audit records the webhook appended to the "
                                     "log", registry=r)
        self.audit_dropped_connections = Counter(
            "gitops_audit_webhook_dropped_connections", "Connections to the audit webhook that ended before a "
            "request (a failed TLS handshake, a reset, a timeout)", registry=r)
        r.register(_Appended(last_seq))
        self._objects: set[tuple[str, str, str]] = set()
        self._commit: str | None = None

    def observe_pass(self, result: PassResult, *, drift_open: int, now: float) -> None:
        self.passes.labels(result.status, result.mode).inc()  # a dry run is counted as one, never as a sync
        self.duration.labels(result.status).observe(result.duration)
        for action, kind, outcome in result.actions:
            self.actions.labels(action, kind, outcome).inc()
        self.drift_open.set(drift_open)
        if result.status == "skipped":  # held (suspended, waiting for the cluster): nothing was judged
            return
        # what the pass left, not what it found: an object it applied is in sync now, one it pruned is gone
        after = {key: ("in-sync", health) if key in result.done else (sync, health)
                 for key, (sync, health) in result.objects.items() if result.done.get(key) != "prune"}
        self.out_of_sync.set(sum(1 for sync, _ in after.values() if sync != "in-sync"))
        counts = Tally((sync, health or "none", key.split("/", 1)[0]) for key, (sync, health) in after.items())
        for gone in self._objects - set(counts):  # a series of objects no longer there reads 0, not its last value
            self.objects.labels(*gone).set(0)
        for labels, n in counts.items():
            self.objects.labels(*labels).set(n)
        self._objects |= set(counts)
        if result.mode == "apply" and result.status == "succeeded" and result.desired_revision:
            if self._commit is not None and self._commit != result.desired_revision:
                self.last_applied.remove(self._commit)
            self._commit = result.desired_revision
            self.last_applied.labels(result.desired_revision).set(1)
        if result.status == "succeeded" and result.mode != "dry-run":
            self.last_success.set(now)

    def request(self, verb: str, code: int, seconds: float) -> None:
        self.api_requests.labels(verb, str(code)).observe(seconds)

    def audit_request(self, code: int, records: int) -> None:
        self.audit_webhook.labels(str(code)).inc()
        self.audit_records.inc(records)

    def audit_dropped(self) -> None:
        self.audit_dropped_connections.inc()
