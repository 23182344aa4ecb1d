"""Least privilege on the local control plane: the RBAC ``gitops deploy rbac`` writes is
enough for ``gitops run`` to apply, watch and heal what Git desires in its namespaces, and
the API server refuses it everything else (``kubectl auth can-i``). An object Git puts in
another namespace is held as out of scope: the API server's own audit log shows no request
of the reconciler there."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.events import ReconcileAction
from gitops.store import EventLog
from tests.cluster_fixtures import Cluster, grant, kubectl, wait_until
from tests.gitrepo import GitRepo, configmap
from tests.test_run import gitops_run


def _gitops(*args: str, config: Path, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120)


def _service_account_kubeconfig(cluster: Cluster, namespace: str, name: str, path: Path) -> Path:
    """A kubeconfig holding the token the control plane gave the service account."""
    kubectl(cluster, "admin", "-n", namespace, "create", "serviceaccount", name)

    def token_secret() -> str:
        return kubectl(cluster, "admin", "-n", namespace, "get", "serviceaccount", name, "-o",
                       "jsonpath={.secrets[0].name}").stdout.strip()

    secret = wait_until(token_secret, what="the token secret")
    token = base64.b64decode(kubectl(cluster, "admin", "-n", namespace, "get", "secret", secret, "-o",
                                     "jsonpath={.data.token}").stdout).decode()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": admin["clusters"][0]["name"], "user": name}}],
        "current-context": name}))
    return path


def _can(cluster: Cluster, sa: str, *args: str) -> str:
    return kubectl(cluster, "admin", "auth", "can-i", *args, f"--as={sa}", check=False).stdout.strip()


@pytest.mark.cluster
def test_a_service_account_with_the_generated_rbac_runs_in_its_namespace_and_nothing_more(
        cluster: Cluster, namespace: str, other_namespace: str, tmp_path: Path) -> None:
    if cluster.audit_log is None:
        pytest.skip("checking what the reconciler sent needs the API server's audit log")
    repo = GitRepo(tmp_path / "repo")
    repo.write("app.yaml", configmap("settings", namespace, mode="blue"))
    repo.write("secret.yaml", yaml.safe_dump({"apiVersion": "v1", "kind": "Secret",
                                              "metadata": {"name": "creds", "namespace": namespace},
                                              "stringData": {"pw": "hunter2"}}))
    repo.write("elsewhere.yaml", configmap("elsewhere", other_namespace, x="1"))
    repo.commit("an app, and an object in a namespace this instance does not manage")
    db = tmp_path / "g.db"
    sa = f"system:serviceaccount:{namespace}:gitops"
    config = tmp_path / "config.yaml"
    settings: dict[str, Any] = {
        "git": {"repo": str(repo.path)},
        "cluster": {"kubeconfig": str(cluster.kubeconfig), "context": "admin", "namespaces": [namespace]},
        "reconcile": {"instance": namespace, "interval": 30, "debounce": 0.2, "metrics_address": "127.0.0.1:0",
                      "lease": {"namespace": namespace, "duration": 3, "renew": 0.5}},
    }
    config.write_text(yaml.safe_dump(settings))
    assert _gitops("ingest", "git", config=config, db=db).returncode == 0
    made = _gitops("deploy", "rbac", "--service-account", f"{namespace}/gitops", config=config, db=db)
    assert made.returncode == 0, made.stderr
    assert f"Git desires objects in {other_namespace}, outside these namespaces" in made.stderr
    objects = list(yaml.safe_load_all(made.stdout))
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] == "Role"} == {namespace}
    kubectl(cluster, "admin", "apply", "-f", "-", stdin=made.stdout)

    # gitops run as that service account, and nothing else
    settings["cluster"] = {"kubeconfig": str(_service_account_kubeconfig(cluster, namespace, "gitops",
                                                                        tmp_path / "sa.kubeconfig")),
                           "namespaces": [namespace]}
    config.write_text(yaml.safe_dump(settings))
    grant(cluster, namespace, "alice")
    with gitops_run(db, config, tmp_path) as run:
        def data() -> Any:
            res = kubectl(cluster, "admin", "-n", namespace, "get", "configmap", "settings", "-o", "json", check=False)
            return json.loads(res.stdout)["data"] if res.returncode == 0 else None

        wait_until(lambda: data() == {"mode": "blue"}, timeout=60, what="the first pass")
        kubectl(cluster, "alice", "-n", namespace, "patch", "configmap", "settings", "-p", '{"data":{"mode":"red"}}')
        wait_until(lambda: data() == {"mode": "blue"}, timeout=60, what="alice's edit healed (the watch works)")
        assert "kind-forbidden" not in run.output()
    assert kubectl(cluster, "admin", "-n", namespace, "get", "secret", "creds", check=False).returncode == 0
    assert kubectl(cluster, "admin", "-n", other_namespace, "get", "configmap", "elsewhere",
                   check=False).returncode != 0
    with EventLog(db) as log:
        held = [r.event for r in log.read(types=["reconcile.action"], resource=f"ConfigMap/{other_namespace}/elsewhere")
                if isinstance(r.event, ReconcileAction)]
    assert held and {(a.payload.result, a.payload.reason) for a in held} == {("failed", "OutOfScope")}
    # the API server's record: the reconciler sent nothing to the other namespace
    sent = [json.loads(line) for line in cluster.audit_log.read_text().splitlines()[:-1]]
    assert not [r for r in sent if r["user"]["username"] == sa and
                (r.get("objectRef") or {}).get("namespace") == other_namespace]
    assert [r for r in sent if r["user"]["username"] == sa and r["verb"] == "patch"]  # it did act, as itself
    # what must be refused, is
    for refused in (("list", "secrets", "--all-namespaces"), ("create", "configmaps", "-n", other_namespace),
                    ("create", "configmaps", "-n", "default"), ("delete", f"namespaces/{namespace}"),
                    ("create", "clusterroles"), ("update", "leases/someone-else", "-n", namespace),
                    ("list", "pods", "-n", namespace), ("create", "serviceaccounts/token", "-n", namespace)):
        assert _can(cluster, sa, *refused) == "no", refused
    for allowed in (("create", "configmaps", "-n", namespace), ("list", "namespaces"),
                    ("update", f"leases/gitops-{namespace}", "-n", namespace)):
        assert _can(cluster, sa, *allowed) == "yes", allowed


def test_the_rights_follow_the_desired_kinds_a_crds_plural_and_the_watched_kinds(tmp_path: Path) -> None:
    from gitops.query.rbac import ServiceAccountRef, least_privilege, plan_rbac
    from gitops.sources.git import GitIngest, GitSourceConfig

    repo = GitRepo(tmp_path / "repo")
    repo.write("crd.yaml", yaml.safe_dump({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gizmos.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"kind": "Gizmo", "plural": "gizmoz", "singular": "gizmo"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object"}}}]}}))
    repo.write("a.yaml", yaml.safe_dump_all([
        {"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "g", "namespace": "shop"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i", "namespace": "web"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}}]))
    repo.commit("kinds")
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
        plan = plan_rbac(log, watched_kinds=["Event", "Node", "Secret"])
        scoped = plan_rbac(log, namespaces=["shop"])
    assert plan.namespaces == ["shop", "web"] and plan.outside == []
    assert plan.namespaced_write == {("", "configmaps"), ("example.com", "gizmoz"), ("networking.k8s.io", "ingresses")}
    assert plan.cluster_write == {("apiextensions.k8s.io", "customresourcedefinitions")}
    assert plan.namespaced_read == {("", "events"), ("", "secrets")} and ("", "nodes") in plan.cluster_read
    assert plan.desired_namespaces == {"shop"}
    assert scoped.namespaces == ["shop"] and scoped.outside == ["web"]
    sa = ServiceAccountRef("gitops", "gitops")
    objects = least_privilege(plan, instance="prod", service_account=sa, lease_namespace="gitops",
                              lease_name="gitops-prod")
    cluster_role = next(o for o in objects if o["kind"] == "ClusterRole")
    assert {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["shop"],
            "verbs": ["patch", "update", "delete"]} in cluster_role["rules"]
    assert not any("secrets" in r["resources"] for r in cluster_role["rules"])
    wide = least_privilege(plan, instance="prod", service_account=sa, lease_namespace="gitops",
                           lease_name="gitops-prod", secrets_cluster_wide=True)
    assert any("secrets" in r["resources"] and r["verbs"] == ["get", "list", "watch"]
               for r in next(o for o in wide if o["kind"] == "ClusterRole")["rules"])
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"] == ["shop", "web"]


def test_the_rights_are_those_of_the_config_s_own_reading_of_a_shared_branch(tmp_path: Path) -> None:
    """Two applications under their own paths of one branch, in one log: each one's rights
    cover its own objects' kinds and namespaces, not the other's."""
    repo = GitRepo(tmp_path / "repo")
    repo.write("apps/a/cm.yaml", yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": "c", "namespace": "shop"}}))
    repo.write("apps/b/ing.yaml", yaml.safe_dump({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                                                  "metadata": {"name": "i", "namespace": "web"}}))
    repo.commit("two apps")
    db = tmp_path / "g.db"
    rights = {}
    for app in ("a", "b"):
        config = tmp_path / f"{app}.yaml"
        config.write_text(yaml.safe_dump({"git": {"repo": str(repo.path), "paths": [f"apps/{app}"]},
                                          "reconcile": {"instance": app}}))
        assert _gitops("ingest", "git", config=config, db=db).returncode == 0
        res = _gitops("deploy", "rbac", "-o", "json", config=config, db=db)
        assert res.returncode == 0, res.stderr
        rights[app] = {(o["kind"], o["metadata"].get("namespace")) for o in json.loads(res.stdout)["items"]
                       if o["kind"] == "Role"}
    lease = ("Role", "gitops")
    assert rights == {"a": {lease, ("Role", "shop")}, "b": {lease, ("Role", "web")}}
