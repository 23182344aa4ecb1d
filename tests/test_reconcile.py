"""The reconciler: plans (pure), sync windows (pure, with a given clock), and passes against the
real control plane, with real Git repositories, a real SQLite log, and kubectl as alice for
the edits made by hand. Writes to the API are counted from the API server's own audit log."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pykube
import pytest

from gitops.diff import DiffItem, DiffSettings, ObjectDiff, Op, Status, drift_episodes, take_over
from gitops.events.models import (
    ClusterObserved,
    DriftClosed,
    DriftOpened,
    ReconcileAction,
    ReconcileFinished,
    ReconcileStarted,
)
from gitops.events.redaction import Redaction
from gitops.reconcile import KIND_ORDER, Hold, ReconcileSettings, SyncWindow, holding_window, make_plan
from gitops.reconcile.cascade import Contents
from gitops.reconcile.reconciler import PassResult, Reconciler
from gitops.service.run import build_reconciler
from gitops.service.watch import WatchService
from gitops.sources.cluster import ClusterSourceConfig
from gitops.sources.git import GitSourceConfig
from gitops.store import EventLog
from tests.cluster_fixtures import Cluster, grant, kubectl, wait_until
from tests.gitrepo import GitRepo, configmap
from tests.test_service import Recorder

# ---------------------------------------------------------------------------- plans (pure)


def _cm(name: str, ns: str = "a", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, "labels": labels}}


def test_the_plan_orders_namespaces_and_crds_first_and_prunes_in_reverse() -> None:
    diffs = [ObjectDiff(k, Status.MISSING) for k in (
        "Widget.example.com/a/w", "Deployment.apps/a/d", "ConfigMap/a/c", "Namespace/a",
        "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com")]
    diffs += [ObjectDiff("Service/a/old", Status.ORPHAN), ObjectDiff("Namespace/old", Status.ORPHAN)]
    owned = {f"x{i}": _cm(f"x{i}", **{"gitops.dev/instance": "default"}) for i in range(10)}
    plan = make_plan(diffs, desired={}, actual=owned, instance="default", prune=True, mass_prune_ratio=0.5,
                     cascades={"Namespace/old": Contents()})  # it holds nothing
    assert [a.key for a in plan.actions] == [
        "Namespace/a", "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com", "ConfigMap/a/c",
        "Deployment.apps/a/d", "Widget.example.com/a/w", "Service/a/old", "Namespace/old"]
    assert [a.op for a in plan.actions][-2:] == ["prune", "prune"]
    assert KIND_ORDER.index("Namespace") < KIND_ORDER.index("CustomResourceDefinition")


def test_orphans_are_left_without_prune_and_held_by_the_mass_prune_guard() -> None:
    owned = {f"ConfigMap/a/x{i}": _cm(f"x{i}", **{"gitops.dev/instance": "default"}) for i in range(4)}
    diffs = [ObjectDiff(k, Status.ORPHAN) for k in sorted(owned)[:3]]
    assert make_plan(diffs, desired={}, actual=owned, instance="default", prune=False,
                     mass_prune_ratio=0.5).actions == []
    held = make_plan(diffs, desired={}, actual=owned, instance="default", prune=True, mass_prune_ratio=0.5)
    assert held.actions == [] and held.held is not None and "3 of 4" in held.held
    assert [a.skipped for a in held.skipped] == ["held by the mass-prune guard"] * 3
    allowed = make_plan(diffs, desired={}, actual=owned, instance="default", prune=True, mass_prune_ratio=0.5,
                        allow_mass_prune=True)
    assert [a.op for a in allowed.actions] == ["prune"] * 3


def test_prunes_the_guard_held_before_stay_held_whatever_the_ratio_now() -> None:
    owned = {f"ConfigMap/a/x{i}": _cm(f"x{i}", **{"gitops.dev/instance": "default"}) for i in range(8)}
    diffs = [ObjectDiff(k, Status.ORPHAN) for k in sorted(owned)[:3]]  # 3 of 8: under the ratio
    asked: list[list[str]] = []

    def held_before(keys: list[str]) -> set[str]:
        asked.append(keys)
        return {"ConfigMap/a/x0", "ConfigMap/a/x1"}

    plan = make_plan(diffs, desired={}, actual=owned, instance="default", prune=True, mass_prune_ratio=0.5,
                     held_before=held_before)
    assert [a.key for a in plan.actions] == ["ConfigMap/a/x2"]  # a removal of its own: judged by the ratio
    assert {a.key: a.reason for a in plan.skipped} == {"ConfigMap/a/x0": "MassPrune", "ConfigMap/a/x1": "MassPrune"}
    assert plan.held is not None and plan.held.startswith("mass-prune: 2 prunes the guard held in an earlier pass")
    allowed = make_plan(diffs, desired={}, actual=owned, instance="default", prune=True, mass_prune_ratio=0.5,
                        held_before=held_before, allow_mass_prune=True)
    assert len(allowed.prunes) == 3 and allowed.held is None and len(asked) == 1  # confirmed: not even asked


def test_annotated_objects_and_waiting_ones_are_left_alone() -> None:
    off = _cm("off")
    off["metadata"]["annotations"] = {"gitops.dev/reconcile": "disabled"}
    diffs = [ObjectDiff("ConfigMap/a/off", Status.OUT_OF_SYNC, (DiffItem(Op.CHANGED, "data.k", "1", "2"),)),
             ObjectDiff("ConfigMap/a/busy", Status.MISSING), ObjectDiff("ConfigMap/a/ok", Status.IN_SYNC)]
    plan = make_plan(diffs, desired={"ConfigMap/a/off": off}, actual={}, instance="default", prune=False,
                     mass_prune_ratio=0.5, waiting=lambda d: Hold("backoff") if d.key.endswith("busy") else None)
    assert plan.actions == [] and plan.unchanged == 1
    assert {(a.key, a.skipped) for a in plan.skipped} == {
        ("ConfigMap/a/off", "annotated gitops.dev/reconcile: disabled"), ("ConfigMap/a/busy", "backoff")}


def test_taking_over_hands_only_the_fields_git_does_not_set_to_the_reconciler() -> None:
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "a"},
               "data": {"a": "1"}}
    meta: dict[str, Any] = {"name": "c", "namespace": "a"}
    live = {**desired, "data": {"a": "2", "b": "x"}, "metadata": {**meta, "managedFields": [
        {"manager": "gitops", "operation": "Apply", "fieldsV1": {"f:data": {"f:a": {}}}},
        {"manager": "kubectl-patch", "operation": "Update", "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}}},
        {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:data": {"f:c": {}}}},
    ]}}
    fields = take_over(desired, live, ignore_managers=["kube-controller-manager"])
    assert fields is not None
    by = {e["manager"]: e["fieldsV1"] for e in fields}
    assert by["gitops"] == {"f:data": {"f:a": {}, "f:b": {}}}
    assert by["kubectl-patch"] == {"f:data": {"f:a": {}}}  # a field Git sets: forced by the apply, not moved
    assert by["kube-controller-manager"] == {"f:data": {"f:c": {}}}
    assert take_over(desired, {**desired, "metadata": {**meta, "managedFields": []}}) is None


def test_sync_windows_hold_in_a_deny_window_and_outside_every_allow_window() -> None:
    night = SyncWindow(name="night", kind="deny", schedule="0 22 * * *", duration="8h", timezone="Europe/Paris")
    at = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)  # 22:30 in Paris
    assert holding_window([night], at) == "deny window night"
    assert holding_window([night], datetime(2026, 12, 1, 12, 0, tzinfo=UTC)) is None
    assert holding_window([night], datetime(2026, 12, 2, 4, 59, tzinfo=UTC)) == "deny window night"  # 05:59
    assert holding_window([night], datetime(2026, 12, 2, 5, 0, tzinfo=UTC)) is None  # 06:00 in Paris: closed
    office = SyncWindow(kind="allow", schedule="0 9 * * 1-5", duration="8h")
    assert holding_window([office], datetime(2026, 12, 1, 10, 0, tzinfo=UTC)) is None  # a Tuesday
    assert holding_window([office], datetime(2026, 12, 5, 10, 0, tzinfo=UTC)) == "outside every allow window"
    sunday = SyncWindow(kind="deny", schedule="0 0 * * 0", duration="24h")  # cron's 0 (and 7) is Sunday
    assert holding_window([sunday], datetime(2026, 12, 6, 12, 0, tzinfo=UTC)) is not None
    assert holding_window([sunday], datetime(2026, 12, 7, 12, 0, tzinfo=UTC)) is None
    with pytest.raises(ValueError, match="duration"):
        SyncWindow(kind="deny", schedule="* * * * *", duration="soon")
    with pytest.raises(ValueError, match="schedule"):
        SyncWindow(kind="deny", schedule="not cron", duration="1h")


# ---------------------------------------------------------------------------- passes on the real control plane


class Env:
    """A repository, a log, and a reconciler over them and the control plane, kept across
    passes as the running service keeps it."""

    def __init__(self, cluster: Cluster, tmp_path: Path, namespace: str, *, git: dict[str, Any] | None = None,
                 **settings: Any) -> None:
        self.cluster, self.ns = cluster, namespace
        self.repo = GitRepo(tmp_path / "repo")
        self.git = GitSourceConfig(repo=str(self.repo.path), **(git or {}))
        self.db = tmp_path / "g.db"
        # an instance of its own: objects other tests' instances own are not this one's to prune
        self.settings = ReconcileSettings(**{"lease": {"enabled": False}, "retry_initial": 60,
                                             "instance": namespace, **settings})
        self.cluster_config = ClusterSourceConfig(
            kubeconfig=str(cluster.kubeconfig), context="admin" if cluster.local else None,
            audit_log=str(cluster.audit_log) if cluster.audit_log else None, audit_wait=2.0)
        self._service: WatchService | None = None
        self._reconciler: Reconciler | None = None
        self.redaction: Redaction = Redaction()

    def write(self, name: str, *docs: dict[str, Any] | str) -> None:
        import yaml

        self.repo.write(name, docs[0] if isinstance(docs[0], str) else yaml.safe_dump_all(docs))

    def reconciler(self) -> Reconciler:
        if self._reconciler is None:
            self._service = WatchService.build(self.db, git=self.git,
                                               cluster=self.cluster_config, redaction=self.redaction,
                                               reporter=Recorder())
            self._reconciler, _ = build_reconciler(self.db, self._service, self.settings, diff=_diff_settings(),
                                                   redaction=self.redaction, cluster=self.cluster_config)
        return self._reconciler

    def run(self, **kw: Any) -> PassResult:
        r = self.reconciler()
        assert self._service is not None and self._service.git is not None and self._service.cluster is not None
        git, source = self._service.git, self._service.cluster

        def ingest() -> None:
            git.run()
            source.ingest_once()

        return r.run_pass(ingest=ingest, **kw)

    def close(self) -> None:
        if self._reconciler is not None:
            self._reconciler.log.close()
        if self._service is not None:
            self._service.close()
        self._reconciler = self._service = None

    def events(self, *types: str) -> list[Any]:
        with EventLog(self.db) as log:
            return [r for r in log.read(types=types)]


def _diff_settings() -> Any:
    from gitops.diff import DiffSettings

    return DiffSettings()


def audit_writes(cluster: Cluster, since: int, namespace: str) -> list[str]:
    """The write requests the API server's audit log holds after byte ``since`` for objects
    in ``namespace``, by anyone but the control plane (the deployment controller writes a
    Deployment's status and revision as it likes): its own record, not our counters."""
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
                    and ref.get("namespace") == namespace and ref.get("resource") != "leases" \
                    and not (rec.get("user") or {}).get("username", "").startswith("system:"):
                out.append(f"{rec['verb']} {ref.get('resource')}/{ref.get('name')}")
    return out


def _audit_size(cluster: Cluster) -> int:
    assert cluster.audit_log is not None
    return cluster.audit_log.stat().st_size


def _app(ns: str) -> list[dict[str, Any]]:
    return [
        configmap("cfg", ns, a="1"),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": ns},
         "stringData": {"password": "hunter2"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}},
    ]


