"""Benchmark: the cluster watcher against a bare watch loop, on the local control plane.

Throughput, on the same backlog: N ConfigMaps are created and then modified once (2N
changes) with no watcher running; then both watchers drain that history from the same
resourceVersion, one after the other (the API server's watch cache keeps a fresh backlog):
- a bare watch (requests through pykube-ng's client, one JSON parse per event, counted);
- the real cluster source (``ClusterSource`` resuming from a checkpoint at that
  resourceVersion: watch, noise filter, redaction, audit join when an audit log is given,
  batched appends with checkpoints to a fresh SQLite log).
Each one's rate is its events over the time from its first event to its last (for the
cluster source, the transaction times of the first and the last event in the log), so
neither is capped by the writers. Two rounds, in alternating order, each on a backlog of
its own; the ratio of each round and their median are printed. Target: ratio >= 0.8.

Lag, live: with the cluster source caught up, M changes written at a steady pace; the lag
from each write's response to its event in the log (median, p99). Target: p99 < 1 s.

    eval "$(scripts/local-cluster env)"; python scripts/bench_cluster_ingest.py [--objects 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pykube

from gitops.sources.cluster import ClusterSource, ClusterSourceConfig
from gitops.store import Checkpoint, EventLog


def client(kubeconfig: str) -> Any:
    return pykube.HTTPClient(pykube.KubeConfig.from_file(kubeconfig, current_context="admin"))


def write_all(kubeconfig: str, ns: str, n: int, writers: int, *, pace: float = 0.0) -> dict[tuple[str, str], float]:
    """Create then update N ConfigMaps (one write each ``pace`` seconds at most, when given);
    returns (key, resourceVersion) -> the time the write returned."""
    writes: dict[tuple[str, str], float] = {}
    lock = threading.Lock()
    local = threading.local()

    def write(i: int, modify: bool) -> None:
        if not hasattr(local, "api"):
            local.api = client(kubeconfig)
        if pace:
            time.sleep(pace)
        cm = pykube.ConfigMap(local.api, {"metadata": {"name": f"cm-{i:05d}", "namespace": ns},
                                          "data": {"v": "2" if modify else "1", "pad": "x" * 200}})
        cm.update() if modify else cm.create()
        done = time.time()
        with lock:
            writes[(f"ConfigMap/{ns}/cm-{i:05d}", str(cm.obj["metadata"]["resourceVersion"]))] = done

    with ThreadPoolExecutor(1 if pace else writers) as pool:
        list(pool.map(lambda i: write(i, False), range(n)))
        list(pool.map(lambda i: write(i, True), range(n)))
    return writes


def namespace(api: Any) -> tuple[str, str]:
    """A new namespace, and the resourceVersion of its (empty) ConfigMaps."""
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    pykube.Namespace(api, {"metadata": {"name": ns}}).create()
    return ns, str(pykube.ConfigMap.objects(api, namespace=ns).response["metadata"]["resourceVersion"])


def bare(kubeconfig: str, ns: str, rv: str, expected: int) -> tuple[int, float]:
    """A bare watch of the namespace's ConfigMaps from ``rv``: (events, seconds from the first to the last)."""
    api = client(kubeconfig)
    r = api.get(url="configmaps", namespace=ns, version="v1", stream=True, timeout=(10, 300),
                params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "300"})
    r.raise_for_status()
    times: list[float] = []
    for line in r.iter_lines():
        if line and orjson.loads(line)["type"] in ("ADDED", "MODIFIED"):
            times.append(time.time())
            if len(times) >= expected:
                break
    r.close()
    return len(times), times[-1] - times[0]


def ours(kubeconfig: str, audit_log: str | None, ns: str, rv: str, expected: int, db: Path) -> tuple[int, float]:
    """The cluster source resuming from ``rv``: (events, seconds from the first appended to the last)."""
    config = ClusterSourceConfig(kubeconfig=kubeconfig, context="admin", audit_log=audit_log, kinds=["ConfigMap"],
                                 namespaces=[ns])
    source = ClusterSource(db, config)
    with EventLog(db) as log:  # where a watch of it stopped, as a restart finds it
        log.append([], checkpoint=Checkpoint(f"{source.origin}:ConfigMap@{ns}", {"resourceVersion": rv}))
    source.start()
    try:
        got = wait_for(db, ns, expected)
    finally:
        source.stop()
    first, last = got[0], got[-1]
    return len(got), last - first


