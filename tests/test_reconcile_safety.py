"""The reconciler never acts in the wrong place: the namespace a key names, a Namespace or CRD
pruned only when it holds nothing gitops must not delete, another instance's objects left
alone, a dry run of a first deploy that says what would fail, an action typed by the API
server's answer, no pass from a half-listed cluster, terminal 500s, server fields kept in
Git, the control plane's writes that are neither drift nor out-of-band, and an in-sync pass
that writes nothing, the Lease included. Each claim is checked against the API server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.events.models import ReconcileAction, ReconcileInterrupted
from gitops.query.audit import audit_rows
from gitops.store import EventLog
from tests.cluster_fixtures import Cluster, kubectl, wait_until
from tests.gitrepo import configmap
from tests.test_reconcile import Env
from tests.test_reconcile_real import gitops, reconciler_writes, settled_writes

pytestmark = pytest.mark.cluster


def _get(cluster: Cluster, *args: str) -> Any:
    res = kubectl(cluster, "admin", "get", *args, "-o", "json", check=False)
    return json.loads(res.stdout) if res.returncode == 0 else None


def _actions(env: Env) -> list[Any]:
    return [r.event.payload for r in env.events("reconcile.action") if isinstance(r.event, ReconcileAction)]


def test_an_object_that_names_no_namespace_goes_to_the_default_namespace_git_says(
        cluster: Cluster, tmp_path: Path, namespace: str) -> None:
    e = Env(cluster, tmp_path, namespace, git={"default_namespace": namespace})
    try:
        e.write("cm.yaml", configmap("loose", None, k="1"))  # no metadata.namespace
        e.repo.commit("a ConfigMap with no namespace")
        first = e.run()
        assert (first.created, first.failed) == (1, 0), first.errors
        assert _get(cluster, "-n", namespace, "configmap", "loose")["data"] == {"k": "1"}
        assert _get(cluster, "-n", "default", "configmap", "loose") is None  # not the client's default
        assert e.run().plan.unchanged == 1
    finally:
        e.close()


def _namespaced_app(ns: str, extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            configmap("a", ns, k="1"), configmap("b", ns, k="2"), *([extra] if extra else [])]


def test_pruning_a_namespace_never_deletes_what_gitops_must_not_touch(env: Env, cluster: Cluster) -> None:
    app = f"{env.ns}-app"
    try:
        env.write("app.yaml", *_namespaced_app(app))
        for i in range(8):  # enough owned objects elsewhere that one prune is under the guard's ratio
            env.write(f"other-{i}.yaml", configmap(f"o{i}", env.ns))
        env.repo.commit("an app in its own namespace")
        assert env.run().failed == 0
        kubectl(cluster, "admin", "-n", app, "create", "configmap", "by-hand")
        kubectl(cluster, "admin", "-n", app, "annotate", "configmap", "b", "gitops.dev/reconcile=disabled")
        env.write("app.yaml", *_namespaced_app(app)[1:])  # the Namespace's manifest goes; its objects stay in Git
        env.repo.commit("the namespace is no longer in Git")
        held = env.run(prune=True)
        assert held.pruned == 0 and held.held is not None and "prune-blocked" in held.held
        why = next(a.skipped for a in held.plan.skipped if a.key == f"Namespace/{app}") or ""
        assert f"ConfigMap/{app}/by-hand (not made by gitops)" in why
        assert f"ConfigMap/{app}/a (still in Git)" in why
        assert _get(cluster, "namespace", app)["status"]["phase"] == "Active"
        assert _get(cluster, "-n", app, "configmap", "by-hand") is not None
        recorded = [a for a in _actions(env) if a.reason == "PruneBlocked"]
        assert len(recorded) == 1 and recorded[0].result == "skipped" and "by-hand" in (recorded[0].error or "")
        env.run(prune=True)  # the same situation: not recorded again
        assert len([a for a in _actions(env) if a.reason == "PruneBlocked"]) == 1
        # once it holds nothing but this instance's objects that Git no longer has, it goes
        kubectl(cluster, "admin", "-n", app, "delete", "configmap", "by-hand")
        kubectl(cluster, "admin", "-n", app, "annotate", "configmap", "b", "gitops.dev/reconcile-")
        env.repo.remove("app.yaml")
        env.repo.commit("the whole app goes")
        gone = env.run(prune=True, allow_mass_prune=True)
        assert gone.failed == 0 and gone.pruned == 3, (gone.plan, gone.errors)
        wait_until(lambda: _get(cluster, "namespace", app) is None, timeout=60, what="the namespace to go")
    finally:
        kubectl(cluster, "admin", "delete", "namespace", app, "--ignore-not-found", "--wait=false", check=False)


def test_objects_refused_for_a_missing_namespace_are_retried_as_soon_as_it_exists(
        cluster: Cluster, tmp_path: Path, namespace: str) -> None:
    late = f"{namespace}-late"
    e = Env(cluster, tmp_path, namespace, retry_initial=600)
    try:
        e.write("cm.yaml", configmap("early", late))
        e.repo.commit("a ConfigMap in a namespace nobody made yet")
        first = e.run()
        assert first.failed == 1 and "not found" in first.errors[0][1]
        assert e.run().plan.skipped  # held: nothing changed
        kubectl(cluster, "admin", "create", "namespace", late)
        again = e.run()
        assert (again.created, again.failed) == (1, 0), (again.plan, again.errors)
        assert _get(cluster, "-n", late, "configmap", "early") is not None
    finally:
        e.close()
        kubectl(cluster, "admin", "delete", "namespace", late, "--ignore-not-found", "--wait=false", check=False)


def test_another_instances_object_is_a_shared_resource_error_unless_adopted(
        env: Env, cluster: Cluster, tmp_path: Path, namespace: str) -> None:
    kubectl(cluster, "admin", "-n", env.ns, "create", "configmap", "shared", "--from-literal=k=theirs")
    kubectl(cluster, "admin", "-n", env.ns, "label", "configmap", "shared", "gitops.dev/instance=blue")
    env.write("cm.yaml", configmap("shared", env.ns, k="ours"))
    env.repo.commit("a ConfigMap instance blue applies")
    result = env.run()
    assert (result.failed, result.updated) == (1, 0)
    assert _get(cluster, "-n", env.ns, "configmap", "shared")["data"] == {"k": "theirs"}
    [refused] = [a for a in _actions(env) if a.reason == "SharedResource"]
    assert refused.result == "failed" and refused.terminal and "instance 'blue'" in (refused.error or "")
    e = Env(cluster, tmp_path / "adopting", namespace, adopt_from=["blue"])
    try:
        e.write("cm.yaml", configmap("shared", namespace, k="ours"))
        e.repo.commit("taken over from blue")
        taken = e.run()
        assert (taken.updated, taken.failed) == (1, 0), taken.errors
        live = _get(cluster, "-n", namespace, "configmap", "shared")
        assert live["data"] == {"k": "ours"} and live["metadata"]["labels"]["gitops.dev/instance"] == namespace
    finally:
        e.close()


def test_a_second_setup_with_the_same_instance_name_never_prunes_the_first_ones_objects(
        env: Env, cluster: Cluster, tmp_path: Path, namespace: str) -> None:
    env.write("cm.yaml", configmap("first", env.ns))
    env.repo.commit("the first setup's ConfigMap")
    assert env.run().created == 1
    kubectl(cluster, "admin", "-n", env.ns, "create", "configmap", "by-hand")
    kubectl(cluster, "admin", "-n", env.ns, "label", "configmap", "by-hand", f"gitops.dev/instance={env.ns}")
    other = Env(cluster, tmp_path / "second", namespace)  # another repository and log, the same instance name
    try:
        other.write("cm.yaml", configmap("second", namespace))
        other.repo.commit("the second setup's ConfigMap")
        result = other.run(prune=True, allow_mass_prune=True)
        assert (result.created, result.pruned) == (1, 0), result.plan
        assert sorted((a.key, a.reason) for a in result.plan.skipped) == [
            (f"ConfigMap/{namespace}/by-hand", "NotInInventory"), (f"ConfigMap/{namespace}/first", "NotInInventory")]
        assert _get(cluster, "-n", namespace, "configmap", "first") is not None  # checked with kubectl
        assert _get(cluster, "-n", namespace, "configmap", "by-hand") is not None
        diff = gitops(other.db, "diff", "--instance", namespace)  # nor are they its orphans in what it says
        assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr
        other.repo.remove("cm.yaml")
        other.repo.commit("the second goes")
        gone = other.run(prune=True, allow_mass_prune=True)  # what it desired once is its own to prune
        assert gone.pruned == 1, gone.plan
        wait_until(lambda: _get(cluster, "-n", namespace, "configmap", "second") is None, what="the prune")
    finally:
        other.close()


def test_an_action_is_what_the_server_did_and_no_pass_plans_from_a_half_listed_cluster(
        env: Env, cluster: Cluster) -> None:
    kubectl(cluster, "admin", "-n", env.ns, "create", "configmap", "there", "--from-literal=k=1")
    env.write("cm.yaml", configmap("there", env.ns, k="2"))
    env.repo.commit("a ConfigMap that exists already")
    r = env.reconciler()
    assert env._service is not None and env._service.git is not None
    source = env._service.git

    def git() -> None:
        source.run()

    r.cluster_synced = lambda timeout: False  # the watchers have not listed yet
    waiting = r.run_pass(ingest=git)
    assert (waiting.status, waiting.plan.actions) == ("skipped", []) and "waiting for the cluster" in (
        waiting.held or "")
    assert _get(cluster, "-n", env.ns, "configmap", "there")["data"] == {"k": "1"}
    r.cluster_synced = None
    blind = r.run_pass(ingest=git)  # the log has not seen the object: the plan says create
    assert [a.op for a in blind.plan.actions] == ["create"]
    assert (blind.created, blind.updated) == (0, 1)  # the server answered 200: it updated one
    [action] = _actions(env)
    assert (action.action, action.planned, action.result) == ("update", "create", "succeeded")


def test_a_dry_run_of_a_first_deploy_treats_its_new_namespaces_as_present_and_exits_1_on_a_failure(
        env: Env, cluster: Cluster, tmp_path: Path) -> None:
    new = f"{env.ns}-new"
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad", "namespace": env.ns},
           "spec": {"selector": {"matchLabels": {"app": "x"}},
                    "template": {"metadata": {"labels": {"app": "y"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    env.write("app.yaml", *_namespaced_app(new), bad)
    env.repo.commit("a first deploy")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "git": {"repo": str(env.repo.path)},
        "cluster": {"kubeconfig": str(cluster.kubeconfig), "context": "admin"},
        "reconcile": {"instance": env.ns, "lease": {"enabled": False}}}))
    res = subprocess.run([sys.executable, "-m", "gitops", "--db", str(tmp_path / "dry.db"), "--config", str(config),
                          "reconcile", "--dry-run"], capture_output=True, text=True, timeout=180)
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"would create ConfigMap/{new}/a: not checked by the server: its namespace {new} would be created " \
           "first" in res.stdout
    # no namespace-not-found refusal (the namespace's random name may itself hold "404")
    assert "HTTP 404" not in res.stdout and "NotFound" not in res.stdout
    assert f"would create Deployment.apps/{env.ns}/bad: HTTP 422" in res.stdout
    assert "1 of 4 actions would fail" in res.stderr and res.stderr.count("\n") == 1
    assert _get(cluster, "namespace", new) is None  # a dry run writes nothing


def test_a_500_is_retried_a_bounded_number_of_times_and_server_fields_in_git_are_left_out(
        cluster: Cluster, tmp_path: Path, namespace: str) -> None:
    e = Env(cluster, tmp_path, namespace, retry_limit=2, retry_initial=1, retry_max=1)
    now = [1000.0]
    try:
        # kubectl get -o yaml, committed as it was: server fields and status
        exported: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": namespace, "uid": "0c0ffee0-0000-0000-0000-000000000000",
                                 "resourceVersion": "12345", "creationTimestamp": "2020-01-01T00:00:00Z",
                                 "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
                    "spec": {"selector": {"matchLabels": {"app": "web"}},
                             "template": {"metadata": {"labels": {"app": "web"}},
                                          "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
                    "status": {"replicas": 3}}
        undeclared = {**configmap("odd", namespace), "spec": {"field": "not in the schema"}}
        e.write("web.yaml", exported)
        e.write("odd.yaml", undeclared)
        e.repo.commit("an export and a field no schema declares")
        r = e.reconciler()
        r.monotonic = lambda: now[0]
        first = e.run()
        assert first.created == 1 and first.failed == 1
        assert any("fields only the API server sets (metadata.uid, metadata.resourceVersion, "
                   "metadata.creationTimestamp, metadata.managedFields, status)" in w for w in first.warnings)
        assert _get(cluster, "-n", namespace, "deployment", "web")["metadata"]["uid"] != exported["metadata"]["uid"]
        web = next(a for a in _actions(e) if a.result == "succeeded")
        assert web.dropped == ["metadata.uid", "metadata.resourceVersion", "metadata.creationTimestamp",
                               "metadata.managedFields", "status"]
        odd = next(a for a in _actions(e) if a.result == "failed")
        assert odd.code == 500 and not odd.terminal
        now[0] += 10
        second = e.run()
        assert second.failed == 1 and "gave up after 2 tries" in second.errors[0][1]
        assert _actions(e)[-1].terminal
        now[0] += 10_000
        third = e.run()  # terminal: not tried again until Git or the live object changes
        assert third.failed == 0 and third.plan.skipped and not third.warnings  # the warning was said once
    finally:
        e.close()


def test_the_control_planes_own_writes_are_neither_drift_nor_out_of_band(env: Env, cluster: Cluster) -> None:
    if cluster.audit_log is None:
        pytest.skip("needs the audit log")
    env.write("sa.yaml", {"apiVersion": "v1", "kind": "ServiceAccount",
                          "metadata": {"name": "robot", "namespace": env.ns}})
    env.repo.commit("a ServiceAccount")
    env.run()
    # the token controller adds the token Secret to it, as kube-controller-manager
    wait_until(lambda: (_get(cluster, "-n", env.ns, "serviceaccount", "robot") or {}).get("secrets"),
               what="the token controller")
    time.sleep(1)
    later = env.run()
    assert later.drift_opened == 0 and later.plan.unchanged == 1 and later.plan.actions == []
    with EventLog(env.db) as log:
        oob = list(audit_rows(log, out_of_band=True, resource=f"ServiceAccount/{env.ns}/robot"))
        assert oob == []
        seen = [r.event for r in log.read(types=["cluster.observed"], resource=f"ServiceAccount/{env.ns}/robot")]
    assert any(getattr(e.payload, "control_plane", False) and e.actor == "system:kube-controller-manager"
               for e in seen), [(e.actor, e.payload) for e in seen]
    assert [r.event for r in env.events("drift.opened")] == []


def test_an_in_sync_pass_of_gitops_reconcile_writes_nothing_not_even_the_lease(
        env: Env, cluster: Cluster, tmp_path: Path) -> None:
    if cluster.audit_log is None:
        pytest.skip("counting writes needs the audit log")
    env.write("cm.yaml", configmap("calm", env.ns))
    env.repo.commit("one ConfigMap")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "git": {"repo": str(env.repo.path)},
        "cluster": {"kubeconfig": str(cluster.kubeconfig), "context": "admin"},
        "reconcile": {"instance": env.ns, "lease": {"namespace": env.ns}}}))

    def reconcile() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gitops", "--db", str(tmp_path / "g.db"), "--config",
                               str(config), "reconcile"], capture_output=True, text=True, timeout=180)

    first = reconcile()
    assert first.returncode == 0, first.stderr
    written = settled_writes(cluster, 0, env.ns)
    assert "patch configmaps/calm" in written and any(w.startswith(("create leases", "update leases"))
                                                      for w in written)  # it applied, under the lease
    mark = cluster.audit_log.stat().st_size
    second = reconcile()
    assert second.returncode == 0 and "1 in sync" in second.stdout, second.stdout + second.stderr
    assert settled_writes(cluster, mark, env.ns) == []
    assert reconciler_writes(cluster, mark, env.ns) == []


def test_a_pass_a_kill_cut_short_is_recorded_as_interrupted_by_the_next(env: Env, cluster: Cluster,
                                                                         tmp_path: Path) -> None:
    for i in range(150):
        env.write(f"cm-{i:03}.yaml", configmap(f"c{i:03}", env.ns))
    env.repo.commit("many ConfigMaps")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "git": {"repo": str(env.repo.path)},
        "cluster": {"kubeconfig": str(cluster.kubeconfig), "context": "admin"},
        "reconcile": {"instance": env.ns, "lease": {"namespace": env.ns, "duration": 1, "renew": 0.5}}}))
    db = tmp_path / "g.db"
    cmd = [sys.executable, "-m", "gitops", "--db", str(db), "--config", str(config), "reconcile"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def acted() -> bool:
        if not db.exists():
            return False
        try:
            with EventLog(db) as log:
                return log.count_where(types=["reconcile.action"]) >= 3
        except Exception:  # noqa: BLE001 - the schema may not be there yet
            return False

    try:
        wait_until(acted, timeout=120, interval=0.05, what="the pass to act")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with EventLog(db) as log:
        started = [r for r in log.read(types=["reconcile.started"])]
        done = log.count_where(types=["reconcile.action"])
        assert log.count_where(types=["reconcile.finished"]) == 0
    assert done < 150, "the kill came too late to cut the pass short"
    time.sleep(2.5)  # the killed holder's lease (1 s) is long dead by this machine's clock: the next run takes it
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    with EventLog(db) as log:
        [found] = [r.event for r in log.read(types=["reconcile.interrupted"])]
        assert log.checkpoints(f"reconciler:{env.ns}:running:") == {}
    assert isinstance(found, ReconcileInterrupted)
    assert found.payload.run_id == started[0].event.payload.run_id  # type: ignore[union-attr]
    assert found.payload.started_seq == started[0].seq and found.payload.actions == done