@pytest.mark.cluster
def test_a_commit_is_applied_with_ownership_and_a_pass_in_sync_sends_no_write(env: Env, cluster: Cluster,
                                                                               admin_api: Any) -> None:
    if cluster.audit_log is None:
        pytest.skip("counting writes needs the API server's audit log")
    env.write("app.yaml", *_app(env.ns))
    sha = env.repo.commit("the app")
    first = env.run()
    assert (first.status, first.created, first.failed) == ("succeeded", 4, 0)
    secret = pykube.Secret.objects(admin_api, namespace=env.ns).get(name="s")
    assert secret.obj["metadata"]["labels"]["gitops.dev/instance"] == env.ns
    import base64
    assert base64.b64decode(secret.obj["data"]["password"]) == b"hunter2"  # the value from Git, not its digest
    managers = {(m["manager"], m["operation"]) for m in secret.obj["metadata"]["managedFields"]}
    assert ("gitops", "Apply") in managers
    wait_until(lambda: any(audit_writes(cluster, 0, env.ns)), what="the audit log to hold the applies")
    mark = _audit_size(cluster)
    second = env.run()
    assert (second.status, second.created, second.updated, second.plan.unchanged) == ("succeeded", 0, 0, 4)
    # the audit log is written asynchronously: a marker write after the pass bounds what it can hold
    kubectl(cluster, "admin", "-n", env.ns, "create", "configmap", "marker")
    wait_until(lambda: "create configmaps/marker" in audit_writes(cluster, mark, env.ns), what="the marker")
    assert audit_writes(cluster, mark, env.ns) == ["create configmaps/marker"]
    started = [r.event for r in env.events("reconcile.started")]
    assert all(isinstance(e, ReconcileStarted) and e.payload.desired_revision == sha for e in started)
    finished = [r.event for r in env.events("reconcile.finished")]
    assert [e.payload.created for e in finished if isinstance(e, ReconcileFinished)] == [4, 0]
    with EventLog(env.db) as log:
        assert log.verify().ok


