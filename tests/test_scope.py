"""A kind's scope decides an object's key, and so where the reconciler acts: a custom
resource committed with its CRD is named as the CRD says (cluster-scoped ones without a
namespace), a cluster-scoped object's ``metadata.namespace`` is left out as the API server
leaves it out, and an object the log named in the other scope than the cluster serves its
kind in is held (``ScopeMismatch``), never pruned as an orphan nor created in the wrong
scope."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gitops.diff import DiffItem, ObjectDiff, Op, Status
from gitops.events import GitReconfigured
from gitops.reconcile import make_plan
from gitops.sources.git import GitIngest, GitSourceConfig
from gitops.store import EventLog
from tests.cli_helpers import gitops
from tests.cluster_fixtures import Cluster, kubectl
from tests.gitrepo import GitRepo
from tests.test_git_ingest import desired
from tests.test_reconcile import Env


def crd(group: str, kind: str, scope: str) -> dict[str, Any]:
    plural = kind.lower() + "s"
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": scope,
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}


def gadget(group: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": meta, "spec": {"color": "blue"}}


def dump(*docs: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump_all(docs)


# ---------------------------------------------------------------------------- reading Git


def test_a_custom_resource_committed_with_its_cluster_scoped_crd_is_named_without_a_namespace(
        log: EventLog, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a-gadgets.yaml", dump(gadget("toys.example", "g1"), gadget("toys.example", "g2", "shop")))
    repo.write("z-crd.yaml", dump(crd("toys.example", "Gadget", "Cluster")))  # read after the gadgets
    repo.commit("a CRD and its objects")
    GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()  # no cluster: the built-in table knows no Gadget
    state = desired(log)
    assert sorted(state) == ["CustomResourceDefinition.apiextensions.k8s.io/gadgets.toys.example",
                             "Gadget.toys.example/g1", "Gadget.toys.example/g2"]
    assert "namespace" not in state["Gadget.toys.example/g2"]["metadata"]  # the API server drops it too


def test_a_crd_added_or_removed_later_renames_the_objects_of_its_kind(log: EventLog, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("gadgets.yaml", dump(gadget("toys.example", "g1")))
    repo.commit("a gadget, its kind unknown: taken as namespaced")
    source = GitIngest(log, GitSourceConfig(repo=str(repo.path)))
    source.run()
    assert sorted(desired(log)) == ["Gadget.toys.example/default/g1"]
    repo.write("crd.yaml", dump(crd("toys.example", "Gadget", "Cluster")))
    repo.commit("its CRD: cluster-scoped")
    source.run()
    assert sorted(desired(log)) == ["CustomResourceDefinition.apiextensions.k8s.io/gadgets.toys.example",
                                    "Gadget.toys.example/g1"]
    repo.write("crd.yaml", dump(crd("toys.example", "Gadget", "Namespaced")))
    repo.commit("namespaced after all")
    source.run()
    assert sorted(desired(log)) == ["CustomResourceDefinition.apiextensions.k8s.io/gadgets.toys.example",
                                    "Gadget.toys.example/default/g1"]
    # the same history read at once, from a new log, gives the same state
    with EventLog(tmp_path / "again.db") as again:
        GitIngest(again, GitSourceConfig(repo=str(repo.path))).run()
        assert desired(again) == desired(log)


def test_a_cluster_scoped_objects_namespace_is_left_out_of_the_desired_state(log: EventLog, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "viewer", "namespace": "shop"}, "rules": []}
    repo.write("role.yaml", dump(role))
    repo.commit("a ClusterRole, written with a namespace")
    GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
    assert desired(log) == {"ClusterRole.rbac.authorization.k8s.io/viewer": {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "viewer"},
        "rules": []}}


def test_kinds_the_cluster_comes_to_serve_as_cluster_scoped_are_read_again_once(log: EventLog, db_path: Path,
                                                                                tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("gadgets.yaml", dump(gadget("toys.example", "g1"), {"apiVersion": "v1", "kind": "ConfigMap",
                                                                   "metadata": {"name": "c"}}))
    repo.commit("a gadget, its CRD not yet installed")
    served: dict[tuple[str, str], bool] = {}
    source = GitIngest(log, GitSourceConfig(repo=str(repo.path)),
                       scope=lambda group, kind: served.get((group, kind), kind != "Namespace"))
    source.run()
    assert sorted(desired(log)) == ["ConfigMap/default/c", "Gadget.toys.example/default/g1"]
    served[("toys.example", "Gadget")] = False  # its CRD was installed: discovery says cluster-scoped
    seq = log.count()
    source.run()
    assert sorted(desired(log)) == ["ConfigMap/default/c", "Gadget.toys.example/g1"]
    assert [(r.event.type, r.event.resource) for r in log.read(since_seq=seq)] == [
        ("git.reconfigured", None), ("desired.removed", "Gadget.toys.example/default/g1"),
        ("desired.applied", "Gadget.toys.example/g1")]
    seq = log.count()
    source.run()
    del served[("toys.example", "Gadget")]  # its CRD deleted (an upgrade): no flapping back
    source.run()
    assert log.count() == seq
    # TYPE/NAME names the key as the log now holds it, not the namespaced one it held before
    rows = json.loads(gitops("audit", "--resource", "gadget.toys.example/g1", "-o", "json", db=db_path).stdout)
    assert {r["resource"] for r in rows} == {"Gadget.toys.example/g1"}


# ---------------------------------------------------------------------------- the plan

OWNED = {"labels": {"gitops.dev/instance": "default"}}


def _plan(diffs: list[ObjectDiff], desired: dict[str, Any], actual: dict[str, Any], served: bool | None) -> Any:
    return make_plan(diffs, desired=desired, actual=actual, instance="default", prune=True, mass_prune_ratio=1.0,
                     namespaced=lambda group, kind: served)


def test_an_object_named_in_the_other_scope_is_held_and_its_live_twin_not_pruned() -> None:
    want, live = "Gadget.toys.example/default/g1", "Gadget.toys.example/g1"
    diffs = [ObjectDiff(want, Status.MISSING, (DiffItem(Op.MISSING, ""),)), ObjectDiff(live, Status.ORPHAN)]
    plan = _plan(diffs, {want: {}}, {live: {"metadata": {"name": "g1", **OWNED}}}, served=None)
    assert plan.actions == []
    assert sorted((a.key, a.reason, a.failed) for a in plan.skipped) == [(want, "ScopeMismatch", True),
                                                                         (live, "ScopeMismatch", True)]
    assert all(f"read Git's Gadget.toys.example g1 as namespaced ({want})" in (a.skipped or "") for a in plan.skipped)


def test_an_object_is_not_created_in_a_scope_the_cluster_does_not_serve_its_kind_in() -> None:
    want = "Gadget.toys.example/default/g1"
    diffs = [ObjectDiff(want, Status.MISSING, (DiffItem(Op.MISSING, ""),))]
    assert [(a.key, a.reason) for a in _plan(diffs, {want: {}}, {}, served=False).skipped] == [(want, "ScopeMismatch")]
    assert [a.key for a in _plan(diffs, {want: {}}, {}, served=True).actions] == [want]
    assert [a.key for a in _plan(diffs, {want: {}}, {}, served=None).actions] == [want]  # not served yet: created


# ---------------------------------------------------------------------------- on the control plane


@pytest.fixture
def env(cluster: Cluster, tmp_path: Path, namespace: str) -> Any:
    e = Env(cluster, tmp_path, namespace)
    yield e
    e.close()
    group = f"{namespace}.example.com"
    kubectl(cluster, "admin", "delete", "crd", f"gadgets.{group}", "--ignore-not-found", "--wait=false", check=False)
    kubectl(cluster, "admin", "delete", "clusterrole", f"{namespace}-viewer", "--ignore-not-found", check=False)


def _gadgets(cluster: Cluster, group: str) -> list[str]:
    out = kubectl(cluster, "admin", "get", f"gadgets.{group}", "-o", "json").stdout
    return sorted(i["metadata"]["name"] for i in json.loads(out)["items"])


@pytest.mark.cluster
def test_a_cluster_scoped_crd_and_its_objects_in_one_commit_converge_and_stay(env: Env, cluster: Cluster) -> None:
    group = f"{env.ns}.example.com"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": f"{env.ns}-viewer", "namespace": env.ns},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    env.write("app.yaml", crd(group, "Gadget", "Cluster"), gadget(group, "g1"), gadget(group, "g2", env.ns), role)
    env.repo.commit("a cluster-scoped kind, two of its objects, a ClusterRole written with a namespace")
    first = env.run(prune=True)
    assert (first.created, first.failed) == (4, 0), first.errors
    for _ in range(2):  # before: each pass pruned the gadgets as orphans and patched the ClusterRole again
        again = env.run(prune=True)
        assert (again.plan.actions, again.plan.skipped, again.failed) == ([], [], 0), again.plan
        assert again.plan.unchanged == 4
    assert _gadgets(cluster, group) == ["g1", "g2"]


@pytest.mark.cluster
def test_an_object_the_log_read_before_the_cluster_served_its_kind_is_read_again_and_not_pruned(
        env: Env, cluster: Cluster) -> None:
    group = f"{env.ns}.example.com"
    env.write("gadget.yaml", gadget(group, "g1"))
    env.repo.commit("a gadget whose CRD someone else installs")
    with EventLog(env.db) as log:  # read with no cluster to ask: taken as namespaced
        GitIngest(log, env.git).run()
        assert f"Gadget.{group}/default/g1" in desired(log)
    kubectl(cluster, "admin", "apply", "-f", "-", stdin=json.dumps(crd(group, "Gadget", "Cluster")))
    kubectl(cluster, "admin", "wait", "--for=condition=Established", f"crd/gadgets.{group}", "--timeout=60s")
    live = {**gadget(group, "g1"), "metadata": {"name": "g1", "labels": {"gitops.dev/instance": env.ns}}}
    kubectl(cluster, "admin", "apply", "-f", "-", stdin=json.dumps(live))
    result = env.run(prune=True)  # its Git source asks the cluster: the commit is read again, g1 named rightly
    assert (result.failed, result.pruned, result.plan.skipped) == (0, 0, []), result.plan
    assert _gadgets(cluster, group) == ["g1"]  # checked with kubectl: still there
    with EventLog(env.db) as log:
        assert list(desired(log)) == [f"Gadget.{group}/g1"]
        again = [r.event for r in log.read(types=["git.reconfigured"]) if isinstance(r.event, GitReconfigured)]
    assert [(e.actor, e.payload.settings["scopes"]) for e in again] == [(None, {f"Gadget.{group}": "cluster"})]
    assert env.run(prune=True).plan.actions == []


def test_a_namespace_the_log_kept_for_a_cluster_scoped_object_is_no_difference() -> None:
    from gitops.diff import diff_object

    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "rules": []}
    kept = {**role, "metadata": {"name": "viewer", "namespace": "shop"}}  # read before the Git source left it out
    live = {**role, "metadata": {"name": "viewer", "uid": "u", "resourceVersion": "1"}}
    assert diff_object(kept, live) == []
    namespaced = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}}
    assert diff_object(namespaced, {**namespaced, "metadata": {"name": "c", "namespace": "other"}}) != []


def test_a_crd_in_git_never_changes_the_scope_of_a_built_in_kind() -> None:
    from gitops.sources.git.tree import crd_scope

    assert crd_scope(crd("toys.example", "Gadget", "Cluster")) == (("toys.example", "Gadget"), False)
    assert crd_scope(crd("rbac.authorization.k8s.io", "ClusterRole", "Namespaced")) is None
    assert crd_scope(crd("apps", "Deployment", "Cluster")) is None  # a group without a dot: refused by the server
    assert crd_scope({**crd("toys.example", "Gadget", "Cluster"), "spec": {"group": "toys.example"}}) is None


@pytest.mark.cluster
def test_a_running_service_applies_an_object_whose_crd_someone_installs_later(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    from tests.cluster_fixtures import wait_until
    from tests.test_run import _config, gitops_run

    group = f"{namespace}.example.com"
    repo = GitRepo(tmp_path / "repo")
    repo.write("gadget.yaml", dump(gadget(group, "g1")))
    repo.commit("a gadget; its CRD is installed by someone else")
    db = tmp_path / "g.db"
    config = _config(tmp_path, cluster, namespace, repo, interval=2, retry_initial=1)
    try:
        with gitops_run(db, config, tmp_path) as running:
            wait_until(lambda: "does not serve" in running.output(), what="a pass to find the kind not served")
            kubectl(cluster, "admin", "apply", "-f", "-", stdin=json.dumps(crd(group, "Gadget", "Cluster")))
            # before: held for good ("waiting for the desired or live object to change"), never applied
            wait_until(lambda: kubectl(cluster, "admin", "get", f"gadgets.{group}", "g1", check=False).returncode == 0,
                       timeout=60, what="the gadget created by the running service")

            def in_sync() -> bool:
                doc = json.loads(gitops("status", "-o", "json", db=db).stdout or "{}")
                return [(o["resource"], o["status"]) for o in doc.get("objects", [])] == [
                    (f"Gadget.{group}/g1", "in-sync")]

            wait_until(in_sync, timeout=60, what="Git read again under the cluster's scope, and the kind watched")
    finally:
        kubectl(cluster, "admin", "delete", "crd", f"gadgets.{group}", "--ignore-not-found", "--wait=false",
                check=False)
    with EventLog(db) as log:
        again = [r.event for r in log.read(types=["git.reconfigured"]) if isinstance(r.event, GitReconfigured)]
    assert [e.payload.settings["scopes"] for e in again] == [{f"Gadget.{group}": "cluster"}]
    assert "the cluster now serves" in gitops("log", "--type", "git.reconfigured", db=db).stdout
