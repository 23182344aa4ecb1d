"""An update the API server refuses because a field is immutable (a Job's template): by
default a failure that says how to go on; with ``gitops.dev/force: enabled`` on the object
in Git (Flux's ``force``), the object is deleted and created again, but only once a dry-run
create shows the server accepts the new one. Checked against the API server with kubectl."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gitops.events import ReconcileAction
from gitops.store import EventLog
from tests.cluster_fixtures import Cluster, kubectl
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
    after = env.run()
    assert (after.plan.actions, after.drift_opened) == ([], 0)  # converged; its own delete is no drift
    from gitops.query.report import build_report

    with EventLog(env.db) as log:  # a compliance report lists the deletion beside the prunes
        report = build_report(log, datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
    assert [(p.resource, p.result, p.dry_run, p.recreated, p.uid) for p in report.prunes] == [
        (key, "planned", True, True, first_uid), (key, "succeeded", False, True, first_uid)]
