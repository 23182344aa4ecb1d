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


def test_a_controller_writing_a_degraded_status_is_told_within_seconds(cluster: Cluster, namespace: str,
                                                                       tmp_path: Path) -> None:
    """Not at the next scheduled pass (the interval is 30 s here): a status a controller
    writes to an object Git desires has its health judged at once, and the webhook told."""
    import json
    import time
    import uuid

    if not cluster.local:
        pytest.skip("writes a status as the local control plane's controller manager")
    group = f"n{uuid.uuid4().hex[:8]}.example.com"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"widgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                                  "schema": {"openAPIV3Schema": {"type": "object",
                                                                 "x-kubernetes-preserve-unknown-fields": True}}}]}}
    kubectl(cluster, "admin", "apply", "-f", "-", stdin=json.dumps(crd))
    receiver = Receiver()
    try:
        wait_until(lambda: kubectl(cluster, "admin", "get", "--raw", f"/apis/{group}/v1", check=False).returncode == 0,
                   what="the CRD served")
        repo = GitRepo(tmp_path / "repo")
        repo.write("w.yaml", {"apiVersion": f"{group}/v1", "kind": "Widget",
                              "metadata": {"name": "w", "namespace": namespace}, "spec": {"size": 1}})
        repo.commit("a Widget")
        config = _config(tmp_path, cluster, namespace, repo)
        raw = yaml.safe_load(config.read_text())
        raw["notify"] = [{"name": "ops", "url": receiver.url, "triggers": ["health-degraded"]}]
        config.write_text(yaml.safe_dump(raw))
        with gitops_run(tmp_path / "g.db", config, tmp_path) as run:
            wait_until(lambda: kubectl(cluster, "admin", "-n", namespace, "get", f"widgets.{group}", "w",
                                       check=False).returncode == 0, what="the Widget applied")
            wait_until(lambda: "notifying ops" in run.output(), what="the notifier")
            time.sleep(2)  # the passes that follow the apply are over
            status = {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Failed",
                                                 "message": "no capacity"}]}}
            written = time.monotonic()
            kubectl(cluster, "admin", "--as=system:kube-controller-manager", "--as-group=system:masters", "-n",
                    namespace, "patch", f"widgets.{group}", "w", "--subresource=status", "--type=merge", "-p",
                    json.dumps(status))
            wait_until(receiver.bodies, timeout=25, what="the health-degraded notification")
            assert time.monotonic() - written < 25  # well before the 30 s interval's pass
        told = receiver.bodies()[0]
        assert (told["trigger"], told["resource"]) == ("health-degraded", f"Widget.{group}/{namespace}/w")
        assert told["details"]["reason"] == "Failed"
    finally:
        receiver.server.shutdown()
        kubectl(cluster, "admin", "delete", "crd", f"widgets.{group}", "--wait=false", check=False)
