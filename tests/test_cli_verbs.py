"""The verbs Argo CD and Flux users reach for, on the local control plane: ``history``,
``suspend`` / ``resume`` of a running service, ``wait``, ``version``, names from
discovery, an RBAC refusal of the Lease said as one, and ``run``'s log lines. Each claim is
checked against the API server (kubectl) or Git, not against our own record."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.store import EventLog
from tests.cli_helpers import gitops
from tests.cluster_fixtures import Cluster, kubectl, wait_until
from tests.gitrepo import GitRepo, configmap
from tests.test_run import _config, gitops_run

pytestmark = pytest.mark.cluster


def _exists(cluster: Cluster, ns: str, name: str) -> bool:
    return kubectl(cluster, "admin", "-n", ns, "get", "configmap", name, check=False).returncode == 0


def _held_passes(db: Path) -> list[str]:
    with EventLog(db) as log:
        return [str(r.event.payload.held) for r in log.read(types=["reconcile.started"])  # type: ignore[union-attr]
                if r.event.payload.held]  # type: ignore[union-attr]


def test_history_lists_each_pass_and_wait_waits_for_sync_and_for_a_commit(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", namespace, k="1"))
    repo.write("b.yaml", configmap("b", namespace, k="1"))
    repo.commit("two ConfigMaps")
    first = repo.head()
    db, config = tmp_path / "g.db", _config(tmp_path, cluster, namespace, repo)
    res = gitops("--config", str(config), "reconcile", db=db)
    assert res.returncode == 0, res.stderr
    assert _exists(cluster, namespace, "a") and _exists(cluster, namespace, "b")
    waited = gitops("--config", str(config), "wait", "--for", "synced", "--timeout", "30s", db=db)
    assert waited.returncode == 0 and "condition met" in waited.stdout, waited.stderr
    repo.write("a.yaml", configmap("a", namespace, k="2"))
    repo.commit("a changes")
    # the new commit is not read yet: waiting for it times out, saying what is in force
    early = gitops("--config", str(config), "wait", "--for", f"commit={repo.head()[:10]}", "--timeout", "2s", db=db)
    assert early.returncode == 1 and f"commit {first[:12]} is in force" in early.stderr, early.stderr
    assert gitops("--config", str(config), "reconcile", db=db).returncode == 0
    late = gitops("--config", str(config), "wait", "--for", f"commit={repo.head()}", "--timeout", "30s", db=db)
    assert late.returncode == 0, late.stderr
    live = json.loads(kubectl(cluster, "admin", "-n", namespace, "get", "configmap", "a", "-o", "json").stdout)
    assert live["data"] == {"k": "2"}
    passes = json.loads(gitops("history", "-o", "json", db=db).stdout)
    assert [(p["commit"], p["trigger"], p["outcome"], p["created"], p["updated"]) for p in passes] == [
        (first, "manual", "succeeded", 2, 0), (repo.head(), "manual", "succeeded", 0, 1)]
    table = gitops("history", db=db).stdout
    assert re.search(rf"{repo.head()[:12]}\s+succeeded\s+1 updated", table), table
    status = gitops("--config", str(config), "status", "--exit-code", db=db)
    assert status.returncode == 0 and f"commit {repo.head()[:12]} in force" in status.stdout


def test_suspend_holds_a_running_service_from_its_next_pass_until_resume(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", namespace, k="1"))
    repo.commit("a")
    db, config = tmp_path / "g.db", _config(tmp_path, cluster, namespace, repo, interval=1)
    with gitops_run(db, config, tmp_path) as run:
        wait_until(lambda: _exists(cluster, namespace, "a"), what="the first commit applied")
        res = gitops("--config", str(config), "suspend", "--reason", "change freeze", db=db)
        assert res.returncode == 0 and f"instance {namespace} suspended" in res.stdout, res.stderr
        wait_until(lambda: any("suspended by" in h for h in _held_passes(db)), what="a held pass")
        repo.write("b.yaml", configmap("b", namespace, k="1"))
        repo.commit("b, while suspended")
        wait_until(lambda: sum("change freeze" in h for h in _held_passes(db)) >= 3, timeout=60,
                   what="three held passes")
        assert not _exists(cluster, namespace, "b")  # nothing was applied while suspended
        res = gitops("--config", str(config), "resume", db=db)
        assert res.returncode == 0 and f"instance {namespace} resumed" in res.stdout, res.stderr
        wait_until(lambda: _exists(cluster, namespace, "b"), what="b applied after resume")
        lines = [line for line in run.output().splitlines() if line.strip()]
    stamped = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR)\s+\S")
    assert lines and all(stamped.match(line) for line in lines if not line.startswith("error:")), lines
    with EventLog(db) as log:
        ops = [r.event.payload for r in log.read(types=["operator"])
               if r.event.payload.command in ("suspend", "resume")]  # type: ignore[union-attr]
    assert [(o.command, o.arguments.get("reason")) for o in ops] == [  # type: ignore[union-attr]
        ("suspend", "change freeze"), ("resume", None)]


def test_run_logs_one_json_object_a_line(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", namespace, k="1"))
    repo.commit("a")
    out = tmp_path / "run.log"
    with out.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "gitops", "--db", str(tmp_path / "g.db"), "--config",
                                 str(_config(tmp_path, cluster, namespace, repo)), "run", "--log-format", "json"],
                                stdout=f, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_until(lambda: _exists(cluster, namespace, "a") and '"pass ' in out.read_text(), timeout=90,
                   what="a pass")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert records and all(set(r) >= {"time", "level", "msg"} for r in records)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r["time"]) for r in records)
    passed = [r for r in records if r["msg"].startswith("pass ")]
    assert passed and passed[0]["level"] == "info" and passed[0]["run_id"]


def test_version_names_the_api_servers_version(cluster: Cluster) -> None:
    res = gitops("version", "--kubeconfig", str(cluster.kubeconfig), *(["--context", "admin"] if cluster.local
                                                                      else []), "-o", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    served = json.loads(kubectl(cluster, "admin", "version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    assert doc["server"]["version"] == served and doc["client"]["version"]


def test_a_custom_kinds_short_name_comes_from_discovery(cluster: Cluster, admin_api: Any, tmp_path: Path) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.example.com"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"widgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "shortNames": ["wdg"]},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}
    kubectl(cluster, "admin", "apply", "-f", "-", stdin=json.dumps(crd))
    try:
        # until the group is served, kubectl api-resources fails: asked again, not a failure of the test
        wait_until(lambda: "wdg" in kubectl(cluster, "admin", "api-resources", "--api-group", group,
                                            check=False).stdout, what="the CRD served")
        db = tmp_path / "g.db"
        assert gitops("init", db=db).returncode == 0
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump({"cluster": {"kubeconfig": str(cluster.kubeconfig),
                                                      **({"context": "admin"} if cluster.local else {})}}))
        asked = gitops("--config", str(config), "audit", "--kind", "wdg", "-o", "json", db=db)
        assert (asked.returncode, asked.stdout) == (0, "[]\n"), asked.stderr
        offline = gitops("audit", "--kind", "wdg", db=db)  # no cluster configured: nothing knows the name
        assert offline.returncode == 2 and "unknown kind 'wdg'" in offline.stderr
    finally:
        kubectl(cluster, "admin", "delete", "crd", f"widgets.{group}", "--wait=false", check=False)


def test_a_lease_in_a_namespace_that_does_not_exist_is_named_not_blamed_on_another_holder(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", namespace, k="1"))
    repo.commit("a")
    config = _config(tmp_path, cluster, namespace, repo)
    raw = yaml.safe_load(config.read_text())
    raw["reconcile"]["lease"]["namespace"] = missing = f"{namespace}-none"
    config.write_text(yaml.safe_dump(raw))
    assert kubectl(cluster, "admin", "get", "namespace", missing, check=False).returncode != 0
    why = f"the namespace {missing} of the Lease {missing}/gitops-{namespace} does not exist (HTTP 404"
    res = gitops("--config", str(config), "reconcile", db=tmp_path / "g.db")
    assert res.returncode == 1 and why in res.stderr and "holds the lease" not in res.stdout + res.stderr, \
        res.stdout + res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not _exists(cluster, namespace, "a")
    with gitops_run(tmp_path / "run.db", config, tmp_path) as run:  # the service: not ready, not a standby
        wait_until(lambda: why in run.output(), what="the refusal logged")
        status, body = run.get("/readyz")
        assert status == 503 and body.startswith(f"not ready: {why}"), body
        assert "standby" not in run.output()
    assert not _exists(cluster, namespace, "a")


def test_a_lease_refused_by_rbac_says_which_verb_and_user(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    if not cluster.local:
        pytest.skip("needs the local control plane's user alice")
    role = f"{namespace}-read-all"
    kubectl(cluster, "admin", "create", "clusterrole", role, "--verb=get,list,watch", "--resource=*.*")
    kubectl(cluster, "admin", "create", "clusterrolebinding", role, f"--clusterrole={role}", "--user=alice")
    kubectl(cluster, "admin", "-n", namespace, "create", "role", "cm-write", "--verb=create,update,patch",
            "--resource=configmaps")
    kubectl(cluster, "admin", "-n", namespace, "create", "rolebinding", "cm-write", "--role=cm-write",
            "--user=alice")
    try:
        wait_until(lambda: kubectl(cluster, "alice", "-n", namespace, "auth", "can-i", "create", "configmaps",
                                   check=False).stdout.strip() == "yes", what="alice's rights")
        assert kubectl(cluster, "alice", "-n", namespace, "auth", "can-i", "create", "leases",
                       check=False).stdout.strip() == "no"
        repo = GitRepo(tmp_path / "repo")
        repo.write("a.yaml", configmap("a", namespace, k="1"))
        repo.commit("a")
        config = _config(tmp_path, cluster, namespace, repo)
        raw = yaml.safe_load(config.read_text())
        raw["cluster"]["context"] = "alice"
        config.write_text(yaml.safe_dump(raw))
        res = gitops("--config", str(config), "reconcile", db=tmp_path / "g.db")
        assert res.returncode == 1, res.stdout + res.stderr
        assert f"refused to let this process create the Lease {namespace}/gitops-{namespace} (HTTP 403" in res.stderr
        assert 'User "alice" cannot create resource "leases"' in res.stderr and "holds the lease" not in res.stderr
        assert not _exists(cluster, namespace, "a")  # nothing applied without the lease
        with gitops_run(tmp_path / "run.db", config, tmp_path) as run:  # the service: not ready, and says why
            wait_until(lambda: "refused to let this process" in run.output(), what="the refusal logged")
            status, body = run.get("/readyz")
            assert status == 503 and body.startswith("not ready: the API server refused to let this process "
                                                     f"create the Lease {namespace}/gitops-{namespace}"), body
        assert not _exists(cluster, namespace, "a")
    finally:
        kubectl(cluster, "admin", "delete", "clusterrolebinding", role, check=False)
        kubectl(cluster, "admin", "delete", "clusterrole", role, check=False)


def test_what_a_one_shot_pass_prunes_is_gone_from_the_log_when_the_command_ends(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """No watch follows ``gitops reconcile``, and a delete returns no version to record: the
    command reads the cluster again after a prune, so that ``status`` says what the API
    server says, not that the object it deleted is still there (as an orphan)."""
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", namespace, k="1"))
    repo.write("b.yaml", configmap("b", namespace, k="1"))
    repo.commit("a and b")
    config, db = _config(tmp_path, cluster, namespace, repo, prune=True), tmp_path / "g.db"
    assert gitops("--config", str(config), "reconcile", db=db).returncode == 0
    assert _exists(cluster, namespace, "b")
    repo.remove("b.yaml")
    repo.commit("no b")
    res = gitops("--config", str(config), "reconcile", db=db)
    assert res.returncode == 0 and "1 pruned" in res.stdout, res.stdout + res.stderr
    assert not _exists(cluster, namespace, "b")  # the API server's word
    doc = json.loads(gitops("--config", str(config), "status", "-o", "json", db=db).stdout)
    assert [(o["resource"], o["status"]) for o in doc["objects"]] == [(f"ConfigMap/{namespace}/a", "in-sync")], doc
    assert doc["in_sync"] is True
    with EventLog(db) as log:
        deleted = [r.event for r in log.read(types=["cluster.deleted"])
                   if r.event.resource == f"ConfigMap/{namespace}/b"]
    assert len(deleted) == 1
    if cluster.audit_log is not None:  # the audit record of the DELETE names the reconciler
        assert deleted[0].payload.attribution == "reconciler", deleted[0]  # type: ignore[union-attr]


def test_a_one_shot_pass_says_when_the_head_it_was_asked_for_is_invalid(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """A push whose newest commit is invalid is not applied: the cluster is held to the last
    valid commit. ``gitops reconcile`` said only "succeeded" (exit 0), as if the push had
    been applied; now it names the errors with file and line, says which commit the cluster
    was held to, and exits 1, as ``gitops ingest git`` and Flux's reconcile do."""
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", namespace, k="1"))
    repo.commit("a")
    valid = repo.head()
    repo.write("a.yaml", configmap("a", namespace, k="2"))
    repo.write("b.yaml", "kind: ConfigMap\nmetadata: {name: b\n")  # unclosed flow mapping
    repo.commit("a change, and a broken file")
    config, db = _config(tmp_path, cluster, namespace, repo), tmp_path / "g.db"
    res = gitops("--config", str(config), "reconcile", db=db)
    assert res.returncode == 1, res.stdout + res.stderr
    errors = res.stderr.strip().splitlines()
    assert errors[0].startswith("error: b.yaml:") and f"(commit {repo.head()[:12]})" in errors[0], errors
    assert errors[-1] == (f"error: the head of main ({repo.head()[:12]}) is invalid (1 error): commit {valid[:12]}, "
                          "the last valid one, is what the cluster was held to"), errors
    assert "Traceback" not in res.stderr
    cm = json.loads(kubectl(cluster, "admin", "-n", namespace, "get", "configmap", "a", "-o", "json").stdout)
    assert cm["data"] == {"k": "1"}  # the API server holds the last valid commit's value
    repo.remove("b.yaml")
    repo.commit("fixed")
    res = gitops("--config", str(config), "reconcile", db=db)
    assert res.returncode == 0 and "1 updated" in res.stdout, res.stdout + res.stderr
