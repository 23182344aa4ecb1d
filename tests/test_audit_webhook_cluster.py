"""The audit webhook in a real cluster's place: the local control plane posts its audit
events to ``gitops run --audit-webhook``, which has no audit log file to read, and still
names alice behind her kubectl edit. The claim is checked against the API server's own
audit log file: the record our log joined the change to is the one of her request."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from gitops.events import AuditRecorded, ClusterObserved
from gitops.store import EventLog
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
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "git": {"repo": str(repo.path)},
        # no audit_log: the records come by the webhook only
        "cluster": {"kubeconfig": str(cluster.kubeconfig), "context": "admin", "audit_wait": 1.0,
                    "audit_webhook": {k: hook[k] for k in ("address", "cert_file", "key_file", "client_ca_file")}},
        "reconcile": {"instance": namespace, "interval": 30, "debounce": 0.2, "metrics_address": "127.0.0.1:0",
                      "lease": {"namespace": namespace, "duration": 3, "renew": 0.5}},
    }))
    db = tmp_path / "g.db"
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
