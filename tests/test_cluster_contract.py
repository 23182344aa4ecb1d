"""Contract tests of the Kubernetes API behaviour later issues rely on, against the real
local control plane (or GITOPS_TEST_KUBECONFIG), through pykube-ng. No mocks."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pykube
import pytest
import requests

from tests.cluster_fixtures import Cluster, wait_until
from tests.gitrepo import configmap

pytestmark = pytest.mark.cluster


def server_side_apply(api: Any, obj: dict[str, Any], manager: str) -> dict[str, Any]:
    """Server-side apply through pykube's HTTP client (pykube has no helper for it)."""
    meta = obj["metadata"]
    r = api.patch(
        version=obj["apiVersion"], namespace=meta.get("namespace"),
        url=f"{obj['kind'].lower()}s/{meta['name']}",
        params={"fieldManager": manager, "force": "true"},
        headers={"Content-Type": "application/apply-patch+yaml"},
        data=json.dumps(obj),
    )
    api.raise_for_status(r)
    return r.json()  # type: ignore[no-any-return]


def test_create_and_read_back(admin_api: Any, namespace: str) -> None:
    cm = pykube.ConfigMap(admin_api, configmap("created", namespace))
    cm.create()
    got = pykube.ConfigMap.objects(admin_api, namespace=namespace).get(name="created")
    assert got.obj["data"] == {"k": "v"}
    assert got.obj["metadata"]["resourceVersion"]
    assert got.obj["metadata"]["managedFields"][0]["operation"] == "Update"


def test_server_side_apply_records_the_field_manager(admin_api: Any, namespace: str) -> None:
    obj = server_side_apply(admin_api, configmap("applied", namespace, a="1"), "gitops-test")
    managers = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
    assert ("gitops-test", "Apply") in managers
    # a second manager taking a field over shows as its own entry
    obj = server_side_apply(admin_api, configmap("applied", namespace, a="2"), "someone-else")
    assert obj["data"] == {"a": "2"}
    assert "someone-else" in {m["manager"] for m in obj["metadata"]["managedFields"]}


def test_list_then_watch_from_the_list_resource_version(admin_api: Any, namespace: str) -> None:
    pykube.ConfigMap(admin_api, configmap("before", namespace)).create()
    query = pykube.ConfigMap.objects(admin_api, namespace=namespace)
    listed = query.response
    assert [i["metadata"]["name"] for i in listed["items"]] == ["before"]
    rv = listed["metadata"]["resourceVersion"]

    def change() -> None:
        pykube.ConfigMap(admin_api, configmap("after", namespace)).create()
        cm = pykube.ConfigMap.objects(admin_api, namespace=namespace).get(name="after")
        cm.obj["data"] = {"k": "changed"}
        cm.update()
        cm.delete()

    threading.Timer(0.5, change).start()
    seen: list[tuple[str, str]] = []
    watch = query.watch(since=rv, params={"timeoutSeconds": "20", "allowWatchBookmarks": "true"})
    for ev in watch:
        if ev.type == "BOOKMARK":
            continue
        seen.append((ev.type, ev.object.name))
        if ev.type == "DELETED":
            break
    assert seen == [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "after")]


def _watch_status(query: Any, since: str) -> dict[str, Any] | None:
    """The Status a watch from ``since`` ends with, or None if it streams normally."""
    try:
        for ev in query.watch(since=since, params={"timeoutSeconds": "5"}):
            if ev.type == "ERROR":  # the watch stream reports Gone as an ERROR event ...
                return ev.object.obj  # type: ignore[no-any-return]
    except pykube.exceptions.HTTPError as e:  # ... or as the HTTP status of the request
        return {"code": e.code, "message": str(e)}
    return None


def test_a_watch_from_a_too_old_resource_version_gets_410_and_relisting_recovers(
    cluster: Cluster, admin_api: Any, namespace: str,
) -> None:
    for i in range(3):
        pykube.ConfigMap(admin_api, configmap(f"cm{i}", namespace)).create()
    query = pykube.ConfigMap.objects(admin_api, namespace=namespace)
    old_rv = query.response["metadata"]["resourceVersion"]
    pykube.ConfigMap(admin_api, configmap("cm0", namespace)).delete()  # missed while "down"
    # What an informer meets after an outage: etcd compacted past its resourceVersion, and an
    # API server whose watch cache starts after it.
    cluster.compact_etcd()
    cluster.stop_apiserver()
    cluster.start_apiserver()
    status = _watch_status(query, old_rv)
    assert status is not None and status["code"] == 410, status
    # recover the informer way: relist, then watch from the new list's resourceVersion
    relisted = pykube.ConfigMap.objects(admin_api, namespace=namespace).response
    assert sorted(i["metadata"]["name"] for i in relisted["items"]) == ["cm1", "cm2"]
    threading.Timer(0.5, lambda: pykube.ConfigMap(admin_api, configmap("cm3", namespace)).create()).start()
    for ev in query.watch(since=relisted["metadata"]["resourceVersion"], params={"timeoutSeconds": "20"}):
        assert ev.type != "ERROR", ev.object.obj
        assert (ev.type, ev.object.name) == ("ADDED", "cm3")
        break
    else:
        pytest.fail("the watch after relisting saw nothing")


def test_delete_then_get_is_404(admin_api: Any, namespace: str) -> None:
    cm = pykube.ConfigMap(admin_api, configmap("doomed", namespace))
    cm.create()
    cm.delete()
    assert pykube.ConfigMap.objects(admin_api, namespace=namespace).get_or_none(name="doomed") is None


