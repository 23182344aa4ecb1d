"""The audit webhook in a real cluster's place: the local control plane posts its audit
events to ``gitops run --audit-webhook``, which has no audit log file to read, and still
names alice behind her kubectl edit. The claim is checked against the API server's own
audit log file: the record our log joined the change to is the one of her request."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from gitops.events import AuditRecorded, ClusterDeleted, ClusterObserved, ReconcileAction
from gitops.store import EventLog
from tests.cli_helpers import gitops
from tests.cluster_fixtures import Cluster, grant, kubectl, wait_until
from tests.gitrepo import GitRepo, configmap
from tests.test_run import gitops_run

pytestmark = pytest.mark.cluster


def _records(audit_log: Path, namespace: str, user: str) -> list[dict[str, Any]]:
    """The API server's own records of ``user``'s completed writes in ``namespace``: whole lines only."""
    text = audit_log.read_text()
    lines = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
    found = []
    for line in lines:
        rec = json.loads(line)
        ref = rec.get("objectRef") or {}
        if rec.get("stage") == "ResponseComplete" and rec["user"]["username"] == user \
                and ref.get("namespace") == namespace and rec["verb"] in ("patch", "update"):
            found.append(rec)
    return found


def test_the_api_server_posts_to_the_webhook_and_alice_is_named_without_the_file(
        cluster: Cluster, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if cluster.audit_webhook is None or cluster.audit_log is None:
        pytest.skip("needs the local control plane's audit webhook (scripts/local-cluster up)")
    monkeypatch.delenv("GITOPS_AUDIT_LOG", raising=False)
    grant(cluster, namespace, "alice")
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", namespace, k="1"))
    repo.commit("a")
    hook = cluster.audit_webhook
    config, db = _webhook_config(cluster, namespace, repo, tmp_path, interval=30), tmp_path / "g.db"
    with gitops_run(db, config, tmp_path) as run:
        assert f"its audit webhook on https://{hook['address']}" in run.output()
        wait_until(lambda: run.get("/metrics")[1].count('sync="in-sync"} 1.0') >= 1, timeout=90,
                   what="the first pass")
        kubectl(cluster, "alice", "-n", namespace, "patch", "configmap", "a", "-p", '{"data":{"k":"2"}}')

        def alices_change() -> ClusterObserved | None:
            with EventLog(db) as log:
                for r in log.read(types=["cluster.observed"], resource=f"ConfigMap/{namespace}/a"):
                    if isinstance(r.event, ClusterObserved) and (r.event.payload.manifest.get("data") or {}) \
                            .get("k") == "2":
                        return r.event
            return None

        seen = wait_until(alices_change, timeout=60, what="alice's change in the log")
        # a request without credentials is refused and counted, and records nothing
        stranger = requests.post(f"https://{hook['address']}/audit", data=b'{"kind":"EventList","items":[]}',
                                 verify=hook["client_ca_file"], timeout=10)
        assert stranger.status_code == 401
        # and a connection that speaks no TLS (a port scan, a load balancer's TCP check) is dropped, counted
        host, port = hook["address"].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as plain:
            plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
            plain.recv(1024)  # the server ends the failed handshake
        metrics = wait_until(lambda: (t := run.get("/metrics")[1]) and
                             'gitops_audit_webhook_requests_total{code="401"} 1.0' in t and
                             "gitops_audit_webhook_dropped_connections_total 1.0" in t and t, timeout=30,
                             what="the refusal and the dropped connection counted")
        assert "Traceback" not in run.output()
    assert re.search(r'gitops_audit_webhook_requests_total\{code="200"\} [1-9]', metrics)
    assert (seen.actor, seen.payload.attribution) == ("alice", "audit")
    truth = _records(cluster.audit_log, namespace, "alice")
    assert [r["auditID"] for r in truth] == [seen.payload.audit_id]  # her request, as the API server recorded it
    with EventLog(db) as log:
        assert not log.checkpoints("audit:")  # no audit log file was read
        # (a batch the API server retries may bring alice's records of another test's namespace: not these)
        audit = [r.event for r in log.read(types=["audit"], actor="alice", resource=f"ConfigMap/{namespace}/a")
                 if isinstance(r.event, AuditRecorded)]
    assert [e.payload.audit_id for e in audit] == [seen.payload.audit_id]


def test_a_recreated_object_is_recorded_in_the_order_the_cluster_made_it(
        cluster: Cluster, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch's writer holds each change up to audit_wait for its audit record (the
    webhook's batches come up to a second late); a pass that recreated an object appended
    the new incarnation first and the deletion of the old one after it, so the log said the
    object was gone: status called it missing, drift was opened, and every later pass failed
    to "create" it. Now the pass leaves its observations to the watch. Checked against the
    API server: the uid the log holds as current is the one kubectl shows."""
    if cluster.audit_webhook is None:
        pytest.skip("needs the local control plane's audit webhook (scripts/local-cluster up)")
    monkeypatch.delenv("GITOPS_AUDIT_LOG", raising=False)
    key = f"ConfigMap/{namespace}/im"

    def immutable(value: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "immutable": True, "data": {"k": value},
                "metadata": {"name": "im", "namespace": namespace, "annotations": {"gitops.dev/force": "enabled"}}}

    def live() -> tuple[str, str]:
        obj = json.loads(kubectl(cluster, "admin", "-n", namespace, "get", "configmap", "im", "-o", "json").stdout)
        return obj["metadata"]["uid"], obj["data"]["k"]

    repo = GitRepo(tmp_path / "repo")
    repo.write("im.yaml", immutable("1"))
    repo.commit("an immutable ConfigMap")
    config, db = _webhook_config(cluster, namespace, repo, tmp_path, interval=2), tmp_path / "g.db"

    def recorded() -> tuple[list[tuple[int, str, str | None]], list[str]]:
        """The log's versions of the object (seq, type, uid), and the pass's applies of it."""
        rows: list[tuple[int, str, str | None]] = []
        actions: list[str] = []
        with EventLog(db) as log:
            for r in log.read(types=["cluster.observed", "cluster.deleted", "reconcile.action"], resource=key):
                e = r.event
                if isinstance(e, ClusterObserved):
                    rows.append((r.seq, e.type, e.payload.manifest["metadata"]["uid"]))
                elif isinstance(e, ClusterDeleted):
                    rows.append((r.seq, e.type, e.payload.uid))
                elif isinstance(e, ReconcileAction) and e.payload.result == "succeeded":
                    actions.append(e.payload.action)
        return rows, actions

    with gitops_run(db, config, tmp_path) as run:
        wait_until(lambda: _exists_in_log(db, key), timeout=90, what="the first pass")
        first_uid, _ = wait_until(lambda: (got := live()) and got, what="the ConfigMap")
        repo.write("im.yaml", immutable("2"))
        repo.commit("a new value: immutable, so recreated")
        wait_until(lambda: live()[1] == "2", timeout=60, what="the new incarnation")
        new_uid = live()[0]
        assert new_uid != first_uid
        wait_until(lambda: {(t, u) for _, t, u in recorded()[0]} >= {("cluster.deleted", first_uid),
                                                                     ("cluster.observed", new_uid)},
                   timeout=30, what="the deletion and the new incarnation recorded")
        rows, actions = recorded()
        deleted = [seq for seq, t, u in rows if t == "cluster.deleted" and u == first_uid]
        created = [seq for seq, t, u in rows if t == "cluster.observed" and u == new_uid]
        assert deleted and created and max(deleted) < min(created), rows  # in the order the cluster made them
        passes = _passes(db)
        wait_until(lambda: _passes(db) >= passes + 2, timeout=30, what="two more passes")
        assert recorded()[1] == actions == ["create", "recreate"], actions  # nothing applied again
        assert "Traceback" not in run.output()
    doc = json.loads(gitops("status", "-o", "json", db=db).stdout)
    assert [(o["resource"], o["status"]) for o in doc["objects"]] == [(key, "in-sync")], doc
    with EventLog(db) as log:
        current = [r.event for r in log.current("actual") if r.event.resource == key]
        assert not list(log.read(types=["drift.opened"], resource=key))  # its own delete is no drift
    assert [e.payload.manifest["metadata"]["uid"] for e in current if isinstance(e, ClusterObserved)] == [live()[0]]