@pytest.mark.cluster
def test_a_digest_key_given_to_an_old_log_applies_each_secret_once_and_then_is_in_sync(
        env: Env, cluster: Cluster) -> None:
    """Plain digests in the log, then a key: Git's side is read again under it, the
    Secret's digests of two schemes are not taken as equal, one apply records the live
    object under the key, and the next pass is in sync (no loop, no write)."""
    if cluster.audit_log is None:
        pytest.skip("counting writes needs the API server's audit log")
    env.write("app.yaml", *_app(env.ns))
    env.repo.commit("the app")
    assert env.run().created == 4
    env.close()
    env.redaction = Redaction(key=bytes(range(32)))
    moved = env.run()
    assert moved.status == "succeeded" and moved.failed == 0
    assert [a.key for a in moved.plan.actions] == [f"Secret/{env.ns}/s"]
    wait_until(lambda: any(audit_writes(cluster, 0, env.ns)), what="the audit log to hold the applies")
    mark = _audit_size(cluster)
    again = env.run()
    assert (again.status, again.plan.actions, again.plan.unchanged) == ("succeeded", [], 4)
    kubectl(cluster, "admin", "-n", env.ns, "create", "configmap", "marker")
    wait_until(lambda: "create configmaps/marker" in audit_writes(cluster, mark, env.ns), what="the marker")
    assert audit_writes(cluster, mark, env.ns) == ["create configmaps/marker"]
    with EventLog(env.db) as log:
        assert log.verify().ok
        live = [r.event for r in log.read(types=["cluster.observed"], resource=f"Secret/{env.ns}/s")]
    last = live[-1]
    assert isinstance(last, ClusterObserved)
    assert last.payload.manifest["data"]["password"].startswith("hmac-sha256:")
    assert last.payload.attribution == "reconciler"  # recorded by the apply that made it, not as a change


