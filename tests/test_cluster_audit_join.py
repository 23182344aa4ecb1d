"""The audit join on requests that are not one write of one named object, against the real
local control plane with the real kubectl as ``alice`` and ``bob``: a ``deletecollection``
(what the namespace controller sends when a namespace goes, and ``kubectl delete --raw`` on a
collection), a create with ``generateName`` (how controllers make Pods and Jobs), a delete
that finalizers hold, and writes that changed nothing when the record of the write that did
was never read. Each claim is checked against the API server's own audit log."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pykube
import pytest

from gitops.events import Attribution, AuditRecorded, ClusterDeleted, ClusterObserved
from gitops.store import Checkpoint, EventLog
from tests.cluster_fixtures import Cluster, audit_records, grant, kubectl, wait_until
from tests.gitrepo import configmap
from tests.test_cluster_attribution import events
from tests.test_cluster_source import running, source_config

pytestmark = pytest.mark.cluster


def audit_events(db: Path, audit_id: str) -> list[AuditRecorded]:
    with EventLog(db) as log:
        return [r.event for r in log.read(types=["audit"])
                if isinstance(r.event, AuditRecorded) and r.event.payload.audit_id == audit_id]


def test_each_object_a_deletecollection_deleted_is_credited_to_who_sent_it(
        cluster: Cluster, namespace: str, db_path: Path) -> None:
    """alice deletes every ConfigMap of the namespace with one request: each deletion is
    hers, joined by the uid her request's response listed, not unknown."""
    if cluster.audit_log is None:
        pytest.skip("needs the API server's audit log")
    grant(cluster, namespace, "alice", "bob")
    names = ["one", "two", "three"]
    with running(db_path, source_config(cluster)):
        for name in names:
            kubectl(cluster, "bob", "-n", namespace, "create", "configmap", name, "--from-literal=k=v")
        wait_until(lambda: all(events(db_path, f"ConfigMap/{namespace}/{n}") for n in names), what="bob's ConfigMaps")
        kubectl(cluster, "alice", "delete", "--raw", f"/api/v1/namespaces/{namespace}/configmaps")
        wait_until(lambda: all(isinstance(events(db_path, f"ConfigMap/{namespace}/{n}")[-1], ClusterDeleted)
                               for n in names), what="the deletions")
    (request,) = [r for r in audit_records(cluster, namespace) if r["verb"] == "deletecollection"
                  and r["objectRef"].get("resource") == "configmaps"]
    assert (request["user"]["username"], request["responseStatus"]["code"]) == ("alice", 200)
    listed = {i["metadata"]["name"]: i["metadata"]["uid"] for i in request["responseObject"]["items"]}
    assert set(listed) >= set(names)
    for name in names:
        gone = events(db_path, f"ConfigMap/{namespace}/{name}")[-1]
        assert isinstance(gone, ClusterDeleted)
        assert (gone.actor, gone.payload.attribution, gone.payload.uid) == ("alice", Attribution.AUDIT, listed[name])
        assert gone.payload.audit_id == request["auditID"]
    kept = audit_events(db_path, request["auditID"])  # the request, once per object it deleted
    assert sorted((e.resource, e.payload.uid) for e in kept) == sorted(
        (f"ConfigMap/{namespace}/{n}", u) for n, u in listed.items())
    assert {(e.actor, e.payload.verb) for e in kept} == {("alice", "deletecollection")}


def test_a_refused_deletecollection_is_kept_as_evidence_that_bob_tried(
        cluster: Cluster, namespace: str, db_path: Path) -> None:
    """bob, without rights, asks to delete every ConfigMap: refused, it names no object, and
    it is still recorded (before, a request without an object name was dropped)."""
    if cluster.audit_log is None:
        pytest.skip("needs the API server's audit log")
    with running(db_path, source_config(cluster)):
        refused = kubectl(cluster, "bob", "delete", "--raw", f"/api/v1/namespaces/{namespace}/configmaps", check=False)
        assert refused.returncode != 0 and "forbidden" in refused.stderr
        (request,) = wait_until(lambda: [r for r in audit_records(cluster, namespace)
                                         if r["verb"] == "deletecollection"], what="the API server's record")
        wait_until(lambda: audit_events(db_path, request["auditID"]), what="its audit event")
    assert (request["user"]["username"], request["responseStatus"]["code"]) == ("bob", 403)
    (kept,) = audit_events(db_path, request["auditID"])
    assert (kept.resource, kept.actor, kept.payload.response_code) == (None, "bob", 403)
    assert kept.payload.request_uri == f"/api/v1/namespaces/{namespace}/configmaps"


