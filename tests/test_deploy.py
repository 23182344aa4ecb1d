"""deploy/: its RBAC applied to the real control plane, and ``gitops run`` running with that
ServiceAccount's token: it does its job where it may, and the API server refuses it (403)
elsewhere."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.events.models import ReconcileAction
from gitops.store import EventLog
from tests.cluster_fixtures import REPO, Cluster, kubectl, wait_until
from tests.gitrepo import GitRepo, configmap
from tests.test_run import gitops_run

pytestmark = pytest.mark.cluster


def _rbac(tag: str, home: str, app: str) -> str:
    """deploy/'s ServiceAccount and RBAC, with this test's namespaces and names."""
    docs = []
    for name in ("serviceaccount.yaml", "rbac.yaml"):
        for doc in yaml.safe_load_all((REPO / "deploy" / name).read_text()):
            meta = doc["metadata"]
            if meta.get("namespace") == "gitops":
                meta["namespace"] = home
            elif meta.get("namespace") == "shop":
                meta["namespace"] = app
            if doc["kind"].startswith("Cluster"):
                meta["name"] = f"{meta['name']}-{tag}"
            if "roleRef" in doc and doc["roleRef"]["kind"] == "ClusterRole":
                doc["roleRef"]["name"] = f"{doc['roleRef']['name']}-{tag}"
            for s in doc.get("subjects", []):
                s["namespace"] = home
            docs.append(doc)
    return yaml.safe_dump_all(docs)


def _kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gitops",
        "clusters": admin["clusters"][:1],
        "users": [{"name": "gitops", "user": {"token": token}}],
        "contexts": [{"name": "gitops", "context": {"cluster": admin["clusters"][0]["name"], "user": "gitops"}}]}))
    return path


def test_gitops_run_does_its_job_with_the_least_rbac_and_is_refused_elsewhere(cluster: Cluster,
                                                                            tmp_path: Path) -> None:
    if not cluster.local:
        pytest.skip("creates cluster-wide RBAC: local control plane only")
    tag = uuid.uuid4().hex[:6]
    home, app, other = f"gitops-{tag}", f"shop-{tag}", f"other-{tag}"
    for ns in (home, app, other):
        kubectl(cluster, "admin", "create", "namespace", ns)
    try:
        kubectl(cluster, "admin", "apply", "-f", "-", stdin=_rbac(tag, home, app))

        def token() -> str | None:
            sa = json.loads(kubectl(cluster, "admin", "-n", home, "get", "serviceaccount", "gitops", "-o",
                                    "json").stdout)
            if not sa.get("secrets"):
                return None
            secret = json.loads(kubectl(cluster, "admin", "-n", home, "get", "secret", sa["secrets"][0]["name"],
                                        "-o", "json").stdout)
            return base64.b64decode(secret["data"]["token"]).decode()

        kubeconfig = _kubeconfig(cluster, wait_until(token, what="the ServiceAccount's token"), tmp_path / "sa.yaml")
        repo = GitRepo(tmp_path / "repo")
        repo.write("mine.yaml", configmap("mine", app, k="1"))
        repo.write("theirs.yaml", configmap("theirs", other, k="1"))
        repo.commit("one object where it may write, one where it may not")
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "git": {"repo": str(repo.path)}, "cluster": {"kubeconfig": str(kubeconfig)},
            "reconcile": {"instance": tag, "interval": 30, "debounce": 0.1, "metrics_address": "127.0.0.1:0",
                          "lease": {"namespace": home, "duration": 3, "renew": 0.5}}}))
        db = tmp_path / "g.db"

        def actions() -> list[Any]:
            if not db.exists():
                return []
            with EventLog(db) as log:
                return [r.event for r in log.read(types=["reconcile.action"]) if isinstance(r.event, ReconcileAction)]

        with gitops_run(db, config, tmp_path) as run:
            wait_until(lambda: kubectl(cluster, "admin", "-n", app, "get", "configmap", "mine",
                                       check=False).returncode == 0, what="its job done")
            wait_until(lambda: any(a.payload.result == "failed" for a in actions()), what="the refusal recorded")
            assert "leading" in run.output()
        done = {(a.resource, a.payload.result, a.payload.code) for a in actions()}
        assert (f"ConfigMap/{app}/mine", "succeeded", None) in done
        assert (f"ConfigMap/{other}/theirs", "failed", 403) in done
        assert kubectl(cluster, "admin", "-n", other, "get", "configmap", "theirs", check=False).returncode != 0
        assert run.proc.returncode == 0, run.output()
    finally:
        kubectl(cluster, "admin", "delete", "clusterrole,clusterrolebinding", f"gitops-read-{tag}",
                f"gitops-apply-{tag}", "--ignore-not-found", check=False)
        for ns in (home, app, other):
            kubectl(cluster, "admin", "delete", "namespace", ns, "--wait=false", check=False)
