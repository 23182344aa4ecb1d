"""The cluster source's record of what happened while it was not watching, and of what a
user asked it to watch, against the real local control plane."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pykube
import pytest

from gitops.events import ClusterDeleted, ClusterObserved
from gitops.sources.cluster import ClusterSource, ClusterSourceConfig
from gitops.store import EventLog
from tests.cluster_fixtures import Cluster, kubectl, wait_until
from tests.gitrepo import configmap
from tests.test_cluster_source import history, running, source_config

pytestmark = pytest.mark.cluster


def cm_events(db: Path, namespace: str) -> list[Any]:
    with EventLog(db) as log:
        return [r.event for r in log.read(types=("cluster.observed", "cluster.deleted"))
                if (r.event.resource or "").startswith(f"ConfigMap/{namespace}/")]


def test_a_relist_tells_an_object_made_again_under_the_same_name_from_the_old_one(
        cluster: Cluster, admin_api: Any, namespace: str, db_path: Path) -> None:
    pykube.ConfigMap(admin_api, configmap("reborn", namespace)).create()
    config = source_config(cluster, audit=False)
    with running(db_path, config):
        wait_until(lambda: len(history(db_path, namespace)) == 1, what="the object")
    old_uid = cm_events(db_path, namespace)[0].payload.manifest["metadata"]["uid"]
    # while nothing watches: deleted and made again, same name and content, new uid; then the
    # history is compacted away, so the next start must relist
    pykube.ConfigMap(admin_api, configmap("reborn", namespace)).delete()
    pykube.ConfigMap(admin_api, configmap("reborn", namespace)).create()
    cluster.compact_etcd()
    cluster.stop_apiserver()
    cluster.start_apiserver()
    with running(db_path, config):
        wait_until(lambda: len(history(db_path, namespace)) == 3, what="the relist")
    _, gone, again = cm_events(db_path, namespace)
    assert isinstance(gone, ClusterDeleted) and gone.payload.synthetic and gone.payload.uid == old_uid
    assert isinstance(again, ClusterObserved) and again.payload.change == "relisted"
    assert again.payload.manifest["metadata"]["uid"] != old_uid
    assert gone.payload.observed_late and again.payload.observed_late  # both happened before they were seen


def test_changes_replayed_by_a_resumed_watch_say_they_were_seen_late(
        cluster: Cluster, admin_api: Any, namespace: str, db_path: Path) -> None:
    config = source_config(cluster, audit=False)
    with running(db_path, config):
        pykube.ConfigMap(admin_api, configmap("live", namespace)).create()
        wait_until(lambda: len(history(db_path, namespace)) == 1, what="the live change")
    pykube.ConfigMap(admin_api, configmap("while-down", namespace)).create()  # replayed at the next start
    with running(db_path, config):
        wait_until(lambda: len(history(db_path, namespace)) == 2, what="the replayed change")
        pykube.ConfigMap(admin_api, configmap("after", namespace)).create()
        wait_until(lambda: len(history(db_path, namespace)) == 3, what="the change after the restart")
    late = {e.resource.rsplit("/", 1)[1]: e.payload.observed_late for e in cm_events(db_path, namespace)}
    assert late == {"live": False, "while-down": True, "after": False}


def test_kinds_may_be_named_as_kubectl_users_name_them(cluster: Cluster, admin_api: Any, namespace: str,
                                                      db_path: Path) -> None:
    config = ClusterSourceConfig(kubeconfig=str(cluster.kubeconfig), context="admin",
                                 kinds=["deploy", "configmaps", "ingresses.networking.k8s.io"])
    source = ClusterSource(db_path, config)
    with EventLog(db_path) as log:
        kinds, problems = source.select(log, source.client.discover().kinds)
    assert {k.name for k in kinds} >= {"Deployment.apps", "ConfigMap", "Ingress.networking.k8s.io"}
    assert problems == []


def test_a_watch_whose_every_kind_is_refused_says_so_and_exits_1(cluster: Cluster, tmp_path: Path) -> None:
    if not cluster.local:
        pytest.skip("needs the local control plane's user bob")
    db = tmp_path / "g.db"
    res = subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), "watch", "--kubeconfig",
                          str(cluster.kubeconfig), "--context", "bob", "--kind", "ConfigMap"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "GITOPS_AUDIT_LOG": ""})
    assert res.returncode == 1, res.stderr
    assert res.stderr.splitlines()[-1].startswith("error: the cluster source stopped: the Kubernetes API at ")
    assert "refused to list every kind watched (ConfigMap, Namespace)" in res.stderr
    with EventLog(db) as log:
        assert {r.event.payload.code for r in log.read(types=["source.error"])} == {"kind-forbidden"}  # type: ignore[union-attr]


def test_an_audit_log_that_appears_later_is_picked_up(cluster: Cluster, tmp_path: Path, namespace: str) -> None:
    if not cluster.local:
        pytest.skip("needs the local control plane's audit log")
    assert cluster.audit_log is not None
    later = tmp_path / "logs" / "audit.log"
    later.parent.mkdir()
    db = tmp_path / "g.db"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    proc = subprocess.Popen([sys.executable, "-m", "gitops", "--db", str(db), "watch", "--context", "admin",
                             "--kind", "ConfigMap", "--audit-log", str(later), "--audit-log-later"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until(db.exists, what="the watch to start")
        kubectl(cluster, "admin", "-n", namespace, "create", "configmap", "audited", "--from-literal=k=v")
        lines = [ln for ln in cluster.audit_log.read_text().splitlines() if f'"{namespace}"' in ln]
        later.write_text("\n".join(lines) + "\n")  # the file appears, holding the record of that change
        (made,) = [r["auditID"] for r in map(json.loads, lines) if r.get("stage") == "ResponseComplete"
                   and r["verb"] == "create" and r["objectRef"].get("name") == "audited"]

        def read() -> bool:
            """The record is in the log: in the change it explains, when the tailer read it
            within the writer's wait, else (the change written first) as an audit event of
            its own, which is held 10 s first."""
            return any(getattr(r.event.payload, "audit_id", None) == made
                       for r in log.read(types=["audit", "cluster.observed"]))

        with EventLog(db) as log:
            wait_until(read, timeout=60, what="the audit log to be read")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_a_sick_api_group_does_not_stop_discovery_and_cronjobs_are_watched(
        cluster: Cluster, admin_api: Any, namespace: str, db_path: Path) -> None:
    group = f"{namespace}.example.com"  # an aggregated API whose backend has no endpoints: it answers 503
    service = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": f"v1.{group}"},
               "spec": {"group": group, "version": "v1", "groupPriorityMinimum": 100, "versionPriority": 10,
                        "insecureSkipTLSVerify": True, "service": {"namespace": namespace, "name": "nothing-here"}}}
    r = admin_api.post(version="apiregistration.k8s.io/v1", url="apiservices", data=json.dumps(service))
    admin_api.raise_for_status(r)
    try:
        config = ClusterSourceConfig(kubeconfig=str(cluster.kubeconfig), context="admin",
                                     kinds=["ConfigMap", "CronJob.batch"])
        source = ClusterSource(db_path, config)
        wait_until(lambda: f"{group}/v1" in source.client.discover().failed, what="the group to fail discovery")
        summary = source.ingest_once()
        assert summary.kinds >= 3  # Namespace, ConfigMap, CronJob: discovered despite the sick group
        cronjob = source.client.discover().kinds[("batch", "CronJob")]
        assert cronjob.version in ("v1beta1", "v1")  # served, though not (on 1.20) in batch's preferred v1
        with EventLog(db_path) as log:
            errors = [r.event.payload for r in log.read(types=["source.error"])]
        assert [(e.code, e.message.split(" ")[0]) for e in errors] == [  # type: ignore[union-attr]
            ("group-unavailable", f"{group}/v1")]
    finally:
        admin_api.delete(version="apiregistration.k8s.io/v1", url=f"apiservices/v1.{group}")


def test_a_bug_while_watching_crashes_loudly_and_is_no_outage(cluster: Cluster, admin_api: Any,
                                                              namespace: str) -> None:
    """What breaks in our own code while a change is handled (here: whatever receives the
    watcher's items raises TypeError) must end the watcher with that error: never backoff,
    never a source.outage_started in a compliance log."""
    import threading

    from gitops.sources.cluster.client import ClusterClient
    from gitops.sources.cluster.watcher import KindWatcher, Outage, OutageTracker

    client = ClusterClient(cluster.kubeconfig, context="admin" if cluster.local else None)
    kind = client.discover().kinds[("", "ConfigMap")]
    seen: list[object] = []

    def broken(item: object) -> None:
        seen.append(item)
        if not isinstance(item, Outage):
            raise TypeError("a bug downstream")

    watcher = KindWatcher(client, kind, config=ClusterSourceConfig(), known={}, resource_version=None,
                          out=broken, outages=OutageTracker(seen.append))
    stop = threading.Event()
    try:
        with pytest.raises(TypeError, match="a bug downstream"):
            watcher.run(stop)
    finally:
        stop.set()
        client.close()
    assert not any(isinstance(i, Outage) for i in seen)