def _exists_in_log(db: Path, key: str) -> bool:
    if not db.exists():
        return False
    with EventLog(db) as log:
        return any(True for _ in log.read(types=["cluster.observed"], resource=key))


def _passes(db: Path) -> int:
    with EventLog(db) as log:
        return log.count_where(types=["reconcile.finished"])


def _webhook_config(cluster: Cluster, namespace: str, repo: GitRepo, tmp_path: Path, *, interval: float) -> Path:
    """``gitops run``'s config with the audit records from the webhook only (no file)."""
    assert cluster.audit_webhook is not None
    hook = cluster.audit_webhook
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "git": {"repo": str(repo.path)},
        "cluster": {"kubeconfig": str(cluster.kubeconfig), "context": "admin", "audit_wait": 1.0,
                    "audit_webhook": {k: hook[k] for k in ("address", "cert_file", "key_file", "client_ca_file")}},
        "reconcile": {"instance": namespace, "interval": interval, "debounce": 0.2, "metrics_address": "127.0.0.1:0",
                      "lease": {"namespace": namespace, "duration": 3, "renew": 0.5}},
    }))
    return config


def test_a_commit_made_during_a_pass_is_applied_by_the_next_not_an_interval_later(
        cluster: Cluster, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass that applied waits for the watch to record it (about audit_wait, here a
    second); a commit made meanwhile asks for a pass that APScheduler skipped while the
    first ran ("maximum number of running instances"), so it waited for the interval (here
    ten minutes). Now it runs once the first ends. Checked with kubectl."""
    if cluster.audit_webhook is None:
        pytest.skip("needs the local control plane's audit webhook (scripts/local-cluster up)")
    monkeypatch.delenv("GITOPS_AUDIT_LOG", raising=False)
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", namespace, k="0"))
    repo.commit("a")
    config, db = _webhook_config(cluster, namespace, repo, tmp_path, interval=600), tmp_path / "g.db"

    def value() -> str | None:
        got = kubectl(cluster, "admin", "-n", namespace, "get", "configmap", "a", "-o", "json", check=False)
        return json.loads(got.stdout)["data"]["k"] if got.returncode == 0 else None

    with gitops_run(db, config, tmp_path) as run:
        wait_until(lambda: value() == "0", timeout=90, what="the first pass")
        for i in range(1, 6):  # each commit lands while the pass of the one before waits for the watch
            repo.write("a.yaml", configmap("a", namespace, k=str(i)))
            repo.commit(f"k={i}")
            time.sleep(0.7)
        wait_until(lambda: value() == "5", timeout=30, what="the last commit applied")
        assert "maximum number of running instances" not in run.output()
