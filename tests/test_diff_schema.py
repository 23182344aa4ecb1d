"""The diff reads lists, zero values and quantities as the API server does: from the server's
own OpenAPI schema (a real document fetched from the control plane), with a built-in table
for kinds no schema describes; and the form Git manifests are applied in (``as_applied``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gitops.diff import DiffItem, Op, diff_object
from gitops.model.applied import as_applied
from gitops.model.schema import KindSchemas
from tests.cluster_fixtures import Cluster

# A trimmed OpenAPI v2 document with the shapes a real server serves (checked against the
# control plane's own in test_the_servers_own_schema_knows_ports_quantities_and_crds).
DOC: dict[str, Any] = {"definitions": {
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
    "io.k8s.api.core.v1.Service": {
        "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Service"}],
        "properties": {"spec": {"$ref": "#/definitions/io.k8s.api.core.v1.ServiceSpec"}}},
    "io.k8s.api.core.v1.ServiceSpec": {"properties": {"ports": {
        "type": "array", "items": {"$ref": "#/definitions/io.k8s.api.core.v1.ServicePort"},
        "x-kubernetes-list-map-keys": ["port", "protocol"], "x-kubernetes-list-type": "map",
        "x-kubernetes-patch-merge-key": "port"}}},
    "io.k8s.api.core.v1.ServicePort": {"properties": {"port": {"type": "integer"}}},
    "io.k8s.api.core.v1.LimitRange": {
        "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "LimitRange"}],
        "properties": {"spec": {"properties": {"limits": {"type": "array", "items": {"properties": {
            "default": {"type": "object", "additionalProperties": {
                "$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"}}}}}}}}},
    "com.example.v1.Cache": {
        "x-kubernetes-group-version-kind": [{"group": "example.com", "version": "v1", "kind": "Cache"}],
        "properties": {"spec": {"type": "object", "properties": {
            "memory": {"x-kubernetes-int-or-string": True,
                       "pattern": "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE])?$"},
            "finalizers": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "name": {"type": "string"}}}}},
}}
SCHEMAS = KindSchemas.from_openapi(DOC)


def _service(*ports: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns", "namespace": "kube-system"},
            "spec": {"ports": list(ports)}}


def test_ports_are_matched_by_port_and_protocol_so_dns_on_tcp_and_udp_is_in_sync() -> None:
    desired = _service({"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53,
                                                                        "protocol": "TCP"})
    live = _service({"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53})
    for schemas in (SCHEMAS, None):  # from the schema, and from the built-in table
        assert diff_object(desired, live, schemas=schemas) == []
    moved = _service({"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353},
                     {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53})
    changed = {**desired, "spec": {"ports": [{"port": 53, "protocol": "UDP", "targetPort": 53}]}}
    assert diff_object(changed, moved, schemas=SCHEMAS) == [
        DiffItem(Op.CHANGED, "spec.ports[port=53,protocol=UDP].targetPort", 53, 5353)]


def test_a_port_without_protocol_is_the_servers_tcp_one() -> None:
    desired = _service({"port": 80})
    assert diff_object(desired, _service({"port": 80, "protocol": "TCP"}), schemas=SCHEMAS) == []
    assert [i.path for i in diff_object(desired, _service({"port": 80, "protocol": "UDP"}), schemas=SCHEMAS)] == [
        "spec.ports[port=80,protocol=TCP]"]
    assert as_applied(desired)["spec"]["ports"] == [{"port": 80, "protocol": "TCP"}]
    assert desired["spec"]["ports"] == [{"port": 80}]  # the input is not changed


@pytest.mark.parametrize(("field", "zero"), [("value", ""), ("readOnly", False), ("paused", False),
                                             ("hostNetwork", False), ("minReadySeconds", 0), ("tolerations", [])])
def test_a_zero_value_the_server_drops_is_no_drift(field: str, zero: Any) -> None:
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "spec": {field: zero, "a": 1}}
    live = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "spec": {"a": 1}}
    assert diff_object(desired, live) == []
    assert diff_object({**desired, "spec": {field: "x" if zero == "" else True, "a": 1}}, live) != []


def test_quantities_compare_by_value_wherever_the_schema_says_quantity() -> None:
    lr = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "l"},
          "spec": {"limits": [{"type": "Container", "default": {"cpu": "0.5", "memory": "1Gi"}}]}}
    live = {**lr, "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "1024Mi"}}]}}
    assert diff_object(lr, live, schemas=SCHEMAS) == []
    assert diff_object(lr, live) == []  # the built-in table knows LimitRange's maps too
    cache = {"apiVersion": "example.com/v1", "kind": "Cache", "metadata": {"name": "c"},
             "spec": {"memory": "1Gi", "name": "1000m"}}
    served = {**cache, "spec": {"memory": "1024Mi", "name": "1"}}
    # a custom resource's quantity is one by its schema; a string field is not, whatever it holds
    assert diff_object(cache, served, schemas=SCHEMAS) == [DiffItem(Op.CHANGED, "spec.name", "1000m", "1")]
    assert [i.path for i in diff_object(cache, served)] == ["spec.memory", "spec.name"]  # no schema: no guess


def test_a_set_compares_without_order_and_the_schema_round_trips() -> None:
    cache = {"apiVersion": "example.com/v1", "kind": "Cache", "metadata": {"name": "c"},
             "spec": {"finalizers": ["a", "b"]}}
    assert diff_object(cache, {**cache, "spec": {"finalizers": ["b", "a"]}}, schemas=SCHEMAS) == []
    assert diff_object(cache, {**cache, "spec": {"finalizers": ["b", "c"]}}, schemas=SCHEMAS) != []
    again = KindSchemas.from_json(json.loads(json.dumps(SCHEMAS.to_json())))
    assert again is not None and again.to_json() == SCHEMAS.to_json()
    assert KindSchemas.from_json({"version": 99}) is None and KindSchemas.from_json("junk") is None


def test_an_aggregated_cluster_roles_rules_are_its_controllers() -> None:
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "agg"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "true"}}]}, "rules": []}
    assert "rules" not in as_applied(role)
    live = {**role, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    assert diff_object(role, live) == []
    plain = {k: v for k, v in role.items() if k != "aggregationRule"}
    assert as_applied(plain) is plain
    assert diff_object(plain, {k: v for k, v in plain.items() if k != "rules"}) == []  # rules: [] the server drops


def test_container_ports_of_every_workload_get_their_protocol() -> None:
    pod_spec = {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}],
                "initContainers": [{"name": "i", "ports": [{"containerPort": 1, "protocol": "UDP"}]}]}
    cron = {"apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}}
    spec = as_applied(cron)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert spec["initContainers"][0]["ports"] == [{"containerPort": 1, "protocol": "UDP"}]
    other = {"apiVersion": "example.com/v1", "kind": "Deployment", "spec": {"template": {"spec": pod_spec}}}
    assert as_applied(other) is other  # not a Kubernetes Deployment


@pytest.mark.cluster
def test_the_servers_own_schema_knows_ports_quantities_and_crds(admin_api: Any, cluster: Cluster) -> None:
    from gitops.sources.cluster.client import ClusterClient

    client = ClusterClient(cluster.kubeconfig, context="admin" if cluster.local else None)
    doc = client.openapi()
    assert doc is not None
    s = KindSchemas.from_openapi(doc)
    pod = s.field(s.field(s.field(s.root("apps/v1", "Deployment"), "spec"), "template"), "spec")
    container = s.item(s.field(pod, "containers"))
    assert s.keys(s.field(pod, "containers")) == ("name",)
    assert s.keys(s.field(container, "ports")) == ("containerPort", "protocol")
    assert s.is_quantity(s.field(s.field(s.field(container, "resources"), "limits"), "cpu"))
    volume = s.item(s.field(pod, "volumes"))
    assert s.is_quantity(s.field(s.field(volume, "emptyDir"), "sizeLimit"))
    assert s.keys(s.field(s.field(s.root("v1", "Service"), "spec"), "ports")) == ("port", "protocol")
    assert not s.is_quantity(s.field(s.root("v1", "ConfigMap"), "data"))
    assert len(json.dumps(s.to_json())) < 200_000  # compact: kept in the log beside the checkpoints


def test_the_text_diff_shows_only_what_differs_in_its_context_as_kubectl_diff() -> None:
    from gitops.cli.status_cmds import _unified
    from gitops.diff import ObjectDiff, Status, diff_object
    from gitops.diff.view import diff_view
    from gitops.query import ObjectView

    desired = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
               "spec": {"paused": False, "template": {"spec": {"containers": [
                   {"name": "web", "image": "web:2", "ports": [{"containerPort": 80}],
                    "resources": {"limits": {"cpu": "0.5"}}}]}}}}
    live = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "9"},
            "spec": {"replicas": 1, "template": {"spec": {"dnsPolicy": "ClusterFirst", "containers": [
                {"name": "web", "image": "web:1", "imagePullPolicy": "IfNotPresent",
                 "ports": [{"containerPort": 80, "protocol": "TCP"}], "resources": {"limits": {"cpu": "500m"}}}]}}},
            "status": {"replicas": 1}}
    left, right = diff_view(desired, live, schemas=SCHEMAS)
    items = diff_object(desired, live, schemas=SCHEMAS)
    lines = _unified(ObjectView(ObjectDiff("Deployment.apps/shop/web", Status.OUT_OF_SYNC, tuple(items)), left,
                                right))
    changed = [x for x in lines if x[:1] in "+-" and not x.startswith(("---", "+++"))]
    assert changed == ["-      - image: web:2", "+      - image: web:1"], lines
    assert lines[0] == "--- desired Deployment.apps/shop/web"
    assert lines[1] == "+++ live Deployment.apps/shop/web (out-of-sync)"
    assert not any("status" in x or "uid" in x for x in lines)
    missing = _unified(ObjectView(ObjectDiff("ConfigMap/a/c", Status.MISSING), *diff_view(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"enabled": False}}, None)))
    assert "-  enabled: false" in missing and all(x.startswith(("-", "@@")) for x in missing[2:])
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
              "data": {"same": "sha256:aa", "pw": "sha256:bb"}}
    s_left, s_right = diff_view(secret, {**secret, "data": {"same": "sha256:aa", "pw": "sha256:cc"}})
    assert s_left is not None and s_right is not None
    assert s_left["data"] == {"same": "(secret)", "pw": "(secret: Git's value)"}
    assert s_right["data"] == {"same": "(secret)", "pw": "(secret: the cluster's value)"}
