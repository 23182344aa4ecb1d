"""The cluster source against the real local control plane: watch, attribution, 410,
outages, redaction, idleness. No mocks."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pykube
import pytest

from gitops.events import Attribution, ClusterDeleted, ClusterObserved
from gitops.sources.cluster import ClusterSource, ClusterSourceConfig
from gitops.store import EventLog
from tests.cluster_fixtures import Cluster, audit_records, grant, kubectl, wait_until
from tests.gitrepo import configmap
from tests.test_cluster_contract import server_side_apply

pytestmark = pytest.mark.cluster


def source_config(cluster: Cluster, *, audit: bool = True, **extra: Any) -> ClusterSourceConfig:
    return ClusterSourceConfig(kubeconfig=str(cluster.kubeconfig), context="admin" if cluster.local else None,
                               audit_log=str(cluster.audit_log) if audit and cluster.audit_log else None,
                               kinds=["ConfigMap", "Secret"], backoff_initial=0.2, backoff_max=2.0, **extra)


@contextmanager
def running(db: Path, config: ClusterSourceConfig) -> Iterator[ClusterSource]:
    source = ClusterSource(db, config)
    source.start()
    try:
        assert source.wait_synced(60), "the source did not list its kinds within 60 s"
        yield source
    finally:
        source.stop()


def history(db: Path, namespace: str) -> list[tuple[str, str, str | None]]:
    """(type, resource, change) of the cluster events about ConfigMaps in ``namespace``."""
    out: list[tuple[str, str, str | None]] = []
    with EventLog(db) as log:
        for r in log.read(types=("cluster.observed", "cluster.deleted")):
            if r.event.resource and r.event.resource.startswith(f"ConfigMap/{namespace}/"):
                change = r.event.payload.change if isinstance(r.event, ClusterObserved) else None
                out.append((r.event.type, r.event.resource, change))
    return out


def last(db: Path, resource: str) -> Any:
    with EventLog(db) as log:
        found = list(log.read(resource=resource, types=("cluster.observed", "cluster.deleted")))
    return found[-1].event if found else None


def alice_edits(cluster: Cluster, admin_api: Any, namespace: str, db_path: Path, *,
                audit: bool) -> tuple[ClusterObserved, str]:
    """alice patches a ConfigMap with kubectl while the source watches; returns what it
    recorded, and the resourceVersion of her change."""
    grant(cluster, namespace, "alice")
    pykube.ConfigMap(admin_api, configmap("shared", namespace)).create()
    key = f"ConfigMap/{namespace}/shared"
    with running(db_path, source_config(cluster, audit=audit)):
        rv = kubectl(cluster, "alice", "-n", namespace, "patch", "configmap", "shared", "--type=merge",
                     "-p", '{"data": {"k": "by-alice"}}', "-o", "jsonpath={.metadata.resourceVersion}").stdout
        wait_until(lambda: (e := last(db_path, key)) is not None and e.revision == rv, what="alice's change")
    ev = last(db_path, key)
    assert isinstance(ev, ClusterObserved)
    return ev, rv


def test_a_change_by_alice_is_attributed_to_alice_through_the_audit_log(
    cluster: Cluster, admin_api: Any, namespace: str, db_path: Path,
) -> None:
    ev, rv = alice_edits(cluster, admin_api, namespace, db_path, audit=True)
    key = f"ConfigMap/{namespace}/shared"
    assert (ev.actor, ev.payload.attribution) == ("alice", Attribution.AUDIT)
    # her request's record, as the API server wrote it to its audit log
    (written,) = [r for r in audit_records(cluster, namespace) if r.get("auditID") == ev.payload.audit_id]
    assert written["user"]["username"] == "alice" and written["verb"] in ("patch", "update")
    assert written["objectRef"]["name"] == "shared" and written["responseObject"]["metadata"]["resourceVersion"] == rv
    # is kept in the change's own event, whole, and not again as an audit event of its own
    kept = ev.payload.audit
    assert kept is not None and kept.audit_id == written["auditID"]
    assert (kept.user, kept.verb, kept.resource_version) == ("alice", written["verb"], rv)
    assert kept.groups == written["user"]["groups"] == ["system:authenticated"]  # and no group ""
    assert kept.source_ips == written["sourceIPs"] and kept.user_agent == written["userAgent"]
    with EventLog(db_path) as log:
        assert [r.event.payload for r in log.read(types=["audit"], resource=key) if r.event.revision == rv] == []


def test_without_the_audit_log_the_field_manager_is_named_and_said_so(
    cluster: Cluster, admin_api: Any, namespace: str, db_path: Path,
) -> None:
    ev, _ = alice_edits(cluster, admin_api, namespace, db_path, audit=False)
    assert ev.payload.attribution == Attribution.MANAGED_FIELDS
    assert ev.actor == ev.payload.manager == "kubectl-patch"  # her change's own managedFields entry
    assert ev.payload.operation == "Update"
    assert ev.payload.audit_id is None


def test_the_reconcilers_own_field_manager_is_recognised(cluster: Cluster, admin_api: Any, namespace: str,
                                                         db_path: Path) -> None:
    key = f"ConfigMap/{namespace}/applied"
    with running(db_path, source_config(cluster)):
        obj = server_side_apply(admin_api, configmap("applied", namespace), "gitops")
        wait_until(lambda: (e := last(db_path, key)) is not None and e.revision == obj["metadata"]["resourceVersion"],
                   what="the apply")
    ev = last(db_path, key)
    assert (ev.actor, ev.payload.attribution, ev.payload.operation) == ("gitops", Attribution.RECONCILER, "Apply")


def test_a_410_relists_and_records_a_delete_that_happened_meanwhile(cluster: Cluster, admin_api: Any, namespace: str,
                                                                   db_path: Path) -> None:
    for name in ("stays", "goes"):
        pykube.ConfigMap(admin_api, configmap(name, namespace)).create()
    config = source_config(cluster, audit=False)
    with running(db_path, config):
        wait_until(lambda: len(history(db_path, namespace)) == 2, what="both objects")
    # while nothing watches: a delete, a change, then the history they happened in is compacted away
    pykube.ConfigMap(admin_api, configmap("goes", namespace)).delete()
    changed = pykube.ConfigMap.objects(admin_api, namespace=namespace).get(name="stays")
    changed.obj["data"] = {"k": "changed-while-away"}
    changed.update()
    cluster.compact_etcd()
    cluster.stop_apiserver()
    cluster.start_apiserver()
    with running(db_path, config):  # resumes from its checkpoint, meets 410, relists
        wait_until(lambda: len(history(db_path, namespace)) == 4, what="the relist")
    assert history(db_path, namespace)[2:] == [
        ("cluster.observed", f"ConfigMap/{namespace}/stays", "relisted"),
        ("cluster.deleted", f"ConfigMap/{namespace}/goes", None),
    ]
    gone = last(db_path, f"ConfigMap/{namespace}/goes")
    assert isinstance(gone, ClusterDeleted) and gone.payload.synthetic


def test_the_api_server_stopped_and_restarted_mid_watch_loses_nothing(cluster: Cluster, admin_api: Any,
                                                                      namespace: str, db_path: Path) -> None:
    with running(db_path, source_config(cluster, audit=False)):
        pykube.ConfigMap(admin_api, configmap("before", namespace)).create()
        wait_until(lambda: len(history(db_path, namespace)) == 1, what="the first object")
        cluster.stop_apiserver()
        with EventLog(db_path) as log:
            wait_until(lambda: any(True for _ in log.read(types=["source.outage_started"])), what="the outage")
        cluster.start_apiserver()
        pykube.ConfigMap(admin_api, configmap("after", namespace)).create()
        wait_until(lambda: len(history(db_path, namespace)) == 2, timeout=60, what="the object made after")
        with EventLog(db_path) as log:
            wait_until(lambda: any(True for _ in log.read(types=["source.outage_ended"])), what="the recovery")
    assert [h[1] for h in history(db_path, namespace)] == [f"ConfigMap/{namespace}/before",
                                                           f"ConfigMap/{namespace}/after"]


def test_a_secret_value_never_reaches_the_database(cluster: Cluster, admin_api: Any, namespace: str,
                                                   db_path: Path) -> None:
    value = f"cluster-secret-{uuid.uuid4().hex}"
    key = f"Secret/{namespace}/creds"
    with running(db_path, source_config(cluster)):
        pykube.Secret(admin_api, {"apiVersion": "v1", "kind": "Secret",
                                  "metadata": {"name": "creds", "namespace": namespace},
                                  "stringData": {"password": value}}).create()
        wait_until(lambda: last(db_path, key) is not None, what="the Secret")
    ev = last(db_path, key)
    assert ev.payload.manifest["data"]["password"].startswith("sha256:")
    needles = [value.encode(), base64.b64encode(value.encode())]
    for f in db_path.parent.iterdir():
        if f.name.startswith(db_path.name):
            data = f.read_bytes()
            assert not any(n in data for n in needles), f.name


def _settled(admin_api: Any) -> bool:
    """No namespace is being deleted (earlier tests' namespaces are still going away)."""
    return all(ns.obj.get("status", {}).get("phase") != "Terminating"
               for ns in pykube.Namespace.objects(admin_api).iterator())


def test_an_idle_cluster_appends_nothing(cluster: Cluster, admin_api: Any, namespace: str, db_path: Path) -> None:
    pykube.ConfigMap(admin_api, configmap("quiet", namespace)).create()
    wait_until(lambda: _settled(admin_api), timeout=120, what="earlier namespaces to finish deleting")
    config = source_config(cluster, audit=False)
    first = ClusterSource(db_path, config).ingest_once()
    assert first.events > 0
    assert ClusterSource(db_path, config).ingest_once().events == 0
    with EventLog(db_path) as log:
        n = log.count()
    sentinel = f"ConfigMap/{namespace}/sentinel"
    with running(db_path, config):
        # once listed, a change made now is recorded after anything the start would have
        # recorded: seeing it is seeing that the start recorded nothing else
        pykube.ConfigMap(admin_api, configmap("sentinel", namespace)).create()
        wait_until(lambda: last(db_path, sentinel) is not None, what="the sentinel change")
    with EventLog(db_path) as log:
        extra = [(r.event.type, r.event.resource) for r in log.read(since_seq=n)]
    assert extra == [("cluster.observed", sentinel)]


def test_a_kind_the_server_does_not_serve_is_a_source_error(cluster: Cluster, db_path: Path) -> None:
    config = source_config(cluster, audit=False, ).model_copy(update={"kinds": ["Widget.example.com"]})
    summary = ClusterSource(db_path, config).ingest_once()
    assert summary.unserved == ("Widget.example.com",)
    with EventLog(db_path) as log:
        errors = [r.event.payload for r in log.read(types=["source.error"])]
    assert [(e.code, e.message) for e in errors] == [  # type: ignore[union-attr]
        ("kind-not-served", "the cluster does not serve Widget.example.com")]


def test_cli_ingest_cluster_reports_one_line(cluster: Cluster, tmp_path: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "gitops", "--db", str(tmp_path / "g.db"), "ingest", "cluster",
                          "--kubeconfig", str(cluster.kubeconfig), "--context", "admin", "--kind", "ConfigMap"],
                         capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert "kinds listed" in res.stdout
    res = subprocess.run([sys.executable, "-m", "gitops", "--db", str(tmp_path / "g.db"), "ingest", "cluster",
                          "--kubeconfig", str(tmp_path / "missing")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.startswith("error: cannot use kubeconfig") and "Traceback" not in res.stderr


def test_gitops_watch_follows_git_and_the_cluster_then_stops_cleanly(
    cluster: Cluster, admin_api: Any, namespace: str, tmp_path: Path,
) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.gitrepo import GitRepo

    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("from-git", namespace))
    repo.commit("one")
    db = tmp_path / "g.db"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "GITOPS_AUDIT_LOG": str(cluster.audit_log or "")}
    args = ["--kind", "ConfigMap"] + (["--context", "admin"] if cluster.local else [])
    proc = subprocess.Popen([sys.executable, "-m", "gitops", "--db", str(db), "watch", "--repo", str(repo.path),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        key = f"ConfigMap/{namespace}/made-live"
        wait_until(lambda: db.exists() and _has(db, "desired.applied", f"ConfigMap/{namespace}/from-git"),
                   what="the git history")
        pykube.ConfigMap(admin_api, configmap("made-live", namespace)).create()
        repo.write("b.yaml", configmap("second", namespace))
        repo.commit("two")
        wait_until(lambda: _has(db, "cluster.observed", key), what="the cluster change")
        wait_until(lambda: _has(db, "desired.applied", f"ConfigMap/{namespace}/second"), what="the new commit")
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped; everything seen was written" in err
    with EventLog(db) as log:
        assert log.verify().ok


def test_gitops_watch_stops_with_one_line_and_exit_1_when_the_log_cannot_be_written(
    cluster: Cluster, admin_api: Any, namespace: str, tmp_path: Path,
) -> None:
    """The database is emptied under a running watch (a disk fault, a careless rm): the
    cluster source cannot append, and watch says so in one line and exits 1."""
    import os
    import subprocess
    import sys

    db = tmp_path / "w.db"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    args = ["--kind", "ConfigMap"] + (["--context", "admin"] if cluster.local else [])
    proc = subprocess.Popen([sys.executable, "-m", "gitops", "--db", str(db), "watch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        pykube.ConfigMap(admin_api, configmap("before", namespace)).create()
        wait_until(lambda: db.exists() and _has(db, "cluster.observed", f"ConfigMap/{namespace}/before"),
                   what="the source to be running")
        # the database file last: the watch's background checkpoint may be copying the WAL
        # into it meanwhile, and would put its first page back if the WAL were still whole
        for f in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), db):
            with open(f, "r+b") as fh:
                fh.write(b"\xff" * 4096)  # the header and first page gone
        pykube.ConfigMap(admin_api, configmap("after", namespace)).create()
        _out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error")]
    assert len(lines) == 1 and "could not write to" in lines[0] and str(db) in lines[0], err
    assert "Traceback" not in err


def _has(db: Path, event_type: str, resource: str) -> bool:
    with EventLog(db) as log:
        return any(True for _ in log.read(types=[event_type], resource=resource))


def test_a_kind_the_user_may_not_list_is_a_source_error_not_an_outage(cluster: Cluster, db_path: Path) -> None:
    if not cluster.local:
        pytest.skip("needs the local control plane's user bob")
    config = ClusterSourceConfig(kubeconfig=str(cluster.kubeconfig), context="bob", kinds=["ConfigMap"])
    ClusterSource(db_path, config).ingest_once()  # bob has no rights at all
    with EventLog(db_path) as log:
        errors = [r.event.payload for r in log.read(types=["source.error"])]
        outages = list(log.read(types=["source.outage_started"]))
    assert {e.code for e in errors} == {"kind-forbidden"}  # type: ignore[union-attr]
    assert outages == []


def install_cluster_scoped_crd(admin_api: Any, group: str, kind: str) -> None:
    """A cluster-scoped custom resource definition of ``kind`` in ``group``, once served."""
    plural = kind.lower() + "s"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Cluster",
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
    }
    r = admin_api.post(version="apiextensions.k8s.io/v1", url="customresourcedefinitions", data=json.dumps(crd))
    assert r.status_code in (201, 409), r.text
    wait_until(lambda: admin_api.get(version=f"{group}/v1").status_code == 200, what="the CRD to be served")


def test_git_takes_each_kinds_scope_from_discovery_when_a_cluster_is_configured(
    cluster: Cluster, admin_api: Any, tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys

    from tests.gitrepo import GitRepo

    install_cluster_scoped_crd(admin_api, "scope-test.example.com", "Gadget")
    repo = GitRepo(tmp_path / "repo")
    # the built-in table cannot know this kind: it would take it as namespaced
    repo.write("gadget.yaml", {"apiVersion": "scope-test.example.com/v1", "kind": "Gadget",
                               "metadata": {"name": "g1", "namespace": "ignored"}})
    repo.commit("a cluster-scoped custom resource")
    cfg = tmp_path / "gitops.yaml"
    context = "\n  context: admin" if cluster.local else ""
    cfg.write_text(f"git:\n  repo: {repo.path}\ncluster:\n  kubeconfig: {cluster.kubeconfig}{context}\n")

    def ingest(*config: str) -> list[str]:
        db = tmp_path / f"g{len(config)}.db"
        res = subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), *config, "ingest", "git",
                              "--repo", str(repo.path)], capture_output=True, text=True, env=dict(os.environ),
                             timeout=120)
        assert res.returncode == 0, res.stderr
        with EventLog(db) as log:
            return [str(r.event.resource) for r in log.read(types=["desired.applied"])]

    assert ingest("--config", str(cfg)) == ["Gadget.scope-test.example.com/g1"]
    assert ingest() == ["Gadget.scope-test.example.com/ignored/g1"]


