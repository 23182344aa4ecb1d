"""Benchmark: the state at any past moment, against reading the current state.

Builds a log of N events (default 1,000,000) over M objects (default 10,000) spread across
30 simulated days, through the real ``append``: desired.applied/removed from two Git
sources and cluster.observed/deleted, their valid times mostly in order, with a share
back-filled late (recorded after later ones). Then, in the same run:
- baseline: reading the current state of both sides (the current-state table);
- ``desired_at``, ``actual_at`` and a whole-cluster ``diff_at`` at 20 random valid times;
- a full rebuild of the projection tables from the log (events/s);
and prints medians, the ratio of state-at-T to the current-state read, and the process's
peak RSS. Targets: state at any T within 2x of reading the current state; peak RSS under
200 MB.

    python scripts/bench_replay.py [--events 1000000] [--objects 10000] [--snapshot-every 50000]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gitops.events.models import (
    AnyEvent,
    ClusterDeleted,
    ClusterDeletedPayload,
    ClusterObserved,
    ClusterObservedPayload,
    DesiredApplied,
    DesiredAppliedPayload,
    DesiredRemoved,
    DesiredRemovedPayload,
    EventSource,
)
from gitops.projections import Moment, actual_at, desired_at
from gitops.query import diff_at
from gitops.store import EventLog

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 30
ORIGINS = ("git:/repo#main", "git:/repo#staging")


def make_event(i: int, n: int, objects: int, rng: random.Random) -> AnyEvent:
    obj = rng.randrange(objects)
    key = f"ConfigMap/team-{obj % 50}/cm-{obj:05d}"
    at = T0 + timedelta(seconds=DAYS * 86400 * i / n)
    if rng.random() < 0.02:  # a back-fill: recorded now, took effect days ago
        at -= timedelta(days=rng.uniform(0, 5))
    manifest = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": f"cm-{obj:05d}", "namespace": f"team-{obj % 50}", "labels": {"app": "x"}},
                "data": {"version": str(i), "mode": "production"}}
    roll = rng.random()
    if roll < 0.45:
        return DesiredApplied(id=f"e{i}", source=EventSource.GIT, resource=key, effective_at=at, revision="c",
                              payload=DesiredAppliedPayload(manifest=manifest, commit="c", path="p.yaml",
                                                            document_index=0, origin=ORIGINS[obj % 2]))
    if roll < 0.5:
        return DesiredRemoved(id=f"e{i}", source=EventSource.GIT, resource=key, effective_at=at, revision="c",
                              payload=DesiredRemovedPayload(commit="c", origin=ORIGINS[obj % 2]))
    if roll < 0.95:
        return ClusterObserved(id=f"e{i}", source=EventSource.CLUSTER, resource=key, effective_at=at,
                               revision=str(i), payload=ClusterObservedPayload(
                                   manifest=manifest, resource_version=str(i), change="modified", origin="cluster:x"))
    return ClusterDeleted(id=f"e{i}", source=EventSource.CLUSTER, resource=key, effective_at=at, revision=str(i),
                          payload=ClusterDeletedPayload(resource_version=str(i), origin="cluster:x"))


def timed(f: object) -> float:
    start = time.perf_counter()
    f()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--objects", type=int, default=10_000)
    ap.add_argument("--snapshot-every", type=int, default=50_000)
    ap.add_argument("--times", type=int, default=20)
    args = ap.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as d, EventLog(Path(d) / "log.db", snapshot_every=args.snapshot_every) as log:
        start = time.perf_counter()
        for b in range(0, args.events, 1000):
            log.append([make_event(i, args.events, args.objects, rng) for i in range(b, min(args.events, b + 1000))])
        build_s = time.perf_counter() - start
        moments = sorted(T0 + timedelta(seconds=rng.uniform(0, DAYS * 86400)) for _ in range(args.times))

        def read_current() -> object:
            return list(log.current("desired")), list(log.current("actual"))

        read_current()  # both warmed once (the page cache), untimed
        desired_at(log, Moment(moments[0]))
        actual_at(log, Moment(moments[0]))
        # then the baseline and each state at T alternate, so that the machine's noise falls on both alike
        current: list[float] = []
        both: list[float] = []
        for m in moments:
            current.append(timed(read_current))
            both.append(timed(lambda m=m: (desired_at(log, Moment(m)), actual_at(log, Moment(m)))))
        baseline = statistics.median(current)
        desired = [timed(lambda m=m: desired_at(log, Moment(m))) for m in moments]
        actual = [timed(lambda m=m: actual_at(log, Moment(m))) for m in moments]
        diffs = [timed(lambda m=m: diff_at(log, Moment(m))) for m in moments]
        rebuild_s = timed(log.rebuild_projections)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"log: {args.events:,} events over {args.objects:,} objects in {DAYS} days, built in {build_s:.1f} s; "
          f"snapshots every {args.snapshot_every:,} events")
    print(f"baseline, the current state of both sides (table read), warmed, alternating with the states at T: "
          f"median {baseline * 1000:.0f} ms")
    print(f"desired_at(T), {args.times} random T: median {statistics.median(desired) * 1000:.0f} ms, "
          f"max {max(desired) * 1000:.0f} ms")
    print(f"actual_at(T): median {statistics.median(actual) * 1000:.0f} ms, max {max(actual) * 1000:.0f} ms")
    print(f"whole-cluster diff at T: median {statistics.median(diffs) * 1000:.0f} ms, max {max(diffs) * 1000:.0f} ms")
    print(f"full projection rebuild: {rebuild_s:.1f} s, {args.events / rebuild_s:,.0f} events/s")
    print(f"peak RSS: {rss_mb:.0f} MB (target < 200 MB)")
    print(f"ratio: both states at T take {statistics.median(both) / baseline:.2f}x the current-state read "
          "(median; target <= 2x)")


if __name__ == "__main__":
    main()
