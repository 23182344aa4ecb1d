"""A fleet in one log: two local control planes stand for two clusters, each with its own
``gitops run`` writing one PostgreSQL log. alice edits the app in one, bob in the other;
one ``gitops audit`` names each with the right cluster, checked against each API server's
own audit log; ``--cluster`` keeps one apart, and the log verifies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_fixtures import SCRIPT, Cluster
from tests.gitrepo import GitRepo, configmap, dump

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def second_cluster(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A second local control plane, in a state folder of its own, for this module."""
    if not cluster.local:
        pytest.skip("two clusters need the local control plane's script")
    state = tmp_path_factory.mktemp("second-cluster")
    env = {**os.environ, "GITOPS_CLUSTER_STATE": str(state)}
    res = subprocess.run([str(SCRIPT), "up", "--no-audit-webhook"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    try:
        st = json.loads((state / "state.json").read_text())
        yield Cluster(Path(st["kubeconfig"]), Path(st["audit_log"]), local=True)
    finally:
        subprocess.run([str(SCRIPT), "down"], env=env, capture_output=True)


def kubectl(c: Cluster, user: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["kubectl", "--kubeconfig", str(c.kubeconfig), "--context", user, *args],
                         capture_output=True, text=True, timeout=60)
    if check:
        assert res.returncode == 0, res.stderr
    return res


def wait(what: str, ok: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := ok():
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def gitops(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gitops", "--db", db, *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "200"})


def audit_users(c: Cluster, ns: str, name: str) -> set[str]:
    """Who the API server's own audit log says patched the ConfigMap (not our record)."""
    assert c.audit_log is not None
    users = set()
    for line in c.audit_log.read_text().splitlines():
        rec = json.loads(line)
        ref = rec.get("objectRef") or {}
        if rec.get("verb") == "patch" and ref.get("namespace") == ns and ref.get("name") == name \
                and rec.get("stage") == "ResponseComplete" and rec.get("responseStatus", {}).get("code") == 200:
            users.add(rec["user"]["username"])
    return users


def test_two_clusters_two_runs_one_postgresql_log(cluster: Cluster, second_cluster: Cluster, postgres_db: str,
                                                  tmp_path: Path) -> None:
    ns = f"fleet-{uuid.uuid4().hex[:6]}"
    repo = GitRepo(tmp_path / "repo")
    repo.write("apps/app.yaml", dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                                     configmap("settings", ns, currency="EUR")))
    repo.commit("Add the app", author="Dana Dev <dana@example.com>")
    clusters = {"east": cluster, "west": second_cluster}
    runs: dict[str, subprocess.Popen[str]] = {}
    logs = {}
    try:
        for name, c in clusters.items():
            config = tmp_path / f"{name}.yaml"
            config.write_text(json.dumps({
                "git": {"repo": str(repo.path), "paths": ["apps"]},
                "cluster": {"name": name, "kubeconfig": str(c.kubeconfig), "context": "admin",
                            "audit_log": str(c.audit_log), "audit_wait": 2.0},
                "reconcile": {"instance": f"fleet-{name}", "prune": True, "interval": 30, "debounce": 0.2,
                              "metrics_address": "127.0.0.1:0", "lease": {"namespace": "default"}},
                "integrity": {"key_dir": str(tmp_path / "keys")}}))  # one digest key for the fleet
            logs[name] = (tmp_path / f"{name}.log").open("w")
            runs[name] = subprocess.Popen([sys.executable, "-m", "gitops", "--db", postgres_db, "--config",
                                           str(config), "run"], stdout=logs[name], stderr=subprocess.STDOUT,
                                          text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})

        def value(c: Cluster) -> str | None:
            res = kubectl(c, "admin", "-n", ns, "get", "configmap", "settings", "-o", "json", check=False)
            return json.loads(res.stdout)["data"].get("currency") if res.returncode == 0 else None

        for c in clusters.values():
            wait("the app in each cluster", lambda c=c: value(c) == "EUR")  # type: ignore[misc]
        edits = {"east": ("alice", "GBP"), "west": ("bob", "USD")}
        for name, (user, currency) in edits.items():
            c = clusters[name]
            kubectl(c, "admin", "-n", ns, "create", "rolebinding", f"{user}-edit", "--clusterrole=edit",
                    f"--user={user}")
            wait(f"{user}'s rights", lambda c=c, user=user: kubectl(  # type: ignore[misc]
                c, user, "-n", ns, "auth", "can-i", "patch", "configmaps", check=False).stdout.strip() == "yes")
            kubectl(c, user, "-n", ns, "patch", "configmap", "settings", "-p",
                    json.dumps({"data": {"currency": currency}}))

        def out_of_band() -> list[dict[str, Any]]:
            res = gitops(postgres_db, "audit", "--out-of-band", "-n", ns, "-o", "jsonl")
            return [json.loads(line) for line in res.stdout.splitlines()]

        rows = wait("both edits in the log", lambda: (found := out_of_band()) and len(found) >= 2 and found)
        for c in clusters.values():  # healed in each cluster by its own run
            wait("the self-heal", lambda c=c: value(c) == "EUR")  # type: ignore[misc]
    finally:
        for p in runs.values():
            p.send_signal(signal.SIGTERM)
        codes = {name: p.wait(60) for name, p in runs.items()}
        for f in logs.values():
            f.close()
    assert codes == {"east": 0, "west": 0}, {n: (tmp_path / f"{n}.log").read_text()[-2000:] for n in codes}
    # one audit, each change with its cluster and its user, as each API server recorded them
    assert sorted((r["cluster"], r["actor"], r["how"]) for r in rows) == [("east", "alice", "audit"),
                                                                         ("west", "bob", "audit")]
    assert audit_users(cluster, ns, "settings") >= {"alice"} and "bob" not in audit_users(cluster, ns, "settings")
    assert audit_users(second_cluster, ns, "settings") >= {"bob"} and \
        "alice" not in audit_users(second_cluster, ns, "settings")
    west = gitops(postgres_db, "audit", "--cluster", "west", "-n", ns, "-o", "jsonl")
    west_rows = [json.loads(line) for line in west.stdout.splitlines()]
    assert west_rows and {r["cluster"] for r in west_rows} == {"west"}
    assert "alice" not in {r["actor"] for r in west_rows}
    # each run acted on its own cluster only: its actions name it, and only its instance's
    actions = [json.loads(line) for line in gitops(postgres_db, "log", "--type", "reconcile.action", "-n", ns,
                                                   "-o", "jsonl").stdout.splitlines()]
    assert {a["payload"]["cluster"] for a in actions} == {"cluster:east", "cluster:west"}
    status = json.loads(gitops(postgres_db, "status", "-n", ns, "-o", "json").stdout)
    assert sorted(s["cluster"] for s in status["clusters"]) == ["east", "west"]
    assert all(s["in_sync"] for s in status["clusters"])
    bad = gitops(postgres_db, "status", "--cluster", "north")
    assert bad.returncode == 2 and "it holds: east, west" in bad.stderr
    verified = json.loads(gitops(postgres_db, "--read-only", "verify", "-o", "json").stdout)
    assert verified["ok"] and verified["last_seq"] > 20


def test_a_name_that_now_reaches_another_cluster_is_refused_before_anything_is_written(
        cluster: Cluster, second_cluster: Cluster, tmp_path: Path) -> None:
    """The log knows east's history under cluster:east. A kubeconfig or context that now
    points at another cluster under the same name would record every east object as deleted
    and apply Git to the wrong cluster as if it were east: every command that reaches a
    cluster refuses it, in one line, and neither the log nor that cluster is changed."""
    ns = f"who-{uuid.uuid4().hex[:6]}"
    repo = GitRepo(tmp_path / "repo")
    repo.write("app.yaml", dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                                configmap("settings", ns, currency="EUR")))
    repo.commit("Add the app")
    db = str(tmp_path / "g.db")
    east = ["--kubeconfig", str(cluster.kubeconfig), "--context", "admin", "--cluster-name", "east"]
    other = ["--kubeconfig", str(second_cluster.kubeconfig), "--context", "admin", "--cluster-name", "east"]
    first = gitops(db, "reconcile", "--repo", str(repo.path), "--instance", ns, *east)
    assert first.returncode == 0, first.stderr
    events = len(gitops(db, "--read-only", "log", "-o", "jsonl").stdout.splitlines())
    for args in (["reconcile", "--repo", str(repo.path), "--instance", ns, *other],
                 ["ingest", "cluster", *other]):
        res = gitops(db, *args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "is not the cluster this log records as " \
            "cluster:east" in lines[0] and "Traceback" not in res.stderr, res.stderr
    assert len(gitops(db, "--read-only", "log", "-o", "jsonl").stdout.splitlines()) == events
    assert kubectl(second_cluster, "admin", "get", "namespace", ns, check=False).returncode != 0  # nothing applied
    assert kubectl(cluster, "admin", "-n", ns, "get", "configmap", "settings").returncode == 0
    again = gitops(db, "ingest", "cluster", *east)  # east itself is still east
    assert again.returncode == 0, again.stderr
    named = gitops(db, "ingest", "cluster", "--kubeconfig", str(second_cluster.kubeconfig), "--context", "admin",
                   "--cluster-name", "west")  # the other cluster under a name of its own
    assert named.returncode == 0, named.stderr
    assert json.loads(gitops(db, "--read-only", "verify", "-o", "json").stdout)["ok"]
