"""Benchmark: disk per recorded cluster change, all-in (rows and indexes, every table).

On the local control plane: D Deployments (default 500) are created and each changed C
times (default 5: a new image, as a rollout does), while the real cluster source records
them, with the audit log when one is given, into a fresh log. Then the log's pages are
counted by table and index (SQLite's dbstat) and divided by the recorded changes (the
``cluster.observed`` and ``cluster.deleted`` events of those Deployments); each change's own
rows (its event and its audit record, column by column) give the median. ``--generated N``
measures a log of N generated events instead (scripts/bench_replay.py's), per event.
The baseline, in the same run: the very same log with every payload stored whole (as
gitops stored them before packing, gitops/store/pack.py), vacuumed.
Target (issue #32): <= 300 B per recorded change, median, all-in.

    eval "$(scripts/local-cluster env)"; python scripts/bench_disk.py [--deployments 500] [--changes 5]
    python scripts/bench_disk.py --generated 1000000
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from gitops.store import Checkpoint, EventLog

ROW = "length(id) + length(type) + length(source) + coalesce(length(resource), 0) + coalesce(length(actor), 0) " \
      "+ length(effective_at) + length(recorded_at) + coalesce(length(revision), 0) + length(payload) " \
      "+ length(prev_hash) + length(hash) + coalesce(length(packed), 0) + coalesce(length(base), 0) + 8"


def pages(db: Path) -> list[tuple[str, int]]:
    """Bytes on disk by table and index, largest first."""
    with sqlite3.connect(db) as c:
        return [(str(n), int(b)) for n, b in
                c.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")]


def vacuumed(db: Path, name: str) -> Path:
    """A vacuumed copy of the log at ``db``: both sides of the comparison measured alike (an
    index grown in place is some 30% fuller of free space than a rebuilt one)."""
    copy = db.with_name(name)
    with sqlite3.connect(db) as c:
        c.execute("VACUUM INTO ?", (str(copy),))
    return copy


def whole(db: Path) -> Path:
    """A copy of the log at ``db`` with every packed payload stored whole again (the
    baseline), through gitops's own read of each row, then vacuumed."""
    copy = vacuumed(db, "whole.db")
    with EventLog(copy) as log:
        seqs = [r[0] for r in log.conn.execute("SELECT seq FROM events WHERE packed IS NOT NULL")]
        texts = [(log.row(seq)["payload"], seq) for seq in seqs]  # type: ignore[index]
    with sqlite3.connect(copy) as c:
        c.executemany("UPDATE events SET payload = ?, packed = NULL, base = NULL WHERE seq = ?", texts)
    with sqlite3.connect(copy) as c:
        c.execute("VACUUM")
    return copy


def report(db: Path, changes: int, what: str, median_row: float, baseline: tuple[float, float]) -> None:
    written = sum(b for _, b in pages(db))
    print(f"as written: {written / 1e6:.1f} MB, {written / changes:,.0f} B per one (mean); vacuumed, both sides:")
    by = pages(vacuumed(db, "packed.db"))
    total = sum(b for _, b in by)
    print(f"{what}: {changes:,}; the log's pages: {total / 1e6:.1f} MB = {total / changes:,.0f} B per one, "
          f"all-in (mean)")
    events = sum(b for n, b in by if n == "events")
    indexes = sum(b for n, b in by if n.startswith(("events_", "sqlite_autoindex_events")))
    rest = (total - events - indexes) / changes
    print(f"  events table {events / changes:,.0f} B, its {sum(1 for n, _ in by if n.startswith('events_'))} "
          f"indexes {indexes / changes:,.0f} B, the rest (projections, tree) {rest:,.0f} B per one")
    for name, b in by[:8]:
        print(f"    {name:<40} {b / changes:8,.0f} B")
    share = (total - events) / changes
    print(f"median of one's own rows {median_row:,.0f} B, plus the indexes' and projections' share {share:,.0f} B "
          f"= {median_row + share:,.0f} B per one, all-in (median)  [target <= 300 B]")
    print(f"baseline, the same log with its payloads stored whole (same run): {baseline[0]:,.0f} B per one all-in "
          f"(median), {baseline[1]:,.0f} B (mean); packed: {(median_row + share) / baseline[0]:.2f}x, "
          f"{total / changes / baseline[1]:.2f}x")


def measure(db: Path, changes: int, own_rows: str, *params: object) -> tuple[float, float]:
    """(median all-in, mean all-in) per change of the log at ``db``."""
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = [r[0] for r in c.execute(own_rows, params)]
    by = pages(db)
    total = sum(b for _, b in by)
    events = sum(b for n, b in by if n == "events")
    return statistics.median(rows) + (total - events) / changes, total / changes