def test_a_create_with_generate_name_is_credited_to_its_user_not_to_kubectl(
        cluster: Cluster, namespace: str, db_path: Path) -> None:
    """The request has no name (the API server makes it up): its response has, and the
    change is joined to alice's record by it and its resourceVersion."""
    if cluster.audit_log is None:
        pytest.skip("needs the API server's audit log")
    grant(cluster, namespace, "alice")
    manifest = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\n  namespace: {namespace}\n" \
               "data:\n  k: v\n"
    with running(db_path, source_config(cluster)):
        name = kubectl(cluster, "alice", "create", "-f", "-", "-o", "jsonpath={.metadata.name}", stdin=manifest).stdout
        assert name.startswith("gen-")
        key = f"ConfigMap/{namespace}/{name}"
        wait_until(lambda: events(db_path, key), what="the ConfigMap")
    (request,) = [r for r in audit_records(cluster, namespace) if r["verb"] == "create"
                  and r["objectRef"].get("resource") == "configmaps" and r["user"]["username"] == "alice"]
    assert "name" not in request["objectRef"] and request["responseObject"]["metadata"]["name"] == name
    (made,) = events(db_path, key)
    assert isinstance(made, ClusterObserved)
    assert (made.actor, made.payload.attribution) == ("alice", Attribution.AUDIT)  # not the manager kubectl-create
    assert made.payload.audit is not None and made.payload.audit.audit_id == request["auditID"]


def test_a_delete_held_by_a_finalizer_is_credited_to_who_asked_for_it(
        cluster: Cluster, admin_api: Any, namespace: str, db_path: Path) -> None:
    """alice deletes an object a finalizer holds: the API server marks it (deletionTimestamp,
    a new resourceVersion, which her delete's response carries) and keeps it. That change is
    hers, not unknown; when bob then removes the finalizer, the object goes, and the
    deletion is still the one alice asked for."""
    if cluster.audit_log is None:
        pytest.skip("needs the API server's audit log")
    grant(cluster, namespace, "alice", "bob")
    body = configmap("held", namespace, k="v")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    pykube.ConfigMap(admin_api, body).create()
    key = f"ConfigMap/{namespace}/held"
    with running(db_path, source_config(cluster)):
        wait_until(lambda: events(db_path, key), what="the ConfigMap")
        kubectl(cluster, "alice", "-n", namespace, "delete", "configmap", "held", "--wait=false")
        wait_until(lambda: len(events(db_path, key)) == 2, what="the deletion asked for")
        kubectl(cluster, "bob", "-n", namespace, "patch", "configmap", "held", "--type=merge",
                "-p", '{"metadata": {"finalizers": null}}')
        wait_until(lambda: isinstance(events(db_path, key)[-1], ClusterDeleted), what="the deletion")
    (asked,) = [r for r in audit_records(cluster, namespace) if r["verb"] == "delete"
                and r["objectRef"].get("name") == "held"]
    assert asked["user"]["username"] == "alice"
    marked_rv = asked["responseObject"]["metadata"]["resourceVersion"]
    assert asked["responseObject"]["metadata"]["deletionTimestamp"]
    _, marked, *_, gone = events(db_path, key)
    assert isinstance(marked, ClusterObserved) and marked.revision == marked_rv
    assert marked.payload.manifest["metadata"]["deletionTimestamp"]
    assert (marked.actor, marked.payload.attribution) == ("alice", Attribution.AUDIT)
    assert isinstance(gone, ClusterDeleted)
    assert (gone.actor, gone.payload.attribution, gone.payload.audit_id) == ("alice", Attribution.AUDIT,
                                                                             asked["auditID"])