@pytest.mark.cluster
def test_alices_edit_opens_drift_in_her_name_and_self_heal_closes_it(env: Env, cluster: Cluster) -> None:
    if cluster.audit_log is None:
        pytest.skip("naming alice needs the API server's audit log")
    grant(cluster, env.ns, "alice")
    env.write("app.yaml", *_app(env.ns))
    env.repo.commit("the app")
    env.run()
    kubectl(cluster, "alice", "-n", env.ns, "patch", "configmap", "cfg", "-p", '{"data":{"a":"2","extra":"x"}}')
    kubectl(cluster, "alice", "-n", env.ns, "set", "env", "deployment/web", "FOO=bar")
    healed = env.run()
    assert (healed.updated, healed.drift_opened, healed.failed) == (2, 2, 0)
    cm = json.loads(kubectl(cluster, "admin", "-n", env.ns, "get", "configmap", "cfg", "-o", "json").stdout)
    assert cm["data"] == {"a": "1"}  # alice's value reverted, her added key removed
    dep = json.loads(kubectl(cluster, "admin", "-n", env.ns, "get", "deployment", "web", "-o", "json").stdout)
    assert "env" not in dep["spec"]["template"]["spec"]["containers"][0]
    after = env.run()
    assert (after.updated, after.plan.unchanged) == (0, 4)
    opened = [r.event for r in env.events("drift.opened")]
    closed = [r.event for r in env.events("drift.closed")]
    # the ConfigMap's version is alice's alone. The Deployment's, listed by the next pass, also holds the
    # deployment controller's reaction to her edit (a new ReplicaSet, its status, its revision annotation):
    # whoever wrote what in it, the audit log names two users, so the log names neither
    by_key = {e.resource: e for e in opened}
    assert sorted(by_key) == [f"ConfigMap/{env.ns}/cfg", f"Deployment.apps/{env.ns}/web"]
    assert by_key[f"ConfigMap/{env.ns}/cfg"].actor == "alice"
    dep_version = next(r.event for r in env.events("cluster.observed")
                       if r.seq == by_key[f"Deployment.apps/{env.ns}/web"].payload.cause_seq)
    assert by_key[f"Deployment.apps/{env.ns}/web"].actor in ("alice", None)  # alice: the controller was not quicker
    if dep_version.actor is None:
        assert "alice" in dep_version.payload.candidates
    assert sorted((e.resource, e.payload.how) for e in closed if isinstance(e, DriftClosed)) == [
        (f"ConfigMap/{env.ns}/cfg", "reconciled"), (f"Deployment.apps/{env.ns}/web", "reconciled")]
    # what the service recorded is what the projection folds from the log
    with EventLog(env.db) as log:
        folded = [e for e in drift_episodes(log.read(), ignore_managers=DiffSettings().ignore_managers)
                  if e.resource.split("/")[1] == env.ns]  # with the settings the pass diffed with
    assert sorted((e.resource, e.opened_seq, e.closed_seq, e.opened_by, e.how) for e in folded) == sorted(
        (o.resource, o.payload.cause_seq, c.payload.cause_seq, o.actor, c.payload.how)
        for o in opened for c in closed
        if isinstance(o, DriftOpened) and isinstance(c, DriftClosed) and o.payload.episode_id == c.payload.episode_id)


