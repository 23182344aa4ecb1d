"""Who changed the cluster, against the real local control plane, with the real kubectl as
``alice`` and ``bob``: a change is credited only on evidence about that exact change."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pykube
import pytest

from gitops.events import Attribution, ClusterDeleted, ClusterObserved
from gitops.sources.cluster import ClusterSourceConfig
from gitops.store import EventLog
from tests.cluster_fixtures import Cluster, audit_records, grant, kubectl, wait_until
from tests.gitrepo import configmap
from tests.test_cluster_source import history, last, running, source_config

pytestmark = pytest.mark.cluster


def events(db: Path, resource: str) -> list[Any]:
    with EventLog(db) as log:
        return [r.event for r in log.read(resource=resource, types=("cluster.observed", "cluster.deleted"))]


def test_alternating_deletes_by_alice_and_bob_are_each_credited_to_who_made_them(
        cluster: Cluster, namespace: str, db_path: Path) -> None:
    grant(cluster, namespace, "alice", "bob")
    key = f"ConfigMap/{namespace}/x"
    rounds = ["alice", "bob", "alice", "bob", "bob", "alice"]
    with running(db_path, source_config(cluster)):
        for i, user in enumerate(rounds, start=1):
            kubectl(cluster, user, "-n", namespace, "create", "configmap", "x", f"--from-literal=round={i}")
            kubectl(cluster, user, "-n", namespace, "delete", "configmap", "x")
            wait_until(lambda n=i: sum(isinstance(e, ClusterDeleted) for e in events(db_path, key)) == n,
                       what=f"delete {i}")
    deletes = [e for e in events(db_path, key) if isinstance(e, ClusterDeleted)]
    assert [(e.actor, e.payload.attribution) for e in deletes] == [(u, Attribution.AUDIT) for u in rounds]
    assert len({e.payload.uid for e in deletes}) == len(rounds)  # six objects, one delete each
    creates = [e for e in events(db_path, key) if isinstance(e, ClusterObserved)]
    assert [e.actor for e in creates] == rounds


def test_a_secret_audited_without_its_body_is_credited_to_alice(cluster: Cluster, namespace: str,
                                                               db_path: Path) -> None:
    grant(cluster, namespace, "alice")
    key = f"Secret/{namespace}/creds"
    with running(db_path, source_config(cluster)):
        kubectl(cluster, "alice", "-n", namespace, "create", "secret", "generic", "creds", "--from-literal=p=q")
        wait_until(lambda: events(db_path, key), what="the Secret")
        kubectl(cluster, "alice", "-n", namespace, "delete", "secret", "creds")
        wait_until(lambda: len(events(db_path, key)) == 2, what="its deletion")
    made, gone = events(db_path, key)
    assert (made.actor, made.payload.attribution) == ("alice", Attribution.AUDIT)  # not "kubectl-create"
    assert (gone.actor, gone.payload.attribution) == ("alice", Attribution.AUDIT)


def test_without_the_audit_log_a_delete_names_nobody_not_the_last_writer(cluster: Cluster, namespace: str,
                                                                         db_path: Path) -> None:
    grant(cluster, namespace, "alice", "bob")
    key = f"ConfigMap/{namespace}/y"
    with running(db_path, source_config(cluster, audit=False)):
        kubectl(cluster, "bob", "-n", namespace, "create", "configmap", "y", "--from-literal=k=v")
        kubectl(cluster, "bob", "-n", namespace, "label", "configmap", "y", "team=bob", "--field-manager=bob-tool")
        wait_until(lambda: len(events(db_path, key)) == 2, what="bob's changes")
        kubectl(cluster, "alice", "-n", namespace, "delete", "configmap", "y")
        wait_until(lambda: len(events(db_path, key)) == 3, what="alice's delete")
    made, labelled, gone = events(db_path, key)
    assert (made.actor, labelled.actor) == ("kubectl-create", "bob-tool")  # the managers that wrote them
    assert isinstance(gone, ClusterDeleted)
    assert (gone.actor, gone.payload.attribution) == (None, Attribution.UNKNOWN)  # not bob-tool


def _kill_mid_list(cluster: Cluster, db: Path, namespace: str, total: int) -> int:
    """Start ``gitops watch``, SIGKILL it while it records its list of ConfigMaps (after at
    least one batch, before the last), and return how many were recorded."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    env.pop("GITOPS_AUDIT_LOG", None)
    proc = subprocess.Popen([sys.executable, "-m", "gitops", "--db", str(db), "watch", "--context", "admin",
                             "--kind", "ConfigMap"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    count = ("SELECT count(*) FROM events WHERE type LIKE 'cluster.%' AND resource LIKE ?",
             (f"ConfigMap/{namespace}/%",))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"gitops watch ended early: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30, isolation_level=None)
            except sqlite3.OperationalError:
                time.sleep(0.01)  # not created yet
                continue
            try:
                # reading never blocks the writer (WAL); only once it is mid-list is the write
                # lock taken, so that nothing more lands while the process is killed
                if 0 < conn.execute(*count).fetchone()[0] < total:
                    lock = sqlite3.connect(db, timeout=30, isolation_level=None)
                    lock.execute("BEGIN IMMEDIATE")
                    n = int(lock.execute(*count).fetchone()[0])
                    if n < total:
                        proc.send_signal(signal.SIGKILL)
                        proc.wait(30)
                    lock.execute("ROLLBACK")
                    lock.close()
                    if n < total:
                        return n
            except sqlite3.OperationalError:
                pass  # the schema is not there yet
            finally:
                conn.close()
            time.sleep(0.002)
        pytest.fail("never saw the list half recorded")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        if proc.stderr is not None:
            proc.stderr.close()
    raise AssertionError("unreachable")


def _create_shuffled(cluster: Cluster, namespace: str, total: int) -> None:
    """``total`` ConfigMaps in one ``kubectl create -f``, in an order other than by name, so
    that a list (by name) and resourceVersions (by creation) disagree."""
    names = [f"cm-{(i * 7919) % total:05d}" for i in range(total)]
    items = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n, "namespace": namespace},
              "data": {"k": n}} for n in names]
    kubectl(cluster, "admin", "create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                     "items": items}))


@pytest.mark.parametrize("after_410", [False, True], ids=["first-list", "relist-after-410"])
def test_a_crash_while_a_list_is_recorded_loses_no_object(cluster: Cluster, namespace: str, db_path: Path,
                                                          after_410: bool) -> None:
    total = 2500
    config = ClusterSourceConfig(kubeconfig=str(cluster.kubeconfig), context="admin", kinds=["ConfigMap"],
                                 backoff_initial=0.2, backoff_max=2.0)
    if after_410:
        with running(db_path, config):
            pass  # a checkpoint that the compaction below makes too old: the next start meets 410
        cluster.compact_etcd()
        cluster.stop_apiserver()
        cluster.start_apiserver()
    _create_shuffled(cluster, namespace, total)  # after the compaction: resumable positions, all of them
    recorded = _kill_mid_list(cluster, db_path, namespace, total)
    assert 0 < recorded < total
    with running(db_path, config):  # a restart: the unfinished list is read again
        wait_until(lambda: len(history(db_path, namespace)) >= total, timeout=120, what="every object")
    names = {h[1] for h in history(db_path, namespace)}
    assert len(names) == total and len(history(db_path, namespace)) == total  # each once, none lost
    with EventLog(db_path) as log:
        assert log.verify().ok


def test_a_change_made_with_kubectl_as_is_credited_to_the_impersonated_user_via_the_admin(
        cluster: Cluster, namespace: str, db_path: Path) -> None:
    if cluster.audit_log is None:
        pytest.skip("impersonation is told by the API server's audit log")
    grant(cluster, namespace, "alice")
    key = f"ConfigMap/{namespace}/as-alice"
    with running(db_path, source_config(cluster)):
        kubectl(cluster, "admin", "--as=alice", "-n", namespace, "create", "configmap", "as-alice",
                "--from-literal=k=v")
        kubectl(cluster, "admin", "--as=alice", "-n", namespace, "delete", "configmap", "as-alice")
        wait_until(lambda: len(events(db_path, key)) == 2, what="the change and the delete")
    # the API server's own record says who authenticated and whom it acted as
    text = cluster.audit_log.read_text()
    whole = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]  # the last may be torn
    records = [json.loads(line) for line in whole
               if '"name":"as-alice"' in line and '"stage":"ResponseComplete"' in line]
    assert {(r["user"]["username"], r.get("impersonatedUser", {}).get("username")) for r in records
            if r["verb"] in ("create", "delete")} == {("admin", "alice")}
    made, gone = events(db_path, key)
    for e in (made, gone):
        assert (e.actor, e.payload.attribution, e.payload.via) == ("alice", Attribution.AUDIT, "admin")
    # when: the time the API server completed each request, as its audit record says; when the
    # watch saw it is kept beside
    from datetime import datetime

    stage = {r["verb"]: datetime.fromisoformat(r["stageTimestamp"].replace("Z", "+00:00")) for r in records
             if r["verb"] in ("create", "delete")}
    assert (made.effective_at, gone.effective_at) == (stage["create"], stage["delete"])
    assert made.payload.observed_at is not None and gone.payload.observed_at is not None
    res = subprocess.run([sys.executable, "-m", "gitops", "--db", str(db_path), "audit", "--resource", key,
                          "-o", "jsonl"], capture_output=True, text=True, timeout=120)
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(r["actor"], r["via"]) for r in rows if r["source"] == "cluster"] == [("alice", "admin")] * 2
    assert all((r["actor"], r["via"]) == ("alice", "admin") for r in rows if r["source"] == "audit")


