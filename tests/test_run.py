"""``gitops run`` as users run it: a real process (or two) following a real repository and the
real control plane, stopped by signals or killed; kubectl as alice for the edits by hand."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.events.models import ReconcileAction, ReconcileLeader
from gitops.store import EventLog
from tests.cluster_fixtures import Cluster, grant, kubectl, wait_until
from tests.gitrepo import GitRepo, configmap

pytestmark = pytest.mark.cluster


class Running:
    def __init__(self, proc: subprocess.Popen[str], log: Path) -> None:
        self.proc, self.log = proc, log

    def output(self) -> str:
        return self.log.read_text()

    @property
    def url(self) -> str:
        m = re.search(r"on (http://[\d.]+:\d+)", self.output())
        assert m, self.output()
        return m.group(1)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


def _config(tmp_path: Path, cluster: Cluster, namespace: str, repo: GitRepo, *,
            integrity: dict[str, Any] | None = None, **reconcile: Any) -> Path:
    config: dict[str, Any] = {
        "git": {"repo": str(repo.path)},
        "cluster": {"kubeconfig": str(cluster.kubeconfig), "context": "admin",
                    "audit_log": str(cluster.audit_log) if cluster.audit_log else None, "audit_wait": 2.0},
        "reconcile": {"instance": namespace, "interval": 30, "debounce": 0.2, "metrics_address": "127.0.0.1:0",
                      "lease": {"namespace": namespace, "duration": 3, "renew": 0.5}, **reconcile},
    }
    if integrity is not None:
        config["integrity"] = integrity
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def gitops_run(db: Path, config: Path, tmp_path: Path, name: str = "run") -> Iterator[Running]:
    log = tmp_path / f"{name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gitops", "--db", str(db), "--config", str(config), "run"],
                                stdout=out, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    running = Running(proc, log)
    try:
        wait_until(lambda: "Ctrl-C or SIGTERM stops" in running.output() or proc.poll() is not None,
                   timeout=90, what="gitops run to start")
        assert proc.poll() is None, running.output()
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _data(cluster: Cluster, ns: str, name: str) -> Any:
    res = kubectl(cluster, "admin", "-n", ns, "get", "configmap", name, "-o", "json", check=False)
    return json.loads(res.stdout)["data"] if res.returncode == 0 else None


def _actions(db: Path) -> list[ReconcileAction]:
    with EventLog(db) as log:
        return [r.event for r in log.read(types=["reconcile.action"]) if isinstance(r.event, ReconcileAction)]


def test_a_running_service_applies_commits_heals_drift_serves_probes_and_stops_cleanly(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    if cluster.audit_log is None:
        pytest.skip("naming alice needs the API server's audit log")
    grant(cluster, namespace, "alice")
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", namespace, k="1"))
    repo.commit("a")
    db = tmp_path / "g.db"
    with gitops_run(db, _config(tmp_path, cluster, namespace, repo), tmp_path) as run:
        # /readyz from the start: 200 only once the first pass applied, never before the lease is tried
        answers: list[tuple[int, str]] = []
        deadline = time.monotonic() + 90
        while not answers or answers[-1][0] != 200:
            answers.append(run.get("/readyz"))
            assert time.monotonic() < deadline and run.proc.poll() is None, (answers[-3:], run.output())
        assert answers[-1] == (200, "ok\n") and _data(cluster, namespace, "a") == {"k": "1"}, answers[-3:]
        repo.write("a.yaml", configmap("a", namespace, k="2"))
        repo.commit("a changed")  # no command: the service sees the commit and applies it
        wait_until(lambda: _data(cluster, namespace, "a") == {"k": "2"}, what="the new commit applied")
        kubectl(cluster, "alice", "-n", namespace, "patch", "configmap", "a", "-p", '{"data":{"k":"alice"}}')
        wait_until(lambda: _data(cluster, namespace, "a") == {"k": "2"}, what="alice's edit healed")
        assert run.get("/healthz")[0] == 200
        wait_until(lambda: run.get("/readyz")[0] == 200, what="readiness")
        status, metrics = run.get("/metrics")
        assert status == 200 and 'gitops_reconcile_passes_total{mode="apply",outcome="succeeded"}' in metrics
        assert "gitops_leader 1.0" in metrics
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(60) == 0, run.output()
    assert "stopped; everything seen was written" in run.output()
    with EventLog(db) as log:
        assert log.verify().ok
        opened = [r.event for r in log.read(types=["drift.opened"])]
        closed = [r.event for r in log.read(types=["drift.closed"])]
        leaders = [r.event for r in log.read(types=["reconcile.leader"]) if isinstance(r.event, ReconcileLeader)]
    assert [(e.resource, e.actor) for e in opened] == [(f"ConfigMap/{namespace}/a", "alice")]
    with EventLog(db) as log:
        causes = [next(log.read(since_seq=(e.payload.cause_seq or 1) - 1, limit=1)) for e in closed]  # type: ignore[union-attr]
    assert [e.payload.how for e in closed] == ["reconciled"], [  # type: ignore[union-attr]
        (c.seq, c.event.type, c.event.actor, getattr(c.event.payload, "attribution", None),
         getattr(c.event.payload, "change", None)) for c in causes]
    assert [e.payload.acquired for e in leaders] == [True, False]  # released on SIGTERM
    lease = json.loads(kubectl(cluster, "admin", "-n", namespace, "get", "lease", f"gitops-{namespace}", "-o",
                               "json").stdout)
    assert not lease["spec"].get("holderIdentity")


def test_a_running_service_signs_and_publishes_checkpoints_as_events_come(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", namespace, k="1"))
    repo.commit("a")
    db, published = tmp_path / "g.db", tmp_path / "published"
    integrity = {"key_dir": str(tmp_path / "keys"), "publish_dir": str(published),
                 "checkpoint_every": {"events": 3, "minutes": 0}}
    config = _config(tmp_path, cluster, namespace, repo, integrity=integrity)
    keys = subprocess.run([sys.executable, "-m", "gitops", "--config", str(config), "keys", "init"],
                          capture_output=True, text=True)
    assert keys.returncode == 0, keys.stderr

    def size() -> int:
        f = published / "checkpoint"
        return int(f.read_text().splitlines()[1]) if f.exists() else 0

    with gitops_run(db, config, tmp_path) as run:
        wait_until(lambda: size() > 0, what="a first checkpoint")
        first = size()
        repo.write("b.yaml", configmap("b", namespace, k="1"))
        repo.commit("b")
        wait_until(lambda: _data(cluster, namespace, "b") == {"k": "1"}, what="the new commit applied")
        wait_until(lambda: size() > first, what="a checkpoint of the events since")
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(60) == 0, run.output()
    assert "signed and published to" in run.output()
    res = subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), "--config", str(config), "verify",
                          "--checkpoint", str(published / "checkpoint")], capture_output=True, text=True)
    assert res.returncode == 0 and "consistent: the log" in res.stdout, res.stderr
    assert len(list((published / "checkpoints").iterdir())) >= 2  # each one kept, named by its size


def test_two_services_one_applies_and_the_standby_takes_over_when_the_leader_is_killed(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", namespace, k="1"))
    repo.commit("a")
    db = tmp_path / "g.db"
    config = _config(tmp_path, cluster, namespace, repo)
    with gitops_run(db, config, tmp_path, "one") as one:
        wait_until(lambda: _data(cluster, namespace, "a") == {"k": "1"}, what="the first commit applied")
        with gitops_run(db, config, tmp_path, "two") as two:
            time.sleep(2)
            assert "leading" in one.output() and "leading" not in two.output()
            holder = re.search(r"lease (\S+) is held by (\S+)", two.get("/readyz")[1])
            status, body = two.get("/readyz")
            assert status == 200 and body.startswith("ok: standby") and holder is not None, body
            assert f"standby: {holder.group(2)} holds the lease {namespace}/gitops-{namespace}" in two.output()
            assert "gitops-reconcile" not in holder.group(2) and str(one.proc.pid) in holder.group(2)
            one.proc.kill()  # kill -9: no release, the lease must expire
            one.proc.wait(10)
            repo.write("a.yaml", configmap("a", namespace, k="2"))
            repo.commit("a changed while the leader is dead")
            started = time.monotonic()
            wait_until(lambda: "leading" in two.output(), timeout=30, what="the standby to lead")
            took = time.monotonic() - started
            wait_until(lambda: _data(cluster, namespace, "a") == {"k": "2"}, what="the standby to apply")
            assert took < 3 + 2  # the lease duration, and a renew period or two
    applied = [(a.resource, a.payload.commit) for a in _actions(db) if a.payload.result == "succeeded"]
    assert len(applied) == len(set(applied)) == 2  # each commit applied once, by one process
    with EventLog(db) as log:
        assert log.verify().ok
        leaders = [r.event.payload for r in log.read(types=["reconcile.leader"])]
    assert [p.acquired for p in leaders][:2] == [True, True]  # type: ignore[union-attr]
    assert leaders[1].previous == leaders[0].identity  # type: ignore[union-attr]


def _reset_mid_request(url: str) -> None:
    """Open a connection to ``url``'s server, send half a request line, and reset it (a
    client or load balancer that gives up): the server's read of the request fails."""
    import socket
    import struct
    import time
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as s:
        s.sendall(b"GET /hea")
        time.sleep(0.2)  # the server's thread is reading the line
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST, not FIN
    time.sleep(0.5)  # its thread meets the reset


