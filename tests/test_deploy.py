"""deploy/: what it ships is what the commands give and what a cluster accepts. Its RBAC is
`gitops deploy rbac`'s output for the shop of tests/apps/shop.yaml; its config is one
`gitops run` takes; its pods follow the restricted pod security rules; and `kubectl apply
-k deploy/` creates everything on a control plane where none of its namespaces exist yet,
after which a server-side dry run passes too."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.service.config import Config
from tests.cluster_fixtures import REPO, Cluster, kubectl, wait_until
from tests.gitrepo import GitRepo

DEPLOY = REPO / "deploy"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _deployment() -> dict[str, Any]:
    (doc,) = _docs(DEPLOY / "base" / "deployment.yaml")
    return doc


def test_the_shipped_rbac_is_what_deploy_rbac_gives_for_the_shop(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("shop.yaml", (REPO / "tests" / "apps" / "shop.yaml").read_text().replace("NS", "shop"))
    repo.commit("the shop")
    db = tmp_path / "g.db"
    only_git = tmp_path / "git.yaml"
    only_git.write_text(yaml.safe_dump({"git": {"repo": str(repo.path)}}))
    run = [sys.executable, "-m", "gitops", "--db", str(db)]
    assert subprocess.run([*run, "--config", str(only_git), "ingest", "git"], capture_output=True).returncode == 0
    shipped = yaml.safe_load((DEPLOY / "base" / "config.yaml").read_text())
    shipped["git"]["repo"] = str(repo.path)
    del shipped["db"], shipped["git"]["cache_dir"]
    config = tmp_path / "deploy.yaml"
    config.write_text(yaml.safe_dump(shipped))
    made = subprocess.run([*run, "--config", str(config), "deploy", "rbac", "--service-account", "gitops/gitops"],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert made.stderr == ""  # the config's namespaces are the ones Git desires: nothing to note
    assert list(yaml.safe_load_all(made.stdout)) == _docs(DEPLOY / "rbac.yaml"), \
        "deploy/rbac.yaml is stale: regenerate it as its header says"


def test_the_config_is_one_gitops_run_takes_and_matches_the_rbac() -> None:
    config = Config.model_validate(yaml.safe_load((DEPLOY / "base" / "config.yaml").read_text()))
    assert config.cluster is not None and config.cluster.audit_webhook is not None
    roles = {d["metadata"]["namespace"] for d in _docs(DEPLOY / "rbac.yaml") if d["kind"] == "Role"
             and not d["metadata"]["name"].endswith("-lease")}
    assert roles == set(config.cluster.namespaces)
    lease = next(d for d in _docs(DEPLOY / "rbac.yaml") if d["metadata"]["name"].endswith("-lease"))
    assert lease["metadata"]["namespace"] == "gitops"  # the pod's own, where run takes the Lease
    assert lease["rules"][0]["resourceNames"] == [f"gitops-{config.reconcile.instance}"]


def test_the_pods_follow_the_restricted_rules_and_the_release() -> None:
    spec = _deployment()["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    base = yaml.safe_load((DEPLOY / "base" / "kustomization.yaml").read_text())
    assert [i["newTag"] for i in base["images"] if i["name"] == "gitops"] == [version]
    assert c["image"] == f"gitops:{version}" and c["imagePullPolicy"] == "IfNotPresent"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]
    # the audit webhook: its port, served by the Service, its certificate and token from the Secret
    assert {"name": "audit-webhook", "containerPort": 8443, "protocol": "TCP"} in c["ports"]
    (service,) = _docs(DEPLOY / "base" / "service.yaml")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"metrics", "audit-webhook"}
    assert all(p.get("protocol") for p in service["spec"]["ports"])  # a 1.20 API server refuses a port without one
    assert {"name": "GITOPS_AUDIT_WEBHOOK_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "gitops-audit-webhook", "key": "token"}}} in c["env"]
    config = yaml.safe_load((DEPLOY / "base" / "config.yaml").read_text())
    mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "audit-webhook")
    assert config["cluster"]["audit_webhook"]["cert_file"] == f"{mount}/tls.crt"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git", ".local-cluster", "*.db"} <= set(ignored)


@pytest.mark.cluster
def test_kubectl_apply_k_deploy_creates_everything_on_a_cluster_without_its_namespaces(cluster: Cluster) -> None:
    if not cluster.local:
        pytest.skip("creates the namespaces gitops and shop and cluster-wide RBAC: local control plane only")
    for ns in ("gitops", "shop"):
        if kubectl(cluster, "admin", "get", "namespace", ns, check=False).returncode == 0:
            pytest.fail(f"namespace {ns} exists: this test needs a control plane without it")
    try:
        applied = kubectl(cluster, "admin", "apply", "-k", str(DEPLOY), check=False)
        assert applied.returncode == 0, applied.stderr
        dry = kubectl(cluster, "admin", "apply", "--dry-run=server", "-k", str(DEPLOY), check=False)
        assert dry.returncode == 0, dry.stderr
        deployment = json.loads(kubectl(cluster, "admin", "-n", "gitops", "get", "deployment", "gitops", "-o",
                                        "json").stdout)
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == \
            _deployment()["spec"]["template"]["spec"]["containers"][0]["image"]
        sa = "system:serviceaccount:gitops:gitops"

        def can(*args: str) -> str:
            return kubectl(cluster, "admin", "auth", "can-i", *args, f"--as={sa}", check=False).stdout.strip()

        wait_until(lambda: can("create", "configmaps", "-n", "shop") == "yes", what="the Role in shop")
        assert can("list", "secrets", "--all-namespaces") == "no"
        assert can("create", "configmaps", "-n", "default") == "no"
        assert can("get", "leases/gitops-prod", "-n", "gitops") == "yes"
    finally:
        kubectl(cluster, "admin", "delete", "-k", str(DEPLOY), "--wait=false", "--ignore-not-found", check=False)