@pytest.mark.cluster
def test_each_outcome_of_an_out_of_band_change_in_the_report_is_what_happened(env: Env, cluster: Cluster) -> None:
    """Alice edits five objects the reconciler only watches (detect-only); then each edit
    ends its own way, by hand, in Git, or not at all. The report says how each ended."""
    if cluster.audit_log is None:
        pytest.skip("naming alice needs the API server's audit log")
    from gitops.query.report import build_report

    grant(cluster, env.ns, "alice", "bob")
    names = ("by-hand", "adopted", "removed", "deleted", "open")
    for name in names:
        env.write(f"{name}.yaml", configmap(name, env.ns, k="git"))
    env.repo.commit("five")
    env.run()

    def edit(user: str, name: str, value: str) -> None:
        kubectl(cluster, user, "-n", env.ns, "patch", "configmap", name, "-p", json.dumps({"data": {"k": value}}))

    for name in names:
        edit("alice", name, "alice")
    assert env.run(mode="detect-only").drift_opened == 5
    edit("bob", "by-hand", "git")  # bob puts Git's value back by hand
    kubectl(cluster, "alice", "-n", env.ns, "delete", "configmap", "deleted")  # then she deletes it...
    wait_until(lambda: "deleted" not in _names(cluster, env.ns), what="the delete")
    env.run(mode="detect-only")
    env.write("adopted.yaml", configmap("adopted", env.ns, k="alice"))  # Git takes alice's value
    env.repo.remove("removed.yaml")  # Git stops wanting it; it stays in the cluster
    env.repo.remove("deleted.yaml")  # ...and Git drops it after: gone from both
    env.repo.commit("adopt one, drop two")
    env.run(mode="detect-only")
    assert _data(cluster, env.ns, "removed") == {"k": "alice"}  # nothing pruned: detect-only
    with EventLog(env.db) as log:
        report = build_report(log, datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
    outcome = {o.resource.rsplit("/", 1)[1]: o.outcome for o in report.out_of_band if o.actor == "alice"
               and o.change != "deleted"}  # her edits (seen by a list: "relisted"), not her delete
    assert outcome == {"by-hand": "reverted by hand", "adopted": "adopted by Git", "removed": "removed by Git",
                       "deleted": "deleted", "open": "still differs"}


@pytest.mark.cluster
def test_a_drift_checkpoint_removed_between_passes_is_an_evidence_gap(env: Env, cluster: Cluster) -> None:
    import sqlite3
    from contextlib import closing

    from gitops.query.report import build_report

    env.write("a.yaml", configmap("a", env.ns))
    env.repo.commit("one")
    env.run()
    env.run()
    assert [r for r in env.events("source.error")] == []  # a first pass is no gap
    env.close()
    with closing(sqlite3.connect(env.db)) as conn, conn:
        conn.execute("DELETE FROM checkpoints WHERE name = ?", (f"reconciler:{env.ns}:drift",))
    env.run()  # a new process finds it gone
    errors = [r.event.payload for r in env.events("source.error")]
    assert [(e.code, e.origin) for e in errors] == [("drift-reset", f"reconciler:{env.ns}")]
    with EventLog(env.db) as log:
        scope = build_report(log, datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC)).scope
    assert scope is not None and any("drift step's checkpoint" in g.what and g.end for g in scope.evidence_gaps)


@pytest.mark.cluster
def test_detect_only_records_the_drift_and_leaves_the_edit(env: Env, cluster: Cluster) -> None:
    env.write("app.yaml", configmap("cfg", env.ns, a="1"))
    env.repo.commit("one")
    env.run()
    kubectl(cluster, "admin", "-n", env.ns, "patch", "configmap", "cfg", "-p", '{"data":{"a":"2"}}')
    result = env.run(mode="detect-only")
    assert (result.mode, result.updated, result.out_of_sync, result.drift_opened) == ("detect-only", 0, 1, 1)
    cm = json.loads(kubectl(cluster, "admin", "-n", env.ns, "get", "configmap", "cfg", "-o", "json").stdout)
    assert cm["data"] == {"a": "2"}
    finished = [r.event for r in env.events("reconcile.finished")][-1]
    assert isinstance(finished, ReconcileFinished) and finished.payload.out_of_sync == 1