def cluster(args: argparse.Namespace, d: Path) -> None:
    import pykube

    from gitops.sources.cluster import ClusterSource, ClusterSourceConfig

    if not args.kubeconfig:
        raise SystemExit("no kubeconfig: run `eval \"$(scripts/local-cluster env)\"` first")
    api = pykube.HTTPClient(pykube.KubeConfig.from_file(args.kubeconfig, current_context="admin"))
    ns = f"disk-{uuid.uuid4().hex[:8]}"
    pykube.Namespace(api, {"metadata": {"name": ns}}).create()
    db = d / "log.db"
    if args.audit_log:  # the audit log from here on: not the records of everything the cluster did before
        st = os.stat(args.audit_log)
        with EventLog(db) as log:
            log.append([], checkpoint=Checkpoint(f"audit:{args.audit_log}", {"inode": st.st_ino,
                                                                             "offset": st.st_size}))
    source = ClusterSource(db, ClusterSourceConfig(kubeconfig=args.kubeconfig, context="admin",
                                                   audit_log=args.audit_log or None, kinds=["Deployment.apps"],
                                                   namespaces=[ns]))
    source.start()
    try:
        source.wait_synced(60)
        for version in range(args.changes + 1):
            for i in range(args.deployments):
                name = f"web-{i:04d}"
                body: dict[str, Any] = {
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name, "namespace": ns, "labels": {"app": name, "team": "shop"}},
                    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "web", "image": f"registry.example/shop/web:1.{version}",
                                                 "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}}
                obj = pykube.Deployment(api, body)
                obj.create() if version == 0 else obj.update()
        time.sleep(5)  # the controllers' status writes, and the watch, settle
    finally:
        source.stop()
    pykube.Namespace(api, {"metadata": {"name": ns}}).delete()
    mine = f"Deployment.apps/{ns}/%"
    own_rows = (f"SELECT {ROW} + coalesce((SELECT {ROW.replace('length(', 'length(a.')} FROM events a WHERE a.type = "
                "'audit' AND a.resource = e.resource AND a.revision = e.revision), 0) FROM events e "
                "WHERE e.type = 'cluster.observed' AND e.resource LIKE ?")
    with sqlite3.connect(db) as c:
        changes = c.execute("SELECT count(*) FROM events WHERE type IN ('cluster.observed', 'cluster.deleted') "
                            "AND resource LIKE ?", (mine,)).fetchone()[0]
        rows = [r[0] for r in c.execute(own_rows, (mine,))]
    whole_db = whole(db)
    baseline = measure(whole_db, changes, own_rows, mine)
    report(db, changes, f"{args.deployments} Deployments x {args.changes} changes: recorded changes "
                        f"(with the controllers' own)", statistics.median(rows), baseline)
    reads(db, whole_db)


def reads(db: Path, whole_db: Path) -> None:
    """The state at a past T (half way through the log) against the current-state read, and
    verify, on the packed log and on its whole-stored twin, warmed and alternated, median of 7."""
    times: dict[str, list[float]] = {}
    for _ in range(8):
        for name, path in (("packed", db), ("whole", whole_db)):
            with EventLog(path, create=False) as log:
                mid = log.last_seq() // 2
                for what in ("state at T", "current state"):
                    start = time.perf_counter()
                    n = sum(1 for _ in (log.state_at("actual", until_seq=mid) if what == "state at T"
                                        else log.current("actual")))
                    times.setdefault(f"{name} {what}", []).append(time.perf_counter() - start)
                    assert n
                start = time.perf_counter()
                assert log.verify().ok
                times.setdefault(f"{name} verify", []).append(time.perf_counter() - start)
    med = {k: statistics.median(v[1:]) * 1000 for k, v in times.items()}
    for name in ("packed", "whole"):
        print(f"{name}: state at T {med[f'{name} state at T']:.1f} ms, the current-state read "
              f"{med[f'{name} current state']:.1f} ms: {med[f'{name} state at T'] / med[f'{name} current state']:.2f}x "
              f"[target <= 2x]")
    print(f"state at T, packed against whole: {med['packed state at T'] / med['whole state at T']:.2f}x; verify "
          f"{med['packed verify']:.0f} ms against {med['whole verify']:.0f} ms: "
          f"{med['packed verify'] / med['whole verify']:.2f}x")


def generated(args: argparse.Namespace, d: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_replay import make_event

    db = d / "log.db"
    rng = random.Random(7)
    with EventLog(db) as log:
        for b in range(0, args.generated, 5000):
            log.append([make_event(i, args.generated, 10_000, rng) for i in range(b, min(args.generated, b + 5000))])
        log.wal_idle(600)
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = [r[0] for r in c.execute(f"SELECT {ROW} FROM events")]
    baseline = measure(whole(db), len(rows), f"SELECT {ROW} FROM events")
    report(db, len(rows), f"generated events (bench_replay's mix, {args.generated:,})", statistics.median(rows),
           baseline)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deployments", type=int, default=500)
    ap.add_argument("--changes", type=int, default=5)
    ap.add_argument("--generated", type=int, default=0, help="measure a generated log of this many events instead")
    ap.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    ap.add_argument("--audit-log", default=os.environ.get("GITOPS_AUDIT_LOG"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (generated if args.generated else cluster)(args, Path(tmp))


if __name__ == "__main__":
    main()