def test_namespace_deletion_completes(admin_api: Any) -> None:
    name = f"t-del-{uuid.uuid4().hex[:8]}"
    ns = pykube.Namespace(admin_api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    ns.create()
    pykube.ConfigMap(admin_api, configmap("content", name)).create()
    ns.delete()
    # the namespace controller must empty it and remove the finalizer
    wait_until(lambda: pykube.Namespace.objects(admin_api).get_or_none(name=name) is None,
               timeout=90, what=f"namespace {name} to be deleted")


def test_rbac_refuses_a_user_without_rights(bob_api: Any, namespace: str) -> None:
    with pytest.raises(pykube.exceptions.HTTPError) as err:
        pykube.ConfigMap(bob_api, configmap("nope", namespace)).create()
    assert err.value.code == 403


def _audit_events(path: Path) -> list[dict[str, Any]]:
    """The audit log's records; the last line may be torn (the API server is writing it:
    read while it grows, it ends mid-record), and is left for the next read."""
    text = path.read_text()
    lines = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
    return [json.loads(line) for line in lines if line.strip()]


def test_an_edit_by_alice_is_in_the_audit_log_with_her_name_and_the_new_resource_version(
    cluster: Cluster, admin_api: Any, alice_api: Any, namespace: str,
) -> None:
    assert cluster.audit_log is not None
    pykube.RoleBinding(admin_api, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice-edit", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
    }).create()
    pykube.ConfigMap(admin_api, configmap("edited", namespace)).create()

    def alice_can_patch() -> str | None:
        try:
            cm = pykube.ConfigMap.objects(alice_api, namespace=namespace).get(name="edited")
            cm.obj["data"] = {"k": "by-alice"}
            cm.update()
        except (pykube.exceptions.HTTPError, requests.HTTPError):
            return None  # RBAC caches may take a moment to see the new binding
        return str(cm.obj["metadata"]["resourceVersion"])

    new_rv = wait_until(alice_can_patch, timeout=30, what="alice's edit to be allowed")

    def audited() -> dict[str, Any] | None:
        for ev in _audit_events(cluster.audit_log):  # type: ignore[arg-type]
            ref = ev.get("objectRef", {})
            if (ev["user"]["username"] == "alice" and ref.get("namespace") == namespace
                    and ref.get("name") == "edited" and ev["verb"] == "patch"
                    and ev.get("stage") == "ResponseComplete"):
                return ev
        return None

    ev = wait_until(audited, timeout=10, what="alice's patch in the audit log")
    assert ev["responseObject"]["metadata"]["resourceVersion"] == new_rv
    assert ev["responseObject"]["data"] == {"k": "by-alice"}
    assert ev["responseStatus"]["code"] == 200


def test_secrets_are_audited_without_their_values(cluster: Cluster, admin_api: Any, namespace: str) -> None:
    assert cluster.audit_log is not None
    value = f"never-in-the-audit-log-{uuid.uuid4().hex}"
    pykube.Secret(admin_api, {"apiVersion": "v1", "kind": "Secret",
                              "metadata": {"name": "s", "namespace": namespace},
                              "stringData": {"password": value}}).create()

    def audited() -> bool:
        return any(ev.get("objectRef", {}).get("resource") == "secrets"
                   and ev.get("objectRef", {}).get("namespace") == namespace
                   for ev in _audit_events(cluster.audit_log))  # type: ignore[arg-type]

    wait_until(audited, timeout=10, what="the Secret's creation in the audit log")
    assert value not in cluster.audit_log.read_text()


def test_custom_resources_can_be_created_read_and_applied(admin_api: Any, namespace: str) -> None:
    """The local control plane once crashed on any custom resource (its vendored reflect2
    predated Go 1.18): a CRD, then a custom resource created, read back and server-side applied."""
    from tests.test_cluster_source import install_cluster_scoped_crd

    group = f"{namespace}.example.com"  # a group of this run's own: CRDs outlive a test
    install_cluster_scoped_crd(admin_api, group, "Widget")
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}}
    r = admin_api.post(version=f"{group}/v1", url="widgets", data=json.dumps(widget))
    admin_api.raise_for_status(r)
    got = admin_api.get(version=f"{group}/v1", url="widgets/w1")
    admin_api.raise_for_status(got)
    assert got.json()["spec"] == {"size": 3}
    applied = server_side_apply(admin_api, {**widget, "spec": {"size": 4}}, "gitops")
    assert applied["spec"] == {"size": 4}
    assert admin_api.get(version="v1", url="namespaces").status_code == 200  # and the server still answers


def test_a_dry_run_delete_or_apply_by_our_client_changes_nothing(cluster: Cluster, admin_api: Any,
                                                                  namespace: str) -> None:
    """The reconciler's dry runs: the server answers as if, and keeps the object. (A
    DeleteOptions body without dryRun overrides the query's dryRun=All: the 1.20 server
    deleted for real until the body said it too.)"""
    from gitops.sources.cluster.client import ClusterClient

    pykube.ConfigMap(admin_api, configmap("keep", namespace, k="1")).create()
    client = ClusterClient(str(cluster.kubeconfig), context="admin" if cluster.local else None)
    try:
        kind = next(k for k in client.discover().kinds.values() if k.kind == "ConfigMap")
        client.delete(kind, namespace, "keep", dry_run=True)
        would = client.apply(kind, configmap("keep", namespace, k="2"), field_manager="gitops", force=True,
                             dry_run=True)
        assert would.object["data"] == {"k": "2"}  # what it would be
    finally:
        client.close()
    live = pykube.ConfigMap.objects(admin_api, namespace=namespace).get(name="keep")
    assert live.obj["data"] == {"k": "1"}  # what it is