def test_the_scope_a_source_gives_git_learns_of_crds_installed_after_start(
    cluster: Cluster, admin_api: Any, namespace: str, tmp_path: Path,
) -> None:
    group = f"{namespace}.example.com"  # a group of this run's own: CRDs outlive a test
    config = ClusterSourceConfig(kubeconfig=str(cluster.kubeconfig), context="admin" if cluster.local else None)
    source = ClusterSource(tmp_path / "s.db", config)
    source.start()
    try:
        scope = source.scope()
        assert scope("apps", "Deployment") and not scope("", "Namespace")
        assert scope(group, "Widget")  # unknown yet: the built-in guess
        install_cluster_scoped_crd(admin_api, group, "Widget")
        source.refresh()
        assert not scope(group, "Widget")  # the same scope, now current
    finally:
        source.stop()


def test_kinds_that_enter_the_desired_state_are_watched_from_then_on(cluster: Cluster, admin_api: Any,
                                                                    namespace: str, tmp_path: Path) -> None:
    from gitops.sources.git import GitIngest, GitSourceConfig
    from tests.gitrepo import GitRepo

    db = tmp_path / "g.db"
    config = ClusterSourceConfig(kubeconfig=str(cluster.kubeconfig), context="admin" if cluster.local else None)
    source = ClusterSource(db, config)
    source.start()
    try:
        assert source.refresh() == []  # nothing desired yet: Namespaces only
        repo = GitRepo(tmp_path / "repo")
        repo.write("cm.yaml", configmap("desired", namespace))
        repo.commit("a first ConfigMap")
        with EventLog(db) as log:
            GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
        assert source.refresh() == ["ConfigMap"]
        pykube.ConfigMap(admin_api, configmap("desired", namespace)).create()
        wait_until(lambda: last(db, f"ConfigMap/{namespace}/desired") is not None, what="the ConfigMap")
    finally:
        source.stop()


