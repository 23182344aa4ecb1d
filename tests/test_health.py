"""Health, as Argo CD and Flux judge it: the rules on the statuses controllers write, and on
the local control plane (its deployment controller runs, no kubelet does) a Deployment
that never gets a ready Pod going Missing, Progressing, then Degraded once its short
progressDeadlineSeconds passes, and a custom resource whose Ready condition is written
through its status subresource, each recorded as ``health.changed`` and shown by
``status``, ``audit``, ``wait`` and the report."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.diff.health import HealthRule, Status, assess
from gitops.events import HealthChanged
from gitops.store import EventLog
from tests.cli_helpers import gitops
from tests.cluster_fixtures import Cluster, kubectl, wait_until
from tests.gitrepo import GitRepo
from tests.helpers import deployment
from tests.test_run import _config


def _cond(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def _obj(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None, generation: int = 1) -> Any:
    return {"metadata": {"generation": generation}, "spec": spec or {}, "status": status or {}}


@pytest.mark.parametrize(("head", "live", "want"), [
    ("Deployment.apps", _obj({"replicas": 2}, {"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2,
                                               "availableReplicas": 2}), Status.HEALTHY),
    ("Deployment.apps", _obj({"replicas": 2}, {"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2,
                                               "availableReplicas": 1}), Status.PROGRESSING),
    ("Deployment.apps", _obj({}, {"observedGeneration": 1}, generation=2), Status.PROGRESSING),
    ("Deployment.apps", _obj({}, {"observedGeneration": 1, "conditions": [
        _cond("Progressing", "False", "ProgressDeadlineExceeded")]}), Status.DEGRADED),
    ("Deployment.apps", _obj({"paused": True}), Status.SUSPENDED),
    ("StatefulSet.apps", _obj({"replicas": 1}, {"observedGeneration": 1, "readyReplicas": 1,
                                                "currentRevision": "a", "updateRevision": "b"}), Status.PROGRESSING),
    ("StatefulSet.apps", _obj({"replicas": 1}, {"observedGeneration": 1, "readyReplicas": 1}), Status.HEALTHY),
    ("DaemonSet.apps", _obj({}, {"observedGeneration": 1, "desiredNumberScheduled": 3,
                                 "updatedNumberScheduled": 3, "numberAvailable": 2}), Status.PROGRESSING),
    ("ReplicaSet.apps", _obj({"replicas": 1}, {"conditions": [_cond("ReplicaFailure", "True", "FailedCreate")]}),
     Status.DEGRADED),
    ("Job.batch", _obj({}, {"conditions": [_cond("Failed", "True", "BackoffLimitExceeded")]}), Status.DEGRADED),
    ("Job.batch", _obj({}, {"conditions": [_cond("Complete", "True")]}), Status.HEALTHY),
    ("Job.batch", _obj({"suspend": True}), Status.SUSPENDED),
    ("CronJob.batch", _obj({"suspend": True}), Status.SUSPENDED),
    ("PersistentVolumeClaim", _obj({}, {"phase": "Pending"}), Status.PROGRESSING),
    ("PersistentVolumeClaim", _obj({}, {"phase": "Lost"}), Status.DEGRADED),
    ("Service", _obj({"type": "LoadBalancer"}), Status.PROGRESSING),
    ("Service", _obj({"type": "LoadBalancer"}, {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}]}}),
     Status.HEALTHY),
    ("Service", _obj({"type": "ClusterIP"}), Status.HEALTHY),
    ("Ingress.networking.k8s.io", _obj(), Status.PROGRESSING),
    ("CustomResourceDefinition.apiextensions.k8s.io", _obj({}, {"conditions": [_cond("Established", "True")]}),
     Status.HEALTHY),
    ("CustomResourceDefinition.apiextensions.k8s.io", _obj({}, {"conditions": [_cond("NamesAccepted", "False")]}),
     Status.DEGRADED),
    ("APIService.apiregistration.k8s.io", _obj({}, {"conditions": [_cond("Available", "False", "MissingEndpoints")]}),
     Status.DEGRADED),
    ("HorizontalPodAutoscaler.autoscaling", _obj({}, {"conditions": [_cond("AbleToScale", "False",
                                                                           "FailedGetScale")]}), Status.DEGRADED),
    ("Widget.example.com", _obj({}, {"observedGeneration": 1, "conditions": [_cond("Ready", "True")]}),
     Status.HEALTHY),
    ("Widget.example.com", _obj({}, {"conditions": [_cond("Ready", "False", "Failed")]}), Status.DEGRADED),
    ("Widget.example.com", _obj({}, {"conditions": [_cond("Ready", "False", "Progressing")]}), Status.PROGRESSING),
    ("Widget.example.com", _obj({}, {"conditions": [_cond("Stalled", "True")]}), Status.DEGRADED),
    ("Widget.example.com", _obj({}, {"conditions": [_cond("Reconciling", "True")]}), Status.PROGRESSING),
    ("Widget.example.com", _obj({}, {"observedGeneration": 1}, generation=3), Status.PROGRESSING),
    ("Pod", _obj({}, {"phase": "Pending"}), Status.PROGRESSING),  # no node yet: was Healthy
    ("Pod", _obj({}, {"phase": "Pending", "containerStatuses": [
        {"name": "c", "ready": False, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}), Status.DEGRADED),
    ("Pod", _obj({}, {"phase": "Running", "containerStatuses": [
        {"name": "c", "ready": False, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}), Status.DEGRADED),
    ("Pod", _obj({}, {"phase": "Running", "containerStatuses": [{"name": "c", "ready": True},
                                                                {"name": "d", "ready": False}]}), Status.PROGRESSING),
    ("Pod", _obj({}, {"phase": "Running", "containerStatuses": [{"name": "c", "ready": True}]}), Status.HEALTHY),
    ("Pod", _obj({"restartPolicy": "Never"}, {"phase": "Running", "containerStatuses": [{"name": "c", "ready": True}]}),
     Status.PROGRESSING),
    ("Pod", _obj({}, {"phase": "Succeeded"}), Status.HEALTHY),
    ("Pod", _obj({}, {"phase": "Failed", "reason": "Evicted"}), Status.DEGRADED),
    ("ConfigMap", {"data": {"a": "1"}}, Status.HEALTHY),
    ("Namespace", {"metadata": {"deletionTimestamp": "2026-12-07T10:00:00Z"}, "status": {"phase": "Terminating"}},
     Status.PROGRESSING),  # was Healthy: no conditions
    ("Deployment.apps", None, Status.MISSING),
    ("Deployment.apps", {"spec": "not a mapping"}, Status.UNKNOWN),
])
def test_the_built_in_rules(head: str, live: Any, want: Status) -> None:
    assert assess(head, live).status == want


def test_a_configured_rule_replaces_the_built_in_one_for_its_kind() -> None:
    rule = HealthRule.model_validate({"kind": "Widget.example.com", "condition": "Synced", "false": "Progressing"})
    live = _obj({}, {"conditions": [_cond("Ready", "True"), _cond("Synced", "False", "Waiting", "the API")]})
    judged = assess("Widget.example.com", live, [rule])
    assert (judged.status, judged.reason, judged.message) == (Status.PROGRESSING, "Waiting", "the API")
    assert assess("Widget.example.com", _obj(), [rule]).status == Status.PROGRESSING  # no Synced condition yet
    assert assess("Gadget.example.com", live, [rule]).status == Status.HEALTHY  # other kinds: the built-in rules


def _health(db: Path) -> list[tuple[str, str | None, str]]:
    with EventLog(db) as log:
        return [(str(r.event.resource), r.event.payload.previous, r.event.payload.status)
                for r in log.read(types=["health.changed"]) if isinstance(r.event, HealthChanged)]


def _assert_report(db: Path, dep: str, wid: str, head: str) -> None:
    """The report: each span of not being Healthy, and the commit (Git's head) that led to it."""
    report = json.loads(gitops("report", "--since", "1h", "--format", "json", db=db).stdout)
    spans = [(h["resource"], h["status"], h["became"], h["commit"]) for h in report["health"]]
    assert sorted(spans, key=str) == sorted([
        (dep, "Missing", "Progressing", head), (dep, "Progressing", "Degraded", head), (dep, "Degraded", None, head),
        (wid, "Missing", "Healthy", head), (wid, "Degraded", "Healthy", head)], key=str)
    assert report["summary"]["degraded_episodes"] == 2
    degraded = next(h for h in report["health"] if h["resource"] == dep and h["status"] == "Degraded")
    assert degraded["reason"] == "ProgressDeadlineExceeded" and degraded["ended_at"] is None
    html = gitops("report", "--since", "1h", db=db).stdout
    assert '<table id="health">' in html and "ProgressDeadlineExceeded" in html


@pytest.mark.cluster
def test_health_on_the_local_control_plane_as_events_status_audit_and_wait(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    group = f"h{uuid.uuid4().hex[:8]}.example.com"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"widgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                                  "schema": {"openAPIV3Schema": {"type": "object",
                                                                 "x-kubernetes-preserve-unknown-fields": True}}}]}}
    kubectl(cluster, "admin", "apply", "-f", "-", stdin=json.dumps(crd))
    try:
        wait_until(lambda: kubectl(cluster, "admin", "get", "--raw", f"/apis/{group}/v1", check=False).returncode == 0,
                   what="the CRD served")
        web = deployment("web", namespace)
        web["spec"]["progressDeadlineSeconds"] = 8
        widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": namespace},
                  "spec": {"size": 1}}
        repo = GitRepo(tmp_path / "repo")
        repo.write("app.yaml", yaml.safe_dump_all([web, widget]))
        repo.commit("a Deployment and a Widget")
        db, config = tmp_path / "g.db", _config(tmp_path, cluster, namespace, repo)

        def reconcile() -> None:
            res = gitops("--config", str(config), "reconcile", db=db)
            assert res.returncode == 0, res.stdout + res.stderr

        reconcile()  # applies both: Missing when the pass began, then judged as the server answered the apply
        dep, wid = f"Deployment.apps/{namespace}/web", f"Widget.{group}/{namespace}/w"
        assert set(_health(db)) == {(dep, None, "Missing"), (wid, None, "Missing"),
                                    (dep, "Missing", "Progressing"), (wid, "Missing", "Healthy")}
        def deployment_status() -> dict[str, Any]:
            return json.loads(kubectl(cluster, "admin", "-n", namespace, "get", "deployment", "web", "-o",
                                      "json").stdout).get("status") or {}

        # the deployment controller made a ReplicaSet; with no kubelet, no Pod of it is ever ready
        wait_until(lambda: deployment_status().get("observedGeneration") == 1, what="the controller's status")
        reconcile()  # the controller's status: the Deployment's replica is still not available; nothing changed
        assert len(_health(db)) == 4
        wait_until(lambda: any(c.get("reason") == "ProgressDeadlineExceeded"
                               for c in deployment_status().get("conditions", [])),
                   timeout=60, what="the controller's ProgressDeadlineExceeded")
        patch = {"status": {"conditions": [_cond("Ready", "False", "Failed", "the size is not supported")]}}
        kubectl(cluster, "admin", "-n", namespace, "patch", f"widgets.{group}", "w", "--subresource=status",
                "--type=merge", "-p", json.dumps(patch))
        time.sleep(1)
        reconcile()
        live = json.loads(kubectl(cluster, "admin", "-n", namespace, "get", "deployment", "web", "-o", "json").stdout)
        assert any(c["reason"] == "ProgressDeadlineExceeded" for c in live["status"]["conditions"])  # the server's
        assert sorted(_health(db)[4:]) == [(dep, "Progressing", "Degraded"), (wid, "Healthy", "Degraded")]
        doc = json.loads(gitops("status", "-o", "json", db=db).stdout)
        assert {o["resource"]: o["health"] for o in doc["objects"]} == {dep: "Degraded", wid: "Degraded"}
        assert doc["health_counts"] == {"Degraded": 2} and not doc["healthy"]
        waited = gitops("wait", "--for", "healthy", "--timeout", "2s", db=db)
        assert waited.returncode == 1 and "2 Degraded" in waited.stderr, waited.stderr
        audit = json.loads(gitops("audit", "--type", "health.changed", "--resource", "deploy/web", "-n", namespace,
                                  "-o", "json", db=db).stdout)
        assert [a["changes"] for a in audit][-1].startswith("Degraded (was Progressing): ProgressDeadlineExceeded")
        # the Widget's status says Ready: it is Healthy at the next pass, and nothing else changed
        patch = {"status": {"conditions": [_cond("Ready", "True", "Succeeded")]}}
        kubectl(cluster, "admin", "-n", namespace, "patch", f"widgets.{group}", "w", "--subresource=status",
                "--type=merge", "-p", json.dumps(patch))
        time.sleep(1)
        reconcile()
        assert _health(db)[-1] == (wid, "Degraded", "Healthy") and len(_health(db)) == 7
        reconcile()  # no change, no event
        assert len(_health(db)) == 7
        _assert_report(db, dep, wid, repo.head())
    finally:
        kubectl(cluster, "admin", "delete", "crd", f"widgets.{group}", "--wait=false", check=False)
