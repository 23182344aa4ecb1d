"""Benchmark: the reconciler on the local control plane.

1. **first sync**: 1,000 new ConfigMaps from a repository, one ``gitops reconcile``-style pass
   (Git ingest, cluster list, plan, 1,000 server-side applies, records) against, in the
   same run, a bare loop of the same 1,000 server-side applies through pykube-ng into
   another namespace (the API server's own limit). Target: within 1.5x.
2. **in-sync pass**: the same 1,000 objects in sync, a pass again (with the cluster list it
   starts with, and without it as the running service does), against a bare list of the
   same objects through pykube-ng (every ConfigMap and Namespace: what the pass lists; the
   baseline namespace of step 1 is deleted first); API writes counted from the API
   server's audit log.
   Target: within 3x of the bare list, zero writes.
3. **commit-to-applied**: ``gitops run`` following the repository; 20 one-object commits;
   from each commit to the object's resourceVersion changing (median, p95). Target: p95 < 1 s.

    eval "$(scripts/local-cluster env)"; python scripts/bench_reconcile.py [--objects 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pykube
import yaml

from gitops.diff import DiffSettings
from gitops.reconcile import ReconcileSettings
from gitops.service.run import build_reconciler
from gitops.service.watch import WatchService
from gitops.sources.cluster import ClusterSourceConfig
from gitops.sources.git import GitSourceConfig


class _Quiet:
    def git_pass(self, *a: Any, **k: Any) -> None: ...

    def git_error(self, *a: Any, **k: Any) -> None: ...

    def watching(self, *a: Any, **k: Any) -> None: ...


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def cm(name: str, ns: str, value: str = "1") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
            "data": {"k": value, "payload": "x" * 200}}


def audit_writes(audit: Path, since: int, ns: str) -> int:
    n = 0
    with audit.open("rb") as f:
        f.seek(since)
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("stage") == "ResponseComplete" and rec.get("verb") in ("create", "update", "patch", "delete") \
                    and (rec.get("objectRef") or {}).get("namespace") == ns:
                n += 1
    return n


class Bench:
    def __init__(self, objects: int) -> None:
        self.objects = objects
        self.kubeconfig = os.environ["KUBECONFIG"]
        self.audit = Path(os.environ["GITOPS_AUDIT_LOG"])
        self.api = pykube.HTTPClient(pykube.KubeConfig.from_file(self.kubeconfig, current_context="admin"))
        tag = uuid.uuid4().hex[:6]
        self.ns, self.bare_ns = f"bench-rec-{tag}", f"bench-bare-{tag}"
        for n in (self.ns, self.bare_ns):
            pykube.Namespace(self.api, {"metadata": {"name": n}}).create()
        tmp = Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
        self.repo, self.db, self.config_path = tmp / "repo", tmp / "g.db", tmp / "config.yaml"
        self.repo.mkdir()
        git(self.repo, "init", "-q", "-b", "main")
        git(self.repo, "config", "user.email", "bench@example.com")
        git(self.repo, "config", "user.name", "Bench")
        for f in range(0, objects, PER_FILE):
            self.write_file(f // PER_FILE)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-qm", "objects")
        self.cluster = ClusterSourceConfig(kubeconfig=self.kubeconfig, context="admin")
        settings = ReconcileSettings(instance=f"bench-{tag}", lease={"enabled": False})
        self.service = WatchService.build(self.db, git=GitSourceConfig(repo=str(self.repo)), cluster=self.cluster,
                                          redaction=(), reporter=_Quiet())
        self.reconciler, _ = build_reconciler(self.db, self.service, settings, diff=DiffSettings(), redaction=(),
                                              cluster=self.cluster)
        self.instance = settings.instance

    def write_file(self, index: int, first_value: str = "1") -> None:
        start = index * PER_FILE
        docs = [cm(f"o{i:05d}", self.ns, first_value if i == start else "1")
                for i in range(start, min(start + PER_FILE, self.objects))]
        (self.repo / f"f{index:03d}.yaml").write_text(yaml.safe_dump_all(docs))

    def ingest(self) -> None:
        assert self.service.git is not None and self.service.cluster is not None
        self.service.git.run()
        self.service.cluster.ingest_once()

    def first_sync(self) -> None:
        t = time.perf_counter()
        for i in range(self.objects):
            r = self.api.patch(url=f"configmaps/o{i:05d}", namespace=self.bare_ns, version="v1",
                               data=json.dumps(cm(f"o{i:05d}", self.bare_ns)),
                               headers={"Content-Type": "application/apply-patch+yaml"},
                               params={"fieldManager": "bench", "force": "true"})
            r.raise_for_status()
        bare = time.perf_counter() - t
        t = time.perf_counter()
        first = self.reconciler.run_pass(ingest=self.ingest)
        ours = time.perf_counter() - t
        assert first.created == self.objects and not first.failed, (first.created, first.errors[:3])
        print(f"first sync of {self.objects}: {ours:.2f}s; bare SSA loop {bare:.2f}s; "
              f"ratio {ours / bare:.2f}x (target <= 1.5x)")

    def in_sync(self) -> None:
        # the baseline's namespace goes first, so that the cluster holds these objects and
        # (nearly) nothing else: what a pass lists (every ConfigMap and Namespace) and the
        # bare list below are the same objects
        pykube.Namespace(self.api, {"metadata": {"name": self.bare_ns}}).delete()
        while list(pykube.ConfigMap.objects(self.api, namespace=self.bare_ns)):
            time.sleep(0.5)
        time.sleep(1.5)
        mark = self.audit.stat().st_size
        lists, with_ingest, without = [], [], []
        for _ in range(5):
            t = time.perf_counter()
            items = list(pykube.ConfigMap.objects(self.api, namespace=pykube.all))
            namespaces = list(pykube.Namespace.objects(self.api))
            lists.append(time.perf_counter() - t)
            assert len(items) >= self.objects and namespaces
            t = time.perf_counter()
            p = self.reconciler.run_pass(ingest=self.ingest)
            with_ingest.append(time.perf_counter() - t)
            assert p.plan.unchanged == self.objects and not p.plan.actions, p.plan.actions[:3]
            t = time.perf_counter()
            self.reconciler.run_pass()
            without.append(time.perf_counter() - t)
        self.api.post(url="configmaps", namespace=self.ns, version="v1",
                      data=json.dumps({"metadata": {"name": "marker"}})).raise_for_status()
        time.sleep(1.5)  # the audit log is written asynchronously; the marker bounds it
        writes = audit_writes(self.audit, mark, self.ns) - 1
        bl, wi, wo = statistics.median(lists), statistics.median(with_ingest), statistics.median(without)
        print(f"in-sync pass of {self.objects}: {wi * 1000:.0f} ms with its cluster list, {wo * 1000:.0f} ms from "
              f"the log alone (as gitops run); bare list {bl * 1000:.0f} ms; ratio {wi / bl:.2f}x with the list, "
              f"{wo / bl:.2f}x without (target <= 3x); API writes {writes} (target 0)")
        self.reconciler.log.close()
        self.service.close()

    def commit_to_applied(self, commits: int) -> None:
        self.config_path.write_text(yaml.safe_dump({
            "git": {"repo": str(self.repo)}, "cluster": {"kubeconfig": self.kubeconfig, "context": "admin"},
            "reconcile": {"instance": self.instance, "interval": 300, "debounce": 0.05, "metrics_address": "",
                          "lease": {"enabled": False}}}))
        proc = subprocess.Popen([sys.executable, "-m", "gitops", "--db", str(self.db), "--config",
                                 str(self.config_path), "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        assert proc.stderr is not None
        for line in proc.stderr:
            if "Ctrl-C or SIGTERM stops" in line:
                break
        latencies = []
        target = pykube.ConfigMap.objects(self.api, namespace=self.ns).get(name="o00000")
        for n in range(commits):
            before = target.obj["metadata"]["resourceVersion"]
            self.write_file(0, f"v{n}")
            git(self.repo, "commit", "-qam", f"change {n}")
            t = time.perf_counter()
            while True:
                target.reload()
                if target.obj["metadata"]["resourceVersion"] != before:
                    break
                if time.perf_counter() - t > 30:
                    raise SystemExit("a commit was not applied within 30 s")
                time.sleep(0.005)
            latencies.append(time.perf_counter() - t)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        latencies.sort()
        p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
        print(f"commit-to-applied over {commits} commits (gitops run): median "
              f"{statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms (target p95 < 1 s)")

    def close(self) -> None:
        for n in (self.ns, self.bare_ns):
            ns = pykube.Namespace(self.api, {"metadata": {"name": n}})
            if ns.exists():
                ns.delete()


PER_FILE = 100


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=1000)
    ap.add_argument("--commits", type=int, default=20)
    args = ap.parse_args()
    bench = Bench(args.objects)
    try:
        bench.first_sync()
        bench.in_sync()
        bench.commit_to_applied(args.commits)
    finally:
        bench.close()


if __name__ == "__main__":
    main()