def test_a_restart_resumes_the_watch_and_records_every_change_made_while_down(
    cluster: Cluster, admin_api: Any, namespace: str, db_path: Path,
) -> None:
    config = source_config(cluster, audit=False)
    with running(db_path, config):
        pykube.ConfigMap(admin_api, configmap("kept", namespace)).create()
        wait_until(lambda: len(history(db_path, namespace)) == 1, what="the first object")
    # gitops is down: an object is made, changed and deleted, another one changed
    short = pykube.ConfigMap(admin_api, configmap("short-lived", namespace))
    short.create()
    short.obj["data"] = {"k": "changed"}
    short.update()
    short.delete()
    kept = pykube.ConfigMap.objects(admin_api, namespace=namespace).get(name="kept")
    kept.obj["data"] = {"k": "changed"}
    kept.update()
    with running(db_path, config):  # resumes from its checkpoint: the watch replays each change
        wait_until(lambda: len(history(db_path, namespace)) == 5, what="the changes made while down")
    assert history(db_path, namespace) == [
        ("cluster.observed", f"ConfigMap/{namespace}/kept", "added"),
        ("cluster.observed", f"ConfigMap/{namespace}/short-lived", "added"),
        ("cluster.observed", f"ConfigMap/{namespace}/short-lived", "modified"),
        ("cluster.deleted", f"ConfigMap/{namespace}/short-lived", None),
        ("cluster.observed", f"ConfigMap/{namespace}/kept", "modified"),
    ]


def test_lists_are_read_in_pages(cluster: Cluster, admin_api: Any, namespace: str) -> None:
    from gitops.sources.cluster.client import ClusterClient

    for i in range(7):
        pykube.ConfigMap(admin_api, configmap(f"page-{i}", namespace)).create()
    client = ClusterClient(cluster.kubeconfig, context="admin" if cluster.local else None, page_size=3)
    kind = client.discover().kinds[("", "ConfigMap")]
    items, rv = client.list(kind)
    names = [i["metadata"]["name"] for i in items if i["metadata"]["namespace"] == namespace]
    assert names == [f"page-{i}" for i in range(7)]
    assert len({(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items}) == len(items)
    assert int(rv) > 0