def test_a_no_op_write_is_not_taken_for_the_maker_whose_record_was_not_read(
        cluster: Cluster, namespace: str, db_path: Path) -> None:
    """admin makes a ConfigMap before the audit log is read from (his record is not in what
    the tailer reads: written before, rotated away, or left out by the audit policy); then
    alice patches it without changing anything, and her response carries the version
    admin made. The object says its writer was ``kubectl-create``, and alice's request
    wrote as ``kubectl-patch``: she is not named."""
    if cluster.audit_log is None:
        pytest.skip("needs the API server's audit log")
    grant(cluster, namespace, "alice")
    made = kubectl(cluster, "admin", "-n", namespace, "create", "configmap", "z", "--from-literal=k=v",
                   "-o", "jsonpath={.metadata.resourceVersion}").stdout
    st = os.stat(cluster.audit_log)
    with EventLog(db_path) as log:  # the tailer reads from here on: admin's record is behind
        log.append([], checkpoint=Checkpoint(f"audit:{cluster.audit_log}", {"inode": st.st_ino,
                                                                           "offset": st.st_size}))
    noop = kubectl(cluster, "alice", "-n", namespace, "patch", "configmap", "z", "--type=merge",
                   "-p", '{"data": {"k": "v"}}', "-o", "jsonpath={.metadata.resourceVersion}").stdout
    assert noop == made
    key = f"ConfigMap/{namespace}/z"
    with running(db_path, source_config(cluster)):
        wait_until(lambda: events(db_path, key), what="the ConfigMap")
    records = [r for r in audit_records(cluster, namespace) if r["objectRef"].get("name") == "z"]
    assert [(r["verb"], r["user"]["username"], r["responseObject"]["metadata"]["resourceVersion"])
            for r in records] == [("create", "admin", made), ("patch", "alice", made)]
    (seen,) = events(db_path, key)
    assert seen.revision == made
    assert (seen.actor, seen.payload.attribution) == ("kubectl-create", Attribution.MANAGED_FIELDS)  # not alice
    with EventLog(db_path) as log:
        kept = [r.event.actor for r in log.read(types=["audit"], resource=key)]
    assert kept == ["alice"]  # her request is still evidence: of what she sent, not of the change


def test_a_no_op_apply_under_the_same_manager_name_is_not_taken_for_the_earlier_apply(
        cluster: Cluster, namespace: str, db_path: Path) -> None:
    """admin and alice both apply server-side under kubectl's default manager name
    (``kubectl``); admin's record is not in what the tailer reads. alice's apply, a second
    later, changes nothing and answers with admin's version: the entry's time says when
    that version was written, and her request came after it, so she is not named."""
    if cluster.audit_log is None:
        pytest.skip("needs the API server's audit log")
    grant(cluster, namespace, "alice")
    manifest = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w", "namespace": namespace},
                           "data": {"k": "v"}})
    apply = ("apply", "--server-side", "-f", "-", "-o", "jsonpath={.metadata.resourceVersion}")
    made = kubectl(cluster, "admin", *apply, stdin=manifest).stdout
    st = os.stat(cluster.audit_log)
    with EventLog(db_path) as log:  # the tailer reads from here on: admin's record is behind
        log.append([], checkpoint=Checkpoint(f"audit:{cluster.audit_log}", {"inode": st.st_ino,
                                                                           "offset": st.st_size}))
    time.sleep(1.2)  # past the second the managedFields entry's time names
    assert kubectl(cluster, "alice", *apply, stdin=manifest).stdout == made  # nothing changed
    key = f"ConfigMap/{namespace}/w"
    with running(db_path, source_config(cluster)):
        wait_until(lambda: events(db_path, key), what="the ConfigMap")
    records = [r for r in audit_records(cluster, namespace) if r["objectRef"].get("name") == "w"]
    assert [(r["user"]["username"], r["responseObject"]["metadata"]["resourceVersion"], "fieldManager=kubectl" in
             r["requestURI"]) for r in records] == [("admin", made, True), ("alice", made, True)]
    live = json.loads(kubectl(cluster, "admin", "-n", namespace, "get", "configmap", "w", "-o", "json",
                                 "--show-managed-fields").stdout)
    assert [(e["manager"], e["operation"]) for e in live["metadata"]["managedFields"]] == [("kubectl", "Apply")]
    (seen,) = events(db_path, key)
    assert (seen.revision, seen.actor, seen.payload.attribution) == (made, "kubectl", Attribution.MANAGED_FIELDS)