def wait_for(db: Path, ns: str, expected: int, *, timeout: float = 300) -> list[float]:
    """The transaction times of the namespace's cluster.observed events, once there are ``expected``."""
    deadline = time.time() + timeout
    with EventLog(db) as log:
        while True:
            got = [r.recorded_at for r in log.read(types=["cluster.observed"], resource_glob=f"ConfigMap/{ns}/*")]
            if len(got) >= expected or time.time() > deadline:
                return sorted(t.timestamp() for t in got)
            time.sleep(0.05)


def lag(kubeconfig: str, audit_log: str | None, n: int, pace: float, d: Path) -> list[float]:
    api = client(kubeconfig)
    ns, _ = namespace(api)
    db = d / "lag.db"
    source = ClusterSource(db, ClusterSourceConfig(kubeconfig=kubeconfig, context="admin", audit_log=audit_log,
                                                   kinds=["ConfigMap"], namespaces=[ns]))
    source.start()
    try:
        source.wait_synced(60)
        writes = write_all(kubeconfig, ns, n, 1, pace=pace)
        wait_for(db, ns, 2 * n)
    finally:
        source.stop()
    with EventLog(db) as log:
        seen = {(r.event.resource, r.event.revision): r.recorded_at.timestamp()
                for r in log.read(types=["cluster.observed"], resource_glob=f"ConfigMap/{ns}/*")}
    pykube.Namespace(api, {"metadata": {"name": ns}}).delete()
    return sorted(max(0.0, seen[k] - t) for k, t in writes.items() if k in seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--lag-objects", type=int, default=200)
    ap.add_argument("--lag-pace", type=float, default=0.02, help="seconds between the lag phase's writes")
    ap.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    ap.add_argument("--audit-log", default=os.environ.get("GITOPS_AUDIT_LOG"))
    args = ap.parse_args()
    if not args.kubeconfig:
        raise SystemExit("no kubeconfig: run `eval \"$(scripts/local-cluster env)\"` first")
    api = client(args.kubeconfig)
    n, audit = args.objects, args.audit_log or None
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for round_ in (1, 2):
            ns, rv = namespace(api)
            start = time.time()
            write_all(args.kubeconfig, ns, n, args.writers)
            print(f"round {round_}: {2 * n} changes written in {time.time() - start:.1f} s, then drained from "
                  f"resourceVersion {rv}", flush=True)
            runs: dict[str, Callable[[], tuple[int, float]]] = {
                "bare watch": partial(bare, args.kubeconfig, ns, rv, 2 * n),
                "cluster source": partial(ours, args.kubeconfig, audit, ns, rv, 2 * n, d / f"round{round_}.db")}
            order = list(runs) if round_ == 1 else list(reversed(runs))
            rates = {}
            for name in order:
                events, seconds = runs[name]()
                rates[name] = events / seconds
                print(f"  {name:<15} {events} events in {seconds:.2f} s = {rates[name]:8,.0f} events/s", flush=True)
            ratios.append(rates["cluster source"] / rates["bare watch"])
            print(f"  ratio: {ratios[-1]:.2f}x of the bare watch", flush=True)
            pykube.Namespace(api, {"metadata": {"name": ns}}).delete()
        print(f"ratio, median of the rounds: {statistics.median(ratios):.2f}x (target >= 0.8x)")
        lags = lag(args.kubeconfig, audit, args.lag_objects, args.lag_pace, d)
    print(f"lag from write to log, {len(lags)} changes one each {args.lag_pace * 1000:.0f} ms: median "
          f"{statistics.median(lags) * 1000:.0f} ms, p99 {lags[int(0.99 * (len(lags) - 1))] * 1000:.0f} ms "
          f"(target p99 < 1000 ms)")


if __name__ == "__main__":
    main()