def test_readiness_is_503_while_the_api_server_cannot_be_reached(cluster: Cluster, namespace: str,
                                                                 tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", namespace))
    repo.commit("a")
    with gitops_run(tmp_path / "g.db", _config(tmp_path, cluster, namespace, repo), tmp_path) as run:
        wait_until(lambda: run.get("/readyz")[0] == 200, what="readiness")
        _reset_mid_request(run.url)  # a client that goes away: no traceback in the service's output
        assert run.get("/healthz")[0] == 200 and "Traceback" not in run.output(), run.output()
        cluster.stop_apiserver()
        try:
            wait_until(lambda: run.get("/readyz")[0] == 503, timeout=60, what="/readyz to say not ready")
            assert run.get("/readyz")[1].strip() == "not ready: the Kubernetes API server cannot be reached"
            assert run.get("/healthz")[0] == 200  # alive, and waiting for the API: no reason to restart it
        finally:
            cluster.start_apiserver()
        wait_until(lambda: run.get("/readyz")[0] == 200, timeout=120, what="readiness after the outage")


def test_two_applications_of_one_repository_under_their_own_paths_never_undo_each_other(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """A monorepo: two instances, each reading its own path of one branch, run beside each
    other on one log. Each reading is a source of its own: neither pass re-reads the branch
    the other's way (a git.reconfigured at every pass, each waking the other's reconciler,
    whose plan could then prune what the other's reading leaves out)."""
    repo = GitRepo(tmp_path / "repo")
    for app in ("a", "b"):
        repo.write(f"apps/{app}/cm.yaml", configmap(app, namespace, k="1"))
    repo.commit("two apps")
    db = tmp_path / "g.db"
    configs = {}
    for app in ("a", "b"):
        configs[app] = _config(tmp_path, cluster, namespace, repo, instance=f"{namespace}-{app}", prune=True)
        config = yaml.safe_load(configs[app].read_text())
        configs[app].write_text(yaml.safe_dump({**config, "git": {**config["git"], "paths": [f"apps/{app}"]}}))
    with gitops_run(db, configs["a"], tmp_path, "a") as a, gitops_run(db, configs["b"], tmp_path, "b") as b:
        wait_until(lambda: _data(cluster, namespace, "a") == _data(cluster, namespace, "b") == {"k": "1"},
                   timeout=90, what="both applications applied")
        repo.write("apps/a/cm.yaml", configmap("a", namespace, k="2"))
        repo.commit("a changed")
        wait_until(lambda: _data(cluster, namespace, "a") == {"k": "2"}, timeout=90, what="a's commit applied")
        for run in (a, b):
            run.proc.send_signal(signal.SIGTERM)
            assert run.proc.wait(60) == 0, run.output()
    owners = {app: json.loads(kubectl(cluster, "admin", "-n", namespace, "get", "configmap", app, "-o", "json")
                              .stdout)["metadata"]["labels"] for app in ("a", "b")}
    assert {app: [v for k, v in labels.items() if "instance" in k] for app, labels in owners.items()} == {
        "a": [f"{namespace}-a"], "b": [f"{namespace}-b"]}
    with EventLog(db) as log:
        assert list(log.read(types=["git.reconfigured"])) == []
    assert {(e.resource, e.payload.action, e.payload.result) for e in _actions(db)} == {
        (f"ConfigMap/{namespace}/a", "create", "succeeded"), (f"ConfigMap/{namespace}/a", "update", "succeeded"),
        (f"ConfigMap/{namespace}/b", "create", "succeeded")}  # nothing pruned, nothing refused
    for app in ("a", "b"):
        res = subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), "--config", str(configs[app]), "status",
                              "-o", "json"], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        status = json.loads(res.stdout)  # each application's own objects, each in sync
        assert [(o["resource"], o["status"]) for o in status["objects"]] == [(f"ConfigMap/{namespace}/{app}",
                                                                              "in-sync")]
