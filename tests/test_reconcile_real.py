"""The reconciler on a real application (``tests/apps/shop.yaml``): a first pass applies
everything where Git says, a second sends nothing (counted from the API server's audit log),
``gitops diff`` finds nothing; the same objects first made by ``kubectl apply`` are adopted in
one pass; a controller that sets a field back is a conflict, not a loop."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pykube
import pytest

from gitops.events.models import ClusterObserved, ReconcileAction
from gitops.store import EventLog
from tests.cluster_fixtures import Cluster, kubectl, wait_until
from tests.test_reconcile import Env

pytestmark = pytest.mark.cluster

SHOP = Path(__file__).resolve().parent / "apps" / "shop.yaml"
N_OBJECTS = 15  # the documents of shop.yaml


def shop(ns: str) -> str:
    return SHOP.read_text().replace("NS", ns)


def reconciler_writes(cluster: Cluster, since: int, instance: str) -> list[str]:
    """Every write the API server's audit log holds after byte ``since`` that the reconciler
    of ``instance`` sent (its User-Agent names it): leases and cluster-scoped objects too."""
    assert cluster.audit_log is not None
    out = []
    with cluster.audit_log.open("rb") as f:
        f.seek(since)
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            ref = rec.get("objectRef") or {}
            if rec.get("stage") == "ResponseComplete" and rec.get("verb") in ("create", "update", "patch", "delete") \
                    and f"/{instance} (" in str(rec.get("userAgent")):
                out.append(f"{rec['verb']} {ref.get('resource')}/{ref.get('name')}")
    return out


def settled_writes(cluster: Cluster, since: int, namespace: str) -> list[str]:
    """``reconciler_writes`` once the audit log is known to hold everything written until now
    (it is written asynchronously: a marker write made after bounds it)."""
    name = f"marker-{since}"
    kubectl(cluster, "admin", "-n", namespace, "create", "configmap", name)
    assert cluster.audit_log is not None
    wait_until(lambda: name.encode() in cluster.audit_log.read_bytes()[since:], what="the marker in the audit log")
    return reconciler_writes(cluster, since, namespace)


def gitops(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), *args], capture_output=True, text=True,
                          timeout=180)


@pytest.fixture
def env(cluster: Cluster, tmp_path: Path, namespace: str) -> Any:
    if cluster.audit_log is None:
        pytest.skip("counting writes needs the API server's audit log")
    e = Env(cluster, tmp_path, namespace)
    yield e
    e.close()
    kubectl(cluster, "admin", "delete", "clusterrole", f"{namespace}-shop-viewer", f"{namespace}-shop-view-carts",
            f"{namespace}-nothing-yet", "--ignore-not-found", check=False)


def _aggregated(cluster: Cluster, ns: str) -> list[Any]:
    role = json.loads(kubectl(cluster, "admin", "get", "clusterrole", f"{ns}-shop-viewer", "-o", "json").stdout)
    return list(role.get("rules") or [])


def test_a_real_application_is_applied_once_and_a_second_pass_sends_nothing(env: Env, cluster: Cluster) -> None:
    env.write("shop.yaml", shop(env.ns))
    env.repo.commit("the shop")
    first = env.run()
    assert (first.failed, first.created) == (0, N_OBJECTS), first.errors
    dns = json.loads(kubectl(cluster, "admin", "-n", env.ns, "get", "service", "dns", "-o", "json").stdout)
    assert sorted((p["port"], p["protocol"]) for p in dns["spec"]["ports"]) == [(53, "TCP"), (53, "UDP"),
                                                                                (9153, "TCP")]
    web = json.loads(kubectl(cluster, "admin", "-n", env.ns, "get", "service", "frontend", "-o", "json").stdout)
    assert web["spec"]["ports"][0]["protocol"] == "TCP"  # defaulted before the apply (a 500 on 1.20 without)
    wait_until(lambda: _aggregated(cluster, env.ns), what="the aggregation controller to fill the rules")
    settled_writes(cluster, 0, env.ns)
    mark = cluster.audit_log.stat().st_size if cluster.audit_log else 0
    second = env.run()
    assert (second.plan.actions, second.plan.unchanged, second.failed) == ([], N_OBJECTS, 0), second.plan
    third = env.run()  # the controller's rules and the servers' defaults are no drift, pass after pass
    assert third.plan.actions == [] and third.drift_opened == 0
    assert settled_writes(cluster, mark, env.ns) == []
    assert _aggregated(cluster, env.ns), "the apply must leave the aggregated rules to their controller"
    diff = gitops(env.db, "diff", "--instance", env.ns)
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr
    assert diff.stderr.strip().endswith("the cluster matches Git")


def test_objects_made_by_kubectl_apply_are_adopted_in_one_pass(env: Env, cluster: Cluster, admin_api: Any) -> None:
    kubectl(cluster, "admin", "apply", "-f", "-", stdin=shop(env.ns))  # client-side, as most clusters began
    env.write("shop.yaml", shop(env.ns))
    env.repo.commit("the shop, now in Git")
    adopted = env.run()
    assert adopted.failed == 0, adopted.errors
    assert adopted.updated == N_OBJECTS and adopted.created == 0
    wait_until(lambda: _aggregated(cluster, env.ns), what="the aggregated rules")
    settled_writes(cluster, 0, env.ns)
    mark = cluster.audit_log.stat().st_size if cluster.audit_log else 0
    second = env.run()
    assert (second.plan.actions, second.plan.unchanged) == ([], N_OBJECTS), second.plan
    assert settled_writes(cluster, mark, env.ns) == []
    deploy = pykube.Deployment.objects(admin_api, namespace=env.ns).get(name="frontend").obj
    managers = {m["manager"]: m for m in deploy["metadata"]["managedFields"]}
    assert managers["gitops"]["operation"] == "Apply"
    # kubectl's entry keeps only its last-applied annotation: every other field it set is gitops's now
    assert managers["kubectl-client-side-apply"]["fieldsV1"] == {
        "f:metadata": {"f:annotations": {"f:kubectl.kubernetes.io/last-applied-configuration": {}}}}
    with EventLog(env.db) as log:
        actions = [r.event.payload for r in log.read(types=["reconcile.action"])
                   if isinstance(r.event, ReconcileAction)]
    assert {(a.action, a.result) for a in actions} == {("update", "succeeded")}


def test_a_field_a_controller_sets_back_is_a_conflict_and_not_a_loop(env: Env, cluster: Cluster,
                                                                     admin_api: Any) -> None:
    """A real controller (a thread of this test watching the API server) owns data.mode."""
    stop = threading.Event()

    def controller() -> None:
        while not stop.is_set():
            try:
                for ev in pykube.ConfigMap.objects(admin_api, namespace=env.ns).filter(
                        field_selector={"metadata.name": "tuned"}).watch():
                    if stop.is_set():
                        return
                    if ev.type != "DELETED" and (ev.object.obj.get("data") or {}).get("mode") != "controller":
                        admin_api.session.patch(
                            admin_api.url + f"/api/v1/namespaces/{env.ns}/configmaps/tuned",
                            params={"fieldManager": "mode-controller"},
                            data=json.dumps({"data": {"mode": "controller"}}),
                            headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
            except Exception:  # noqa: BLE001 - the watch ended or raced a write: watch again
                continue

    t = threading.Thread(target=controller, daemon=True)
    t.start()
    try:
        env.write("tuned.yaml", {"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "tuned", "namespace": env.ns}, "data": {"mode": "git"}})
        env.repo.commit("mode: git")
        results = []
        for _ in range(6):
            results.append(env.run())
            wait_until(lambda: json.loads(kubectl(cluster, "admin", "-n", env.ns, "get", "configmap", "tuned", "-o",
                                                  "json").stdout)["data"]["mode"] == "controller",
                       what="the controller to set the field back")
    finally:
        stop.set()
    writes = [r.created + r.updated for r in results]
    assert writes == [1, 1, 1, 0, 0, 0], writes  # three writes undone, then no more
    conflict = results[3]
    assert conflict.failed == 1 and [a.reason for a in conflict.plan.skipped] == ["Conflict"]
    why = conflict.plan.skipped[0].skipped or ""
    assert "data.mode set back by mode-controller" in why, why
    assert all(r.failed == 0 and r.plan.skipped[0].reason is None for r in results[4:])  # recorded once
    with EventLog(env.db) as log:
        recorded = [r.event.payload for r in log.read(types=["reconcile.action"])
                    if isinstance(r.event, ReconcileAction) and r.event.payload.reason == "Conflict"]
    assert len(recorded) == 1 and recorded[0].result == "failed" and recorded[0].terminal
    env.write("tuned.yaml", {"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "tuned", "namespace": env.ns}, "data": {"mode": "controller"}})
    env.repo.commit("Git agrees with the controller")
    assert env.run().plan.unchanged == 1  # Git changed: the conflict is over


def test_a_custom_resources_quantities_compare_by_the_servers_schema_and_its_crds_status_is_not_drift(
        env: Env, cluster: Cluster) -> None:
    from gitops.query.audit import audit_rows
    from tests.cluster_fixtures import grant

    group = f"{env.ns}.example.com"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"caches.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": "caches", "singular": "cache", "kind": "Cache"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "properties": {
                            "memory": {"anyOf": [{"type": "integer"}, {"type": "string"}],
                                       "x-kubernetes-int-or-string": True,
                                       "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
                                                  r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"}}}}}}}]}}
    cache = {"apiVersion": f"{group}/v1", "kind": "Cache", "metadata": {"name": "c", "namespace": env.ns},
             "spec": {"memory": "1Gi"}}
    env.write("crd.yaml", crd)
    env.write("cache.yaml", cache)
    env.repo.commit("a CRD and a cache")
    try:
        first = env.run()
        assert (first.created, first.failed) == (2, 0), first.errors
        assert env.run().plan.unchanged == 2  # the next pass lists the cluster, its schema with the CRD's
        grant(cluster, env.ns, "alice")
        kubectl(cluster, "admin", "create", "clusterrole", f"{env.ns}-caches", f"--resource=caches.{group}",
                "--verb=get,patch,list,watch")
        kubectl(cluster, "admin", "-n", env.ns, "create", "rolebinding", "alice-caches",
                f"--clusterrole={env.ns}-caches", "--user=alice")
        wait_until(lambda: kubectl(cluster, "alice", "-n", env.ns, "auth", "can-i", "patch", f"caches.{group}",
                                   check=False).stdout.strip() == "yes", what="alice's rights")
        kubectl(cluster, "alice", "-n", env.ns, "patch", f"caches.{group}", "c", "--type=merge",
                "-p", '{"spec":{"memory":"1024Mi"}}')  # the same quantity, written another way
        same = env.run()
        assert (same.plan.actions, same.plan.unchanged, same.drift_opened) == ([], 2, 0), same.plan
        with EventLog(env.db) as log:
            crd_key = f"CustomResourceDefinition.apiextensions.k8s.io/caches.{group}"
            assert list(audit_rows(log, out_of_band=True, resource=crd_key)) == []  # its status: system:apiserver
            statuses = [r.event for r in log.read(resource=crd_key, types=["cluster.observed"])
                        if isinstance(r.event, ClusterObserved)]
        assert any(e.actor == "system:apiserver" and e.payload.control_plane for e in statuses), [
            (e.actor, e.payload.attribution) for e in statuses]
    finally:
        kubectl(cluster, "admin", "delete", "crd", f"caches.{group}", "--wait=false", check=False)
        kubectl(cluster, "admin", "delete", "clusterrole", f"{env.ns}-caches", "--ignore-not-found", check=False)
