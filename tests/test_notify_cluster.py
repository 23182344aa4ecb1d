"""A running ``gitops run`` tells a webhook on loopback who changed the cluster: alice's
kubectl edit opens drift, and the webhook hears of it, in her name, then of its close."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.cluster_fixtures import Cluster, grant, kubectl, wait_until
from tests.gitrepo import GitRepo, configmap
from tests.test_notify import Receiver
from tests.test_run import _config, gitops_run

pytestmark = pytest.mark.cluster


def test_a_running_service_tells_a_webhook_who_changed_the_cluster(cluster: Cluster, namespace: str,
                                                                   tmp_path: Path) -> None:
    if cluster.audit_log is None:
        pytest.skip("naming alice needs the API server's audit log")
    receiver = Receiver()
    try:
        grant(cluster, namespace, "alice")
        repo = GitRepo(tmp_path / "repo")
        repo.write("a.yaml", configmap("a", namespace, k="1"))
        repo.commit("a")
        config = _config(tmp_path, cluster, namespace, repo)
        raw = yaml.safe_load(config.read_text())
        raw["notify"] = [{"name": "ops", "url": receiver.url, "triggers": ["out-of-band", "drift-closed"]}]
        config.write_text(yaml.safe_dump(raw))
        db = tmp_path / "g.db"
        with gitops_run(db, config, tmp_path) as run:
            wait_until(lambda: kubectl(cluster, "admin", "-n", namespace, "get", "configmap", "a",
                                       check=False).returncode == 0, what="the commit applied")
            wait_until(lambda: "notifying ops" in run.output(), what="the notifier")
            kubectl(cluster, "alice", "-n", namespace, "patch", "configmap", "a", "-p", '{"data":{"k":"2"}}')
            wait_until(lambda: [b["trigger"] for b in receiver.bodies()] == ["out-of-band", "drift-closed"],
                       timeout=60, what="both notifications")
        told = receiver.bodies()[0]
        assert (told["actor"], told["resource"]) == ("alice", f"ConfigMap/{namespace}/a")
    finally:
        receiver.server.shutdown()
