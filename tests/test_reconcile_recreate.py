"""An update the API server refuses because a field is immutable (a Job's template): by
default a failure that says how to go on; with ``gitops.dev/force: enabled`` on the object
in Git (Flux's ``force``), the object is deleted and created again, but only once a dry-run
create shows the server accepts the new one. Checked against the API server with kubectl."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gitops.events import ClusterDeleted, ClusterObserved, ReconcileAction
from gitops.events.redaction import Redaction
from gitops.query.integrity import KeyStore
from gitops.store import EventLog
from tests.cluster_fixtures import Cluster, kubectl, wait_until
from tests.test_reconcile import Env

pytestmark = pytest.mark.cluster


def job(ns: str, args: list[str], *, force: bool = False, backoff: int = 2) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "migrate", "namespace": ns}
    if force:
        meta["annotations"] = {"gitops.dev/force": "enabled"}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": {"backoffLimit": backoff, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "m", "image": "busybox:1.36", "args": args}]}}}}


def live(cluster: Cluster, ns: str) -> tuple[str, list[str]]:
    obj = json.loads(kubectl(cluster, "admin", "-n", ns, "get", "job", "migrate", "-o", "json").stdout)
    return obj["metadata"]["uid"], obj["spec"]["template"]["spec"]["containers"][0]["args"]


def test_a_changed_job_template_is_recreated_only_when_forced_and_only_if_the_server_accepts_it(
        env: Env, cluster: Cluster) -> None:
    key = f"Job.batch/{env.ns}/migrate"
    env.write("job.yaml", job(env.ns, ["true"]))
    env.repo.commit("a migration job")
    assert env.run().created == 1
    first_uid, _ = live(cluster, env.ns)

    env.write("job.yaml", job(env.ns, ["echo", "v2"]))
    env.repo.commit("change its template: immutable")
    refused = env.run()
    assert refused.failed == 1
    assert "field is immutable" in refused.errors[0][1]
    # the server's 3 KB Go dump of the template, cut to its type
    assert "spec.template: Invalid value: core.PodTemplateSpec{…}: field is immutable" in refused.errors[0][1]
    assert len(refused.errors[0][1]) < 400 and "busybox" not in refused.errors[0][1]
    assert "annotate it gitops.dev/force: enabled in Git" in refused.errors[0][1]
    assert live(cluster, env.ns) == (first_uid, ["true"])

    env.write("job.yaml", job(env.ns, ["echo", "v2"], force=True, backoff=-1))
    env.repo.commit("forced, and invalid as a new object too")
    kept = env.run()
    assert kept.failed == 1 and "not recreated: the server refuses the new object too" in kept.errors[0][1]
    assert live(cluster, env.ns) == (first_uid, ["true"])  # the old job is kept

    env.write("job.yaml", job(env.ns, ["echo", "v2"], force=True))
    env.repo.commit("forced, and valid")
    planned = env.run(mode="dry-run")
    assert [(a.key, why) for a, why in planned.planned] == [(key, None)]
    assert live(cluster, env.ns) == (first_uid, ["true"])  # a dry run deletes nothing
    done = env.run()
    assert (done.failed, done.updated) == (0, 1), done.errors
    new_uid, args = live(cluster, env.ns)
    assert new_uid != first_uid and args == ["echo", "v2"]
    actions = [e.payload for e in (r.event for r in env.events("reconcile.action"))
               if isinstance(e, ReconcileAction) and e.payload.result in ("succeeded", "planned")]
    assert [(a.action, a.result, a.uid, a.planned) for a in actions[-2:]] == [
        ("recreate", "planned", first_uid, "update"), ("recreate", "succeeded", first_uid, "update")]
    with EventLog(env.db) as log:  # no watch beside this pass: it records the deletion it made itself
        timeline = [r.event for r in log.read(types=["cluster.observed", "cluster.deleted"], resource=key)]
    gone, made = timeline[-2:]
    assert isinstance(gone, ClusterDeleted) and isinstance(made, ClusterObserved)
    assert (gone.payload.uid, gone.payload.attribution, gone.actor) == (first_uid, "reconciler", "gitops")
    assert made.payload.manifest["metadata"]["uid"] == new_uid
    assert [e.payload.uid for e in timeline if isinstance(e, ClusterDeleted)] == [first_uid]
    after = env.run()
    assert (after.plan.actions, after.drift_opened) == ([], 0)  # converged; its own delete is no drift
    from gitops.query.report import build_report

    with EventLog(env.db) as log:  # a compliance report lists the deletion beside the prunes
        report = build_report(log, datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
    assert [(p.resource, p.result, p.dry_run, p.recreated, p.uid) for p in report.prunes] == [
        (key, "planned", True, True, first_uid), (key, "succeeded", False, True, first_uid)]


def test_a_recreate_by_a_one_shot_pass_beside_a_watch_process_leaves_the_log_at_the_new_object(
        env: Env, cluster: Cluster, tmp_path: Path) -> None:
    """A one-shot pass (gitops reconcile) records the object its recreate made at once. A
    gitops watch process on the same log holds the deletion of the old incarnation for its
    audit record (here: an audit log that never gets one, so the whole audit_wait), and
    appends it after. The log must not end up saying the object is gone, and the next pass
    must not create it again: checked against the uid the API server has."""
    key = f"ConfigMap/{env.ns}/imm"

    def cm(value: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "immutable": True, "data": {"k": value},
                "metadata": {"name": "imm", "namespace": env.ns, "annotations": {"gitops.dev/force": "enabled"}}}

    # the digest key gitops watch will use: both processes read the branch with one set of settings
    env.redaction = Redaction((), KeyStore(db=env.db).digest_key(create=True))
    env.write("cm.yaml", cm("v1"))
    env.repo.commit("an immutable ConfigMap")
    assert env.run().created == 1
    silent = tmp_path / "silent-audit.log"
    silent.write_text("")
    config = tmp_path / "watch.yaml"
    config.write_text(json.dumps({
        "git": {"repo": str(env.repo.path)},
        "cluster": {"kubeconfig": str(cluster.kubeconfig), "context": "admin" if cluster.local else None,
                    "audit_log": str(silent), "audit_wait": 3.0}}))
    out = (tmp_path / "watch.out").open("w")
    watch = subprocess.Popen([sys.executable, "-m", "gitops", "--db", str(env.db), "--config", str(config), "watch"],
                             stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: "Ctrl-C or SIGTERM stops" in (tmp_path / "watch.out").read_text(), timeout=60,
                   what="the watch to start")
        old_uid = uid_of(cluster, env.ns)
        env.write("cm.yaml", cm("v2"))
        env.repo.commit("new data: immutable, so recreated")
        recreated = env.run()
        assert recreated.updated == 1 and recreated.done == {key: "recreate"}, recreated.errors
        new_uid = uid_of(cluster, env.ns)
        assert new_uid != old_uid

        def settled() -> bool:
            with EventLog(env.db) as log:
                deletions = [r.event for r in log.read(types=["cluster.deleted"], resource=key)]
                current = {r.event.resource: r.event for r in log.current("actual")}.get(key)
            # the watch's own record of the deletion is in (after its audit_wait), and the log is at the new uid
            return any(isinstance(d, ClusterDeleted) and not d.payload.synthetic and d.payload.uid == old_uid
                       for d in deletions) and isinstance(current, ClusterObserved) and \
                current.payload.manifest["metadata"]["uid"] == new_uid
        wait_until(settled, timeout=30, what="the log to be at the object the API server has")
        again = env.run()
        assert (again.created, again.updated, again.failed) == (0, 0, 0), again.plan  # no loop
        assert uid_of(cluster, env.ns) == new_uid
    finally:
        watch.send_signal(signal.SIGTERM)
        watch.wait(60)
        out.close()


def uid_of(cluster: Cluster, ns: str) -> str:
    return str(json.loads(kubectl(cluster, "admin", "-n", ns, "get", "configmap", "imm", "-o", "json").stdout)
               ["metadata"]["uid"])