def test_a_version_seen_late_that_holds_two_users_writes_names_neither(cluster: Cluster, namespace: str,
                                                                       tmp_path: Path) -> None:
    """A list (or a resumed watch) sees only an object's last version. When alice's edit was
    followed by the controller manager's write before the list, that version holds both: the
    audit record of its own resourceVersion names the controller, but the change since the
    version the log held is alice's too. Nobody is named (both are candidates), and it is not
    the control plane's own write (so a drift of it opens)."""
    if cluster.audit_log is None or not cluster.local:
        pytest.skip("needs the local control plane's users and its audit log")
    grant(cluster, namespace, "alice")
    db = tmp_path / "g.db"
    ingest = [sys.executable, "-m", "gitops", "--db", str(db), "ingest", "cluster", "--kubeconfig",
              str(cluster.kubeconfig), "--context", "admin", "--audit-log", str(cluster.audit_log), "--kind",
              "ConfigMap"]
    key = f"ConfigMap/{namespace}/x"

    def one_pass() -> Any:
        res = subprocess.run(ingest, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        return events(db, key)[-1]

    kubectl(cluster, "admin", "-n", namespace, "create", "configmap", "x", "--from-literal=k=1")
    first = one_pass()
    kubectl(cluster, "alice", "-n", namespace, "patch", "configmap", "x", "-p", '{"data":{"k":"2"}}')
    kubectl(cluster, "admin", "--as=system:kube-controller-manager", "--as-group=system:masters", "-n", namespace,
            "annotate", "configmap", "x", "controller/touched=yes")
    squashed = one_pass()
    assert squashed.payload.resource_version != first.payload.resource_version
    assert (squashed.actor, squashed.payload.attribution) == (None, Attribution.UNKNOWN)
    assert squashed.payload.candidates == ["alice", "system:kube-controller-manager"]
    assert not squashed.payload.control_plane
    # the API server's own record: both wrote it between the two versions the log holds
    writers = set()
    for line in cluster.audit_log.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line being written
        ref = r.get("objectRef") or {}
        if (ref.get("namespace"), ref.get("name"), ref.get("resource")) == (namespace, "x", "configmaps") and \
                r.get("verb") == "patch" and r.get("stage") == "ResponseComplete":
            writers.add((r.get("impersonatedUser") or r["user"])["username"])
    assert writers == {"alice", "system:kube-controller-manager"}
    # one writer since the last version: named, as before
    kubectl(cluster, "alice", "-n", namespace, "patch", "configmap", "x", "-p", '{"data":{"k":"3"}}')
    single = one_pass()
    assert (single.actor, single.payload.attribution) == ("alice", Attribution.AUDIT)


def test_a_record_no_change_took_is_written_as_an_audit_event_when_the_source_stops(
    cluster: Cluster, admin_api: Any, namespace: str, db_path: Path,
) -> None:
    """alice's patch that changes nothing makes no watch event: her request is still
    evidence, and must not be lost with the records held for changes to keep."""
    if cluster.audit_log is None:
        pytest.skip("needs the API server's audit log")
    grant(cluster, namespace, "alice")
    created = pykube.ConfigMap(admin_api, configmap("shared", namespace, k="same"))
    created.create()
    before = created.obj["metadata"]["resourceVersion"]
    key = f"ConfigMap/{namespace}/shared"
    with running(db_path, source_config(cluster)):
        noop = kubectl(cluster, "alice", "-n", namespace, "patch", "configmap", "shared", "--type=merge",
                       "-p", '{"data": {"k": "same"}}', "-o", "jsonpath={.metadata.resourceVersion}").stdout
        assert noop == before  # nothing changed: no new version, no watch event
        rv = kubectl(cluster, "alice", "-n", namespace, "patch", "configmap", "shared", "--type=merge",
                     "-p", '{"data": {"k": "new"}}', "-o", "jsonpath={.metadata.resourceVersion}").stdout
        # her second request's record is read after the first's (the file's order)
        wait_until(lambda: (e := last(db_path, key)) is not None and e.revision == rv, what="alice's change")
    hers = [r for r in audit_records(cluster, namespace) if r.get("verb") == "patch"
            and r["user"]["username"] == "alice" and r["objectRef"].get("namespace") == namespace]
    by_rv = {r["responseObject"]["metadata"]["resourceVersion"]: r["auditID"] for r in hers}
    assert set(by_rv) == {before, rv}
    changed = last(db_path, key)
    assert changed.payload.audit is not None and changed.payload.audit.audit_id == by_rv[rv]
    with EventLog(db_path) as log:
        alone = [r.event.payload.audit_id  # type: ignore[union-attr]
                 for r in log.read(types=["audit"], resource=key)]
        first = next(iter(log.read(resource=key, types=["cluster.observed"])))
    assert alone == [by_rv[before]]  # her patch that changed nothing: on its own
    assert (first.event.revision, first.event.actor) == (before, "admin")  # created by admin, not by her no-op


def test_a_refused_request_is_no_evidence_of_who_made_the_change_beside_it(
        cluster: Cluster, namespace: str, db_path: Path) -> None:
    """bob, without rights, tries to change the Secret a moment before alice changes it:
    his request was refused (403) and changed nothing, so it cannot make alice's change
    ambiguous (Secrets are audited without bodies: joined by time), and it is kept as an
    audit event, the evidence that he tried."""
    grant(cluster, namespace, "alice")
    kubectl(cluster, "admin", "-n", namespace, "create", "role", "secret-reader", "--verb=get", "--resource=secrets")
    kubectl(cluster, "admin", "-n", namespace, "create", "rolebinding", "bob-reads", "--role=secret-reader",
            "--user=bob")
    key = f"Secret/{namespace}/creds"
    with running(db_path, source_config(cluster)):
        kubectl(cluster, "alice", "-n", namespace, "create", "secret", "generic", "creds", "--from-literal=p=q")
        wait_until(lambda: events(db_path, key), what="the Secret")
        wait_until(lambda: kubectl(cluster, "bob", "-n", namespace, "get", "secret", "creds", check=False).returncode
                   == 0, what="bob's right to read it (kubectl patch reads first)")
        refused = kubectl(cluster, "bob", "-n", namespace, "patch", "secret", "creds", "--type=merge",
                          "-p", '{"stringData": {"p": "bob"}}', check=False)
        assert refused.returncode != 0 and "cannot patch" in refused.stderr
        kubectl(cluster, "alice", "-n", namespace, "patch", "secret", "creds", "--type=merge",
                "-p", '{"stringData": {"p": "alice"}}')
        wait_until(lambda: len(events(db_path, key)) == 2, what="alice's change")
    records = [r for r in audit_records(cluster, namespace)
               if r.get("objectRef", {}).get("namespace") == namespace and r["objectRef"].get("name") == "creds"]
    (bobs,) = [r for r in records if r["user"]["username"] == "bob"]
    assert bobs["responseStatus"]["code"] == 403
    changed = events(db_path, key)[-1]
    assert (changed.actor, changed.payload.attribution, changed.payload.candidates) == ("alice", Attribution.AUDIT, [])
    with EventLog(db_path) as log:
        tried = [r.event.payload for r in log.read(types=["audit"], resource=key)]
    assert [(p.user, p.response_code, p.audit_id)  # type: ignore[union-attr]
            for p in tried] == [("bob", 403, bobs["auditID"])]


def test_a_dry_run_is_no_evidence_of_who_made_the_change(cluster: Cluster, namespace: str, db_path: Path) -> None:
    """bob's server-side dry runs (a delete, an edit) change nothing: alice's real delete of
    the same object, joined by its uid, is hers alone, and so is her edit."""
    grant(cluster, namespace, "alice", "bob")
    key = f"ConfigMap/{namespace}/x"
    with running(db_path, source_config(cluster)):
        kubectl(cluster, "alice", "-n", namespace, "create", "configmap", "x", "--from-literal=k=1")
        wait_until(lambda: events(db_path, key), what="the ConfigMap")
        kubectl(cluster, "bob", "-n", namespace, "patch", "configmap", "x", "--type=merge", "--dry-run=server",
                "-p", '{"data": {"k": "bob"}}')
        kubectl(cluster, "bob", "-n", namespace, "delete", "configmap", "x", "--dry-run=server")
        kubectl(cluster, "alice", "-n", namespace, "delete", "configmap", "x")
        wait_until(lambda: any(isinstance(e, ClusterDeleted) for e in events(db_path, key)), what="the delete")
    bobs = [r for r in audit_records(cluster, namespace)
            if r["user"]["username"] == "bob" and r["objectRef"].get("resource") == "configmaps"]
    assert {r["verb"] for r in bobs} == {"patch", "delete"}  # as dry runs: in the query, or in DeleteOptions
    assert all("dryRun=All" in r["requestURI"] or r["requestObject"].get("dryRun") == ["All"] for r in bobs)
    made, gone = events(db_path, key)
    assert (made.actor, gone.actor) == ("alice", "alice")
    assert (gone.payload.attribution, gone.payload.candidates) == (Attribution.AUDIT, [])
    with EventLog(db_path) as log:
        tried = sorted((r.event.payload.verb, r.event.payload.dry_run)  # type: ignore[union-attr]
                       for r in log.read(types=["audit"], resource=key, actor="bob"))
    assert tried == [("delete", True), ("patch", True)]  # kept, as what they were