@pytest.mark.cluster
def test_prune_deletes_only_what_this_instance_owns_and_the_guard_holds_a_mass_prune(env: Env,
                                                                                    cluster: Cluster) -> None:
    for name in ("a", "b", "c", "d"):
        env.write(f"{name}.yaml", configmap(name, env.ns))
    env.repo.commit("four")
    env.run()
    kubectl(cluster, "admin", "-n", env.ns, "create", "configmap", "by-hand")  # no ownership label
    kubectl(cluster, "admin", "-n", env.ns, "create", "configmap", "other")
    kubectl(cluster, "admin", "-n", env.ns, "label", "configmap", "other", "gitops.dev/instance=someone-else")
    env.repo.remove("a.yaml")
    a_goes = env.repo.commit("a goes")
    kept = env.run()  # prune is off by default
    assert kept.pruned == 0 and "a" in _names(cluster, env.ns)
    dry = env.run(prune=True, mode="dry-run")
    assert "a" in _names(cluster, env.ns)  # a dry run changes nothing: the server kept it
    pruned = env.run(prune=True)
    assert pruned.pruned == 1, (pruned.plan, pruned.errors)
    wait_until(lambda: "a" not in _names(cluster, env.ns), what="a to be deleted")
    from gitops.query.report import build_report

    with EventLog(env.db) as log:  # a commit whose only effect was a prune is applied, when it was pruned
        report = build_report(log, datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
        prune = [r.event for r in log.read(types=["reconcile.action"], action="prune", dry_run=False)]
    change = next(g for g in report.git_changes if g.commit == a_goes)
    assert change.applied_at is not None and change.applied_at == prune[0].effective_at
    assert report.summary.dry_run_passes == 1 and report.summary.reconcile_passes == 3  # the dry run apart
    assert [p.dry_run for p in report.prunes] == [True, False] and dry.run_id != pruned.run_id
    env.run()  # the next pass's list records the delete, whoever the audit log can name for it
    from gitops.query.audit import audit_rows

    with EventLog(env.db) as log:
        deletes = list(audit_rows(log, resource=f"ConfigMap/{env.ns}/a", types=("cluster.deleted",)))
        oob = list(audit_rows(log, out_of_band=True, resource=f"ConfigMap/{env.ns}/a"))
    assert deletes and not any(r.out_of_band for r in deletes) and oob == []  # the prune is the reconciler's
    assert {"by-hand", "other", "b", "c", "d"} <= _names(cluster, env.ns)
    for name in ("b", "c", "d"):
        env.repo.remove(f"{name}.yaml")
    env.repo.commit("nearly everything goes")
    held = env.run(prune=True)
    assert held.pruned == 0 and held.held is not None and "mass-prune" in held.held
    assert {"b", "c", "d"} <= _names(cluster, env.ns)
    skipped = [r.event for r in env.events("reconcile.action")
               if isinstance(r.event, ReconcileAction) and r.event.payload.result == "skipped"]
    assert len(skipped) == 3
    confirmed = env.run(prune=True, allow_mass_prune=True)
    assert confirmed.pruned == 3
    wait_until(lambda: not {"b", "c", "d"} & _names(cluster, env.ns), what="the prune")
    assert {"by-hand", "other"} <= _names(cluster, env.ns)


@pytest.mark.cluster
def test_a_mass_prune_the_guard_held_stays_held_in_later_passes_until_confirmed(env: Env, cluster: Cluster) -> None:
    """A commit that replaces every object (a wrong path, a renamed application) creates the
    new ones in the pass the guard holds. In the next pass the same prunes are a minority of
    the owned objects; they must stay held all the same, in a new process too, until a pass
    run with --allow-mass-prune confirms them."""
    for name in ("a", "b", "c"):
        env.write(f"{name}.yaml", configmap(name, env.ns))
    env.repo.commit("three")
    env.run()
    for name in ("a", "b", "c"):
        env.repo.remove(f"{name}.yaml")
    for name in ("n1", "n2", "n3", "n4", "n5"):
        env.write(f"{name}.yaml", configmap(name, env.ns))
    env.repo.commit("everything renamed")
    first = env.run(prune=True)
    assert first.created == 5 and first.pruned == 0 and first.held is not None and "3 of 3" in first.held
    again = env.run(prune=True)  # now 3 of 8 owned: under the ratio, and still held
    assert again.pruned == 0 and again.held is not None and "held in an earlier pass" in again.held
    env.close()  # a new process (a second one-shot reconcile) reads the hold from the log
    restarted = env.run(prune=True)
    assert restarted.pruned == 0 and restarted.held is not None and "held in an earlier pass" in restarted.held
    env.run(prune=True, mode="dry-run", allow_mass_prune=True)  # a dry run confirms nothing
    after_dry = env.run(prune=True)
    assert after_dry.pruned == 0 and after_dry.held is not None and "held in an earlier pass" in after_dry.held
    assert {"a", "b", "c", "n1", "n5"} <= _names(cluster, env.ns)  # the API server still has them all
    env.write("a.yaml", configmap("a", env.ns))  # Git wants a back: no longer an orphan
    env.repo.commit("a is back")
    env.run(prune=True)
    env.repo.remove("a.yaml")  # removed again: a new removal, judged on its own (1 of 8)
    env.repo.commit("a goes again")
    judged = env.run(prune=True)
    assert judged.pruned == 1 and [a.key for a in judged.plan.prunes] == [f"ConfigMap/{env.ns}/a"]
    wait_until(lambda: "a" not in _names(cluster, env.ns), what="a's prune")
    assert {"b", "c"} <= _names(cluster, env.ns)
    confirmed = env.run(prune=True, allow_mass_prune=True)
    assert confirmed.pruned == 2
    wait_until(lambda: not {"b", "c"} & _names(cluster, env.ns), what="the confirmed prune")
    assert {"n1", "n2", "n3", "n4", "n5"} <= _names(cluster, env.ns)


def _names(cluster: Cluster, ns: str) -> set[str]:
    out = kubectl(cluster, "admin", "-n", ns, "get", "configmaps", "-o", "name").stdout.split()
    return {n.split("/", 1)[1] for n in out}


@pytest.mark.cluster
def test_a_crd_and_its_custom_resource_apply_in_one_commit(env: Env, cluster: Cluster) -> None:
    group = f"{env.ns}.example.com"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"widgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "properties": {
                            "size": {"type": "integer"}}}}}}}]}}
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": env.ns},
              "spec": {"size": 3}}
    env.write("widget.yaml", widget)  # the file order puts the resource first: the plan must not
    env.write("z-crd.yaml", crd)
    env.repo.commit("a CRD and a widget")
    try:
        result = env.run()
        assert (result.created, result.failed) == (2, 0), result.errors
        got = json.loads(kubectl(cluster, "admin", "-n", env.ns, "get", f"widgets.{group}", "w", "-o",
                                 "json").stdout)
        assert got["spec"] == {"size": 3}
        actions = [r.event.resource for r in env.events("reconcile.action")]
        assert actions == [f"CustomResourceDefinition.apiextensions.k8s.io/widgets.{group}",
                           f"Widget.{group}/{env.ns}/w"]
    finally:
        kubectl(cluster, "admin", "delete", "crd", f"widgets.{group}", "--wait=false", check=False)


