"""Benchmark: the cluster watcher against a bare pykube-ng watch loop, on the local
control plane.

Creates N ConfigMaps, then modifies each once, as fast as the API allows (several client
threads), while two watchers run side by side on the same namespace:
- the real cluster source (``ClusterSource``: watch, noise filter, redaction, audit join
  when an audit log is given, batched appends with checkpoints to a fresh SQLite log);
- a bare pykube-ng watch loop that only counts what it receives (the baseline).
Prints the rate each one took the 2N changes in (events/s, from the first write to the
last event), their ratio, and the lag from each write's response to its event in the log
(median, p99). Targets: ratio >= 0.8, p99 lag < 1 s.

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
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pykube

from gitops.sources.cluster import ClusterSource, ClusterSourceConfig
from gitops.store import EventLog


def client(kubeconfig: str) -> Any:
    return pykube.HTTPClient(pykube.KubeConfig.from_file(kubeconfig, current_context="admin"))


def bare_watch(kubeconfig: str, namespace: str, rv: str, expected: int, received: list[float],
               done: threading.Event) -> None:
    api = client(kubeconfig)
    api.timeout = (10, 600)
    query = pykube.ConfigMap.objects(api, namespace=namespace).watch(since=rv, params={"timeoutSeconds": "600"})
    for ev in query:
        if ev.type in ("ADDED", "MODIFIED"):
            received.append(time.time())
            if len(received) >= expected:
                break
    done.set()


def write_all(kubeconfig: str, ns: str, n: int, writers: int) -> dict[tuple[str, str], float]:
    """Create then update N ConfigMaps; returns (key, resourceVersion) -> time the write returned."""
    writes: dict[tuple[str, str], float] = {}
    lock = threading.Lock()
    local = threading.local()

    def write(i: int, modify: bool) -> None:
        if not hasattr(local, "api"):
            local.api = client(kubeconfig)
        cm = pykube.ConfigMap(local.api, {"metadata": {"name": f"cm-{i:05d}", "namespace": ns},
                                          "data": {"v": "2" if modify else "1", "pad": "x" * 200}})
        cm.update() if modify else cm.create()
        done = time.time()
        with lock:
            writes[(f"ConfigMap/{ns}/cm-{i:05d}", str(cm.obj["metadata"]["resourceVersion"]))] = done

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(lambda i: write(i, False), range(n)))
        list(pool.map(lambda i: write(i, True), range(n)))
    return writes


def collect(db: Path, ns: str, expected: int) -> tuple[dict[tuple[str | None, str | None], datetime], int]:
    """What the log holds of the namespace's ConfigMaps: (key, rv) -> recorded_at, and how
    many were attributed to the audited user."""
    with EventLog(db) as log:
        deadline = time.time() + 120
        while True:
            ours = [r for r in log.read(types=["cluster.observed"])
                    if r.event.resource and r.event.resource.startswith(f"ConfigMap/{ns}/")]
            if len(ours) >= expected or time.time() > deadline:
                break
            time.sleep(0.5)
    seen = {(r.event.resource, r.event.revision): r.recorded_at for r in ours}
    return seen, sum(1 for r in ours if r.event.actor == "admin")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    ap.add_argument("--audit-log", default=os.environ.get("GITOPS_AUDIT_LOG"))
    args = ap.parse_args()
    if not args.kubeconfig:
        raise SystemExit("no kubeconfig: run `eval \"$(scripts/local-cluster env)\"` first")
    admin = client(args.kubeconfig)
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    pykube.Namespace(admin, {"metadata": {"name": ns}}).create()
    rv = pykube.ConfigMap.objects(admin, namespace=ns).response["metadata"]["resourceVersion"]
    n = args.objects
    received: list[float] = []
    bare_done = threading.Event()
    threading.Thread(target=bare_watch, args=(args.kubeconfig, ns, rv, 2 * n, received, bare_done),
                     daemon=True).start()
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "log.db"
        config = ClusterSourceConfig(kubeconfig=args.kubeconfig, context="admin", audit_log=args.audit_log or None,
                                     kinds=["ConfigMap"])
        source = ClusterSource(db, config)
        source.start()
        time.sleep(1.0)  # both watches established
        start = time.time()
        writes = write_all(args.kubeconfig, ns, n, args.writers)
        written = time.time()
        seen, by_audit = collect(db, ns, 2 * n)
        source.stop()
        bare_done.wait(60)
    pykube.Namespace(admin, {"metadata": {"name": ns}}).delete()
    lags = sorted(max(0.0, seen[k].timestamp() - t) for k, t in writes.items() if k in seen)
    ours_rate = len(seen) / (max(t.timestamp() for t in seen.values()) - start)
    bare_rate = len(received) / (max(received) - start) if received else 0.0
    print(f"writes: {2 * n} ({n} creates, {n} updates) in {written - start:.1f} s by {args.writers} clients "
          f"= {2 * n / (written - start):,.0f} writes/s")
    if args.audit_log:
        print(f"audit join on: {by_audit} of {len(seen)} changes attributed to the audited user")
    print(f"gitops cluster source: {ours_rate:8,.0f} events/s appended ({len(seen)} events, "
          f"{len(writes) - len(lags)} missing)")
    print(f"bare pykube-ng watch:  {bare_rate:8,.0f} events/s received ({len(received)} events; baseline)")
    print(f"ratio: {ours_rate / bare_rate:.2f}x of the bare watch (target >= 0.8x)")
    print(f"lag from write to log: median {statistics.median(lags) * 1000:.0f} ms, "
          f"p99 {lags[int(0.99 * (len(lags) - 1))] * 1000:.0f} ms (target p99 < 1000 ms)")


if __name__ == "__main__":
    main()
