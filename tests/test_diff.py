"""The diff: pure cases, then golden pairs from the real control plane (what it returned
after the desired manifest was applied must be in sync) and real drift made by alice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pykube
import pytest
import yaml

from gitops.diff import OWNERSHIP_LABEL, DiffItem, DiffSettings, Op, Status, diff_object, diff_states, same_scalar
from gitops.events import redact
from tests.cluster_fixtures import Cluster, grant, kubectl, wait_until


@pytest.mark.parametrize(("desired", "actual", "quantity", "same"), [
    ("1", "1000m", True, True), ("0.5", "500m", True, True), ("1Gi", "1024Mi", True, True), (1, "1", True, True),
    ("1Gi", "1G", True, False), ("1", "1000m", False, False), (8080, "8080", False, True), (True, "true", False, False),
    (1.0, 1, False, True),
])
def test_scalars_compare_by_meaning(desired: object, actual: object, quantity: bool, same: bool) -> None:
    assert same_scalar(desired, actual, quantity=quantity) is same


def test_fields_git_does_not_set_are_not_compared_and_lists_match_by_key() -> None:
    desired = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
               "spec": {"template": {"spec": {"containers": [
                   {"name": "b", "image": "b:1", "env": [{"name": "X", "value": "1"}]},
                   {"name": "a", "image": "a:1", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}}}
    live: dict[str, Any] = {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "uid": "u", "generation": 3},
            "spec": {"replicas": 1, "strategy": {"type": "RollingUpdate"}, "template": {"spec": {"containers": [
                {"name": "a", "image": "a:1", "imagePullPolicy": "IfNotPresent",
                 "resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"}}},
                {"name": "b", "image": "b:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
            ]}}}, "status": {"replicas": 1}}
    assert diff_object(desired, live) == []
    live["spec"]["template"]["spec"]["containers"][1]["image"] = "b:2"
    del live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    assert diff_object(desired, live) == [
        DiffItem(Op.CHANGED, "spec.template.spec.containers[name=b].image", "b:1", "b:2"),
        DiffItem(Op.MISSING, "spec.template.spec.containers[name=a].resources.limits.memory", "1Gi", None),
    ]


def test_a_secrets_values_never_appear_in_a_diff() -> None:
    desired = redact({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"p": "one"}})
    live = redact({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"p": "dHdv"}})  # "two"
    assert diff_object(desired, live) == [DiffItem(Op.CHANGED, "data.p")]
    same = redact({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"p": "b25l"}})  # "one"
    assert diff_object(desired, same) == []


def test_states_pair_by_key_with_missing_and_orphan_objects() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}}
    ours = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "o", "labels": {OWNERSHIP_LABEL: "prod"}}}
    theirs = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t"}}
    result = diff_states({"ConfigMap/d/a": cm, "ConfigMap/d/gone": cm},
                         {"ConfigMap/d/a": cm, "ConfigMap/d/o": ours, "ConfigMap/d/t": theirs}, instance="prod")
    assert [(o.key, o.status) for o in result] == [("ConfigMap/d/a", Status.IN_SYNC),
                                                   ("ConfigMap/d/gone", Status.MISSING),
                                                   ("ConfigMap/d/o", Status.ORPHAN)]


# ---------------------------------------------------------------------------- the real control plane

GOLDEN = Path(__file__).resolve().parent / "golden" / "desired.yaml"


def _api_path(m: dict[str, Any]) -> tuple[str, str, str | None]:
    """(api version, plural, namespace) for the golden kinds."""
    plural = {"Deployment": "deployments", "StatefulSet": "statefulsets", "Service": "services",
              "ConfigMap": "configmaps", "Secret": "secrets", "Ingress": "ingresses", "CronJob": "cronjobs",
              "ClusterRole": "clusterroles", "CustomResourceDefinition": "customresourcedefinitions",
              "Gizmo": "gizmos"}[m["kind"]]
    return m["apiVersion"], plural, m["metadata"].get("namespace")


def _live(api: Any, m: dict[str, Any]) -> dict[str, Any]:
    version, plural, namespace = _api_path(m)
    r = api.get(version=version, namespace=namespace, url=f"{plural}/{m['metadata']['name']}",
                **({"base": "/api"} if "/" not in version else {}))
    api.raise_for_status(r)
    return r.json()  # type: ignore[no-any-return]


def _golden(namespace: str) -> list[dict[str, Any]]:
    docs = list(yaml.safe_load_all(GOLDEN.read_text().replace("NAMESPACE", namespace)))
    return [d for d in docs if d]


@pytest.mark.cluster
def test_what_the_server_returns_for_applied_manifests_is_in_sync(cluster: Cluster, admin_api: Any,
                                                                 namespace: str, tmp_path: Path) -> None:
    # kubectl apply (client side): the local 1.20 API server refuses a server-side apply of a
    # Service port without a protocol (a 1.20 bug)
    docs = _golden(namespace)
    path = tmp_path / "desired.yaml"
    crd = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    path.write_text(yaml.safe_dump_all(crd))
    kubectl(cluster, "admin", "apply", "-f", str(path))
    kubectl(cluster, "admin", "wait", "--for=condition=Established", "-f", str(path), "--timeout=60s")
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    path.write_text(yaml.safe_dump_all(rest))
    kubectl(cluster, "admin", "apply", "-f", str(path))
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    wait_until(lambda: _live(admin_api, role).get("rules"), what="the aggregated ClusterRole's rules")
    for d in docs:
        live = _live(admin_api, d)
        items = diff_object(redact(d), redact(live))
        assert items == [], f"{d['kind']} {d['metadata']['name']}: {items}\nlive: {json.dumps(live)[:2000]}"


@pytest.mark.cluster
def test_every_kind_of_drift_alice_makes_is_caught(cluster: Cluster, admin_api: Any, namespace: str,
                                                  tmp_path: Path) -> None:
    grant(cluster, namespace, "alice")
    deploy = next(d for d in _golden(namespace) if d["kind"] == "Deployment")
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "settings", "namespace": namespace, "labels": {"team": "shop"}}, "data": {"k": "v"}}
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump_all([deploy, cm]))
    kubectl(cluster, "admin", "apply", "--server-side", "--field-manager=gitops", "-f", str(path))
    # the deployment controller's own fields (its revision annotation) are no drift, as gitops diffs by default
    controllers = DiffSettings().ignore_managers
    wait_until(lambda: "deployment.kubernetes.io/revision" in (_live(admin_api, deploy)["metadata"].get(
        "annotations") or {}), what="the deployment controller's annotation")
    assert diff_object(redact(deploy), redact(_live(admin_api, deploy)), ignore_managers=controllers) == []
    assert [i.path for i in diff_object(redact(deploy), redact(_live(admin_api, deploy)))] == [
        "metadata.annotations.deployment.kubernetes.io/revision"]  # it is there, and it is the controller's
    # alice: another image (changed), a variable added (extra), a label Git sets removed (missing)
    kubectl(cluster, "alice", "-n", namespace, "set", "image", "deployment/web", "web=nginx:1.25")
    kubectl(cluster, "alice", "-n", namespace, "set", "env", "deployment/web", "DEBUG=1")
    kubectl(cluster, "alice", "-n", namespace, "label", "configmap", "settings", "team-")
    items = diff_object(redact(deploy), redact(_live(admin_api, deploy)))
    assert DiffItem(Op.CHANGED, "spec.template.spec.containers[name=web].image", "nginx:1.19", "nginx:1.25") in items
    assert DiffItem(Op.EXTRA, "spec.template.spec.containers[name=web].env[name=DEBUG].value", None, "1") in items
    assert diff_object(cm, _live(admin_api, cm)) == [DiffItem(Op.MISSING, "metadata.labels", {"team": "shop"}, None)]
    # an object of ours that Git no longer has, and one alice deleted
    orphan = {**cm, "metadata": {"name": "left-behind", "namespace": namespace, "labels": {OWNERSHIP_LABEL: "t"}}}
    pykube.ConfigMap(admin_api, orphan).create()
    kubectl(cluster, "alice", "-n", namespace, "delete", "configmap", "settings")
    live = {f"ConfigMap/{namespace}/{c.name}": c.obj
            for c in pykube.ConfigMap.objects(admin_api, namespace=namespace).iterator()}
    states = diff_states({f"ConfigMap/{namespace}/settings": cm}, live, instance="t")
    assert [(o.key, o.status) for o in states] == [(f"ConfigMap/{namespace}/left-behind", Status.ORPHAN),
                                                   (f"ConfigMap/{namespace}/settings", Status.MISSING)]


def test_ignore_rules_leave_out_fields_of_matching_objects_only() -> None:
    from gitops.diff import IgnoreRule

    desired = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop",
                                                                           "annotations": {"a/b": "1"}},
               "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "w", "image": "w:1"}]}}}}
    live = {**desired, "metadata": {**desired["metadata"], "annotations": {"a/b": "2"}},  # type: ignore[dict-item]
            "spec": {**desired["spec"], "replicas": 5}}  # type: ignore[dict-item]
    hpa = IgnoreRule(kind="Deployment", namespace="sh*", pointers=["/spec/replicas", "/metadata/annotations/a~1b"])
    assert diff_object(desired, live, ignore=[hpa]) == []
    other = IgnoreRule(kind="Deployment", name="api-*", pointers=["/spec/replicas"])
    assert [i.path for i in diff_object(desired, live, ignore=[other])] == ["metadata.annotations.a/b",
                                                                           "spec.replicas"]
    with pytest.raises(ValueError, match="not a JSON pointer"):
        IgnoreRule(pointers=["spec.replicas"])


def test_fields_of_ignored_managers_are_never_extra() -> None:
    fields: dict[str, Any] = {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"w"}': {"f:env": {
        'k:{"name":"SIDE"}': {".": {}, "f:name": {}, "f:value": {}}}}}}}}}
    desired = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"template": {"spec": {"containers": [{"name": "w", "image": "w:1"}]}}}}
    live = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "managedFields": [
        {"manager": "gitops", "operation": "Apply", "fieldsV1": {}},
        {"manager": "injector", "operation": "Update", "fieldsV1": fields}]},
        "spec": {"template": {"spec": {"containers": [
            {"name": "w", "image": "w:1", "env": [{"name": "SIDE", "value": "car"}]}]}}}}
    assert diff_object(desired, live) == [
        DiffItem(Op.EXTRA, "spec.template.spec.containers[name=w].env[name=SIDE].name", None, "SIDE"),
        DiffItem(Op.EXTRA, "spec.template.spec.containers[name=w].env[name=SIDE].value", None, "car")]
    assert diff_object(desired, live, ignore_managers=["injector"]) == []


def test_the_config_files_diff_section_is_read(tmp_path: Path) -> None:
    from gitops.service.config import load_config

    cfg = tmp_path / "gitops.yaml"
    cfg.write_text("diff:\n  instance: prod\n  ignore_managers: [kube-controller-manager]\n  ignore:\n"
                   "  - kind: Deployment\n    pointers: [/spec/replicas]\n")
    config = load_config(cfg)
    assert (config.diff.instance, config.diff.ignore_managers) == ("prod", ["kube-controller-manager"])
    assert config.diff.ignore[0].pointers == ["/spec/replicas"]
    cfg.write_text("diff:\n  ignore:\n  - pointers: [spec]\n")
    from gitops.model import ConfigError

    with pytest.raises(ConfigError, match="not a JSON pointer"):
        load_config(cfg)