@pytest.mark.cluster
def test_an_invalid_commit_applies_nothing_and_a_rejected_object_does_not_stop_the_rest(env: Env,
                                                                                       cluster: Cluster) -> None:
    env.write("a.yaml", configmap("a", env.ns, k="1"))
    env.repo.commit("a")
    env.run()
    env.write("a.yaml", configmap("a", env.ns, k="2"))
    env.write("broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n")
    env.repo.commit("a changed, and a broken file")
    held = env.run()
    assert held.updated == 0 and held.plan.unchanged == 1
    assert _data(cluster, env.ns, "a") == {"k": "1"}  # nothing of the invalid commit
    env.repo.remove("broken.yaml")
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad", "namespace": env.ns},
           "spec": {"selector": {"matchLabels": {"app": "x"}},
                    "template": {"metadata": {"labels": {"app": "y"}},  # does not match: 422
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    env.write("bad.yaml", bad)
    env.write("b.yaml", configmap("b", env.ns))
    env.repo.commit("fixed; a bad Deployment and b")
    result = env.run()
    assert (result.status, result.created, result.updated, result.failed) == ("partial", 1, 1, 1)
    assert _data(cluster, env.ns, "a") == {"k": "2"}
    failed = [r.event for r in env.events("reconcile.action")
              if isinstance(r.event, ReconcileAction) and r.event.payload.result == "failed"]
    assert len(failed) == 1 and failed[0].payload.code == 422 and failed[0].payload.terminal
    assert failed[0].payload.reason == "Invalid" and "selector" in (failed[0].payload.error or "")
    again = env.run()  # terminal: not tried again until the object changes
    assert again.failed == 0 and [a.key for a in again.plan.skipped] == [f"Deployment.apps/{env.ns}/bad"]


def _data(cluster: Cluster, ns: str, name: str) -> Any:
    return json.loads(kubectl(cluster, "admin", "-n", ns, "get", "configmap", name, "-o", "json").stdout)["data"]


@pytest.mark.cluster
def test_dry_run_and_a_deny_window_change_nothing(cluster: Cluster, tmp_path: Path, namespace: str) -> None:
    always = SyncWindow(name="freeze", kind="deny", schedule="* * * * *", duration="1h")
    e = Env(cluster, tmp_path, namespace, windows=[always.model_dump()])
    try:
        e.write("a.yaml", configmap("a", namespace))
        e.repo.commit("a")
        frozen = e.run()
        assert (frozen.mode, frozen.held, frozen.created) == ("detect-only", "deny window freeze", 0)
        dry = e.run(mode="dry-run")
        assert dry.created == 0 and [(a.key, err) for a, err in dry.planned] == [(f"ConfigMap/{namespace}/a", None)]
        assert "a" not in _names(cluster, namespace)
        started = [r.event for r in e.events("reconcile.started") if isinstance(r.event, ReconcileStarted)]
        assert started[0].payload.held == "deny window freeze"
        planned = [r.event for r in e.events("reconcile.action") if isinstance(r.event, ReconcileAction)]
        assert [(p.payload.result, p.payload.dry_run) for p in planned] == [("planned", True)]
    finally:
        e.close()


@pytest.mark.cluster
def test_an_unreachable_api_is_transient_and_retried_after_a_backoff(env: Env, cluster: Cluster) -> None:
    env.write("a.yaml", configmap("a", env.ns, k="1"))
    env.repo.commit("a")
    env.run()
    env.write("a.yaml", configmap("a", env.ns, k="2"))
    env.repo.commit("a changed")
    r = env.reconciler()
    now = [1000.0]
    r.monotonic = lambda: now[0]
    assert env._service is not None and env._service.git is not None
    env._service.git.run()  # the commit is in the log; then the API goes away
    cluster.stop_apiserver()
    try:
        down = r.run_pass()
    finally:
        cluster.start_apiserver()
    assert (down.status, down.failed) == ("failed", 1)
    failed = [x.event for x in env.events("reconcile.action") if isinstance(x.event, ReconcileAction)][-1]
    assert failed.payload.result == "failed" and not failed.payload.terminal and failed.payload.reason == "Unavailable"
    waiting = r.run_pass()  # within the backoff: not tried
    assert waiting.updated == 0 and waiting.plan.skipped[0].skipped.startswith("retrying in")  # type: ignore[union-attr]
    now[0] += 120  # past it (retry_initial is 60 s here)
    retried = r.run_pass()
    assert (retried.updated, retried.failed) == (1, 0)
    assert _data(cluster, env.ns, "a") == {"k": "2"}


@pytest.mark.cluster
def test_a_kustomization_is_applied_as_rendered_with_its_generated_secret_values(env: Env, cluster: Cluster) -> None:
    env.write("app/kustomization.yaml", f"namespace: {env.ns}\nresources: [cm.yaml]\nsecretGenerator:\n"
              "- name: creds\n  literals: [password=s3cret]\n")
    env.write("app/cm.yaml", configmap("plain", None, k="1"))
    env.repo.commit("a kustomization")
    result = env.run()
    assert (result.created, result.failed) == (2, 0), result.errors
    secrets = json.loads(kubectl(cluster, "admin", "-n", env.ns, "get", "secrets", "-o", "json").stdout)["items"]
    creds = [s for s in secrets if s["metadata"]["name"].startswith("creds-")]
    import base64
    assert len(creds) == 1 and base64.b64decode(creds[0]["data"]["password"]) == b"s3cret"
    assert _data(cluster, env.ns, "plain") == {"k": "1"}
    assert env.run().plan.unchanged == 2  # and then in sync


@pytest.mark.cluster
def test_a_suspended_instance_records_each_pass_as_skipped_and_changes_nothing(cluster: Cluster, tmp_path: Path,
                                                                               namespace: str) -> None:
    e = Env(cluster, tmp_path, namespace, suspend=True)
    try:
        e.write("a.yaml", configmap("a", namespace))
        e.repo.commit("a")
        result = e.run()
        assert (result.status, result.held, result.created) == ("skipped", "suspended", 0)
        assert "a" not in _names(cluster, namespace)
        finished = [r.event for r in e.events("reconcile.finished") if isinstance(r.event, ReconcileFinished)]
        assert [(f.payload.status, f.payload.held) for f in finished] == [("skipped", "suspended")]
    finally:
        e.close()
