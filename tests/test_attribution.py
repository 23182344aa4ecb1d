"""Who made a change, from the evidence alone: the audit join and managedFields, without a
cluster (the same code runs against the real control plane in test_cluster_source.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gitops.sources.cluster.attribution import candidates, managers, writer, written_at
from gitops.sources.cluster.audit import AuditIndex, AuditRecord, field_manager

T = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
KEY = "ConfigMap/shop/x"


def rec(n: int, verb: str, user: str, *, rv: str | None = None, uid: str | None = None, at: datetime = T,
        key: str = KEY) -> AuditRecord:
    return AuditRecord(f"id-{n}", key, verb, user, rv, at, uid)


def test_a_change_joins_the_request_whose_response_carried_its_resource_version() -> None:
    index = AuditIndex()
    index.add(rec(1, "update", "alice", rv="10"))
    index.add(rec(2, "update", "bob", rv="11"))
    assert index.find(KEY, "11", deleted=False, at=T).record == rec(2, "update", "bob", rv="11")
    assert index.find(KEY, "12", deleted=False, at=T).record is None  # no record of this change


def test_deletes_join_by_uid_so_alternating_users_are_each_named() -> None:
    # alice creates and deletes x, then bob creates and deletes x: a delete is matched by the
    # uid of the object it deleted, never by the name alone
    index = AuditIndex()
    index.add(rec(1, "delete", "alice", uid="uid-a", at=T))
    index.add(rec(2, "delete", "bob", uid="uid-b", at=T + timedelta(seconds=1)))
    assert index.find(KEY, None, deleted=True, uid="uid-b", at=T).record.user == "bob"  # type: ignore[union-attr]
    assert index.find(KEY, None, deleted=True, uid="uid-a", at=T).record.user == "alice"  # type: ignore[union-attr]
    other = index.find(KEY, None, deleted=True, uid="uid-c", at=T)
    assert (other.record, other.candidates) == (None, ())  # records of other objects are no evidence


def test_records_without_evidence_join_only_when_exactly_one_is_close_in_time() -> None:
    index = AuditIndex()  # Metadata level (a Secret): no response, no uid, no resourceVersion
    index.add(rec(1, "create", "alice", at=T, key="Secret/shop/s"))
    found = index.find("Secret/shop/s", None, deleted=False, at=T + timedelta(milliseconds=30))
    assert found.record is not None and found.record.user == "alice"
    again = index.find("Secret/shop/s", None, deleted=False, at=T + timedelta(milliseconds=40))
    assert again.record is None  # a record explains one change, not two
    index.add(rec(2, "update", "alice", at=T + timedelta(seconds=10), key="Secret/shop/s"))
    index.add(rec(3, "patch", "bob", at=T + timedelta(seconds=10, milliseconds=500), key="Secret/shop/s"))
    both = index.find("Secret/shop/s", None, deleted=False, at=T + timedelta(seconds=10, milliseconds=600))
    assert (both.record, both.candidates) == (None, ("alice", "bob"))  # ambiguous: nobody is named
    far = index.find("Secret/shop/s", None, deleted=False, at=T + timedelta(minutes=5))
    assert (far.record, far.candidates) == (None, ())
    assert index.find("Secret/shop/s", None, deleted=True, at=T).record is None  # a create is no delete


def test_without_a_time_only_resource_versions_and_uids_count() -> None:
    index = AuditIndex()
    index.add(rec(1, "create", "alice", at=T))
    assert index.find(KEY, None, deleted=False).record is None  # a change found by a list: time unknown


def test_the_index_is_bounded() -> None:
    index = AuditIndex(capacity=10)
    for i in range(100):
        index.add(rec(i, "delete", "alice", uid=f"u{i}", key=f"ConfigMap/shop/x{i}"))
        index.add(rec(1000 + i, "update", "alice", rv=str(i)))
    assert index.find("ConfigMap/shop/x0", None, deleted=True, uid="u0", at=T).record is None  # dropped
    assert index.find("ConfigMap/shop/x99", None, deleted=True, uid="u99", at=T).record is not None


def fields(*entries: tuple[str, str, str]) -> dict[str, object]:
    return {"metadata": {"managedFields": [{"manager": m, "operation": op, "time": t} for m, op, t in entries]}}


def test_the_writer_is_the_one_manager_whose_entry_moved() -> None:
    before = managers(fields(("kubectl-create", "Update", "t1"), ("bob-tool", "Update", "t2")))
    after = managers(fields(("kubectl-create", "Update", "t1"), ("bob-tool", "Update", "t3")))
    assert writer(before, after) == ("bob-tool", "Update")
    assert writer(None, managers(fields(("kubectl-create", "Update", "t1")))) == ("kubectl-create", "Update")


def test_a_write_within_the_same_second_shows_in_the_fields_it_took() -> None:
    """managedFields times have one-second resolution: the reconciler's heal in the same
    second as its apply keeps its entry's time, but the entry takes back the field alice's
    entry took; alice's entry, having only lost it, shows no write of its own."""
    def entry(m: str, op: str, t: str, *keys: str) -> dict[str, object]:
        return {"manager": m, "operation": op, "time": t, "fieldsV1": {"f:data": {f"f:{k}": {} for k in keys}}}

    applied = managers({"metadata": {"managedFields": [entry("gitops", "Apply", "t1", "a", "b")]}})
    edited = managers({"metadata": {"managedFields": [entry("gitops", "Apply", "t1", "b"),
                                                      entry("kubectl-patch", "Update", "t1", "a")]}})
    healed = managers({"metadata": {"managedFields": [entry("gitops", "Apply", "t1", "a", "b")]}})
    assert writer(applied, edited) == ("kubectl-patch", "Update")
    assert writer(edited, healed) == ("gitops", "Apply")
    # the creator's entry keeps an emptied map when another manager takes its only field
    created = managers({"metadata": {"managedFields": [entry("creator", "Update", "t0", "k")]}})
    taken = managers({"metadata": {"managedFields": [
        {"manager": "creator", "operation": "Update", "time": "t0", "fieldsV1": {"f:data": {}}},
        entry("kubectl-patch", "Update", "t0", "k")]}})
    assert writer(created, taken) == ("kubectl-patch", "Update")


def test_no_moved_entry_or_several_name_nobody() -> None:
    before = managers(fields(("kubectl-create", "Update", "t1"), ("bob-tool", "Update", "t2")))
    # a delete (or a scale through the subresource on 1.20) leaves managedFields as they were:
    # the last writer did not make this change
    assert writer(before, before) is None
    assert candidates(before, before) == []
    several = managers(fields(("kubectl-create", "Update", "t5"), ("bob-tool", "Update", "t6")))
    assert writer(before, several) is None  # a relist coalesced two writers' changes
    assert candidates(before, several) == ["bob-tool", "kubectl-create"]
    assert writer(None, several) is None


def test_backoff_doubles_to_its_cap_with_jitter_and_starts_over_after_a_success() -> None:
    from gitops.sources.cluster.port import Backoff

    draws = iter([0.0, 1.0, 0.5, 0.0, 0.0, 0.0])
    b = Backoff(0.5, 3.0, random=lambda: next(draws))
    assert [b.delay() for _ in range(5)] == [0.25, 1.0, 1.5, 1.5, 1.5]  # 0.5, 1, 2, 3 (cap), 3: times 0.5..1
    b.reset()
    assert b.delay() == 0.25


def test_a_fingerprint_ignores_what_changes_without_a_change() -> None:
    from gitops.sources.cluster.attribution import fingerprint

    obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "resourceVersion": "1", "managedFields": [
        {"manager": "kubelet", "operation": "Update", "time": "t1"}]}, "status": {"heartbeat": "10:00"}}
    later = {**obj, "metadata": {**obj["metadata"], "resourceVersion": "2", "managedFields": [  # type: ignore[dict-item]
        {"manager": "kubelet", "operation": "Update", "time": "t2"}]}, "status": {"heartbeat": "10:01"}}
    assert fingerprint(obj, noisy=True) == fingerprint(later, noisy=True)  # a heartbeat: not recorded
    assert fingerprint(obj, noisy=False) != fingerprint(later, noisy=False)  # status counts for other kinds
    moved = {**obj, "metadata": {**obj["metadata"], "labels": {"a": "b"}}}  # type: ignore[dict-item]
    assert fingerprint(obj, noisy=True) != fingerprint(moved, noisy=True)


def made(n: int, user: str, rv: str, received: datetime, done: datetime) -> AuditRecord:
    return AuditRecord(f"id-{n}", KEY, "patch", user, rv, done, received=received)


def test_a_write_that_changed_nothing_is_not_taken_for_the_change_its_response_names() -> None:
    """A write that changes nothing answers with the resourceVersion there already: bob's
    no-op patch after alice's change carries her version, and must not take her change."""
    index = AuditIndex()
    alice = made(1, "alice", "10", T, T + timedelta(milliseconds=5))
    bob = made(2, "bob", "10", T + timedelta(seconds=3), T + timedelta(seconds=3, milliseconds=4))
    index.add(alice)
    index.add(bob)
    assert index.find(KEY, "10", deleted=False, at=T).record == alice
    assert index.writes_between(KEY, "9", "10") == [alice]  # bob's wrote nothing: no second writer of it


def test_writes_at_the_same_time_carrying_one_version_name_nobody() -> None:
    """bob's request was received before alice's completed: either may have made version
    10 (the other changing nothing), so neither is named."""
    index = AuditIndex()
    index.add(made(1, "alice", "10", T, T + timedelta(milliseconds=50)))
    index.add(made(2, "bob", "10", T + timedelta(milliseconds=20), T + timedelta(milliseconds=60)))
    found = index.find(KEY, "10", deleted=False, at=T)
    assert (found.record, found.candidates) == (None, ("alice", "bob"))
    old = AuditIndex()  # records kept before the time a request was received was: none can be told apart
    old.add(rec(1, "update", "alice", rv="10"))
    old.add(rec(2, "patch", "bob", rv="10", at=T + timedelta(seconds=3)))
    assert old.find(KEY, "10", deleted=False, at=T).candidates == ("alice", "bob")


def test_a_refused_request_joins_no_change() -> None:
    index = AuditIndex()  # Metadata level (a Secret): joined by time alone
    index.add(AuditRecord("id-1", "Secret/shop/s", "patch", "bob", None, T, code=403))
    index.add(AuditRecord("id-2", "Secret/shop/s", "patch", "alice", None, T + timedelta(milliseconds=300), code=200))
    found = index.find("Secret/shop/s", None, deleted=False, at=T + timedelta(milliseconds=310))
    assert found.record is not None and found.record.user == "alice"
    index.add(AuditRecord("id-3", "Secret/shop/s", "delete", "bob", None, T + timedelta(seconds=9), code=403))
    gone = index.find("Secret/shop/s", None, deleted=True, at=T + timedelta(seconds=9, milliseconds=5))
    assert (gone.record, gone.candidates) == (None, ())  # bob tried, and did not delete it


def test_the_field_manager_a_request_wrote_as_is_the_api_servers_name_for_it() -> None:
    assert field_manager("/api/v1/namespaces/a/configmaps/x?fieldManager=kubectl-patch&fieldValidation=Strict",
                         "kubectl/v1.32.4 (linux/amd64) kubernetes/4cb5f07") == "kubectl-patch"
    agent = "kube-controller-manager/v1.20.2 (linux/amd64) kubernetes/faecb19"  # no fieldManager: the agent's name
    assert field_manager("/apis/apps/v1/namespaces/a/deployments/web/status", agent) == "kube-controller-manager"
    assert field_manager("/api/v1/namespaces/a/configmaps/x", "x" * 200 + "/1.0") == "x" * 128
    assert field_manager("/api/v1/namespaces/a/configmaps/x", None) is None


def test_a_request_that_wrote_as_another_manager_than_the_change_shows_did_not_make_it() -> None:
    """alice's no-op patch carries the version a controller made (whose request was not
    audited): the object's moved entry is the controller's, so she is not named."""
    index = AuditIndex()
    uri = "/api/v1/namespaces/shop/configmaps/cm?fieldManager=kubectl-patch"
    index.add(AuditRecord("id-1", KEY, "patch", "alice", "7", T, user_agent="kubectl/v1.32.4", request_uri=uri))
    assert index.find(KEY, "7", deleted=False, manager="kube-controller-manager").record is None
    assert index.find(KEY, "7", deleted=False, manager="kubectl-patch").record is not None  # hers
    assert index.find(KEY, "7", deleted=False).record is not None  # the object cannot tell: as before
    index.add(AuditRecord("id-2", "Secret/shop/s", "patch", "alice", None, T, user_agent="kubectl/v1.32.4",
                          request_uri="/api/v1/namespaces/shop/secrets/s?fieldManager=kubectl-patch"))
    near = T + timedelta(milliseconds=100)  # a Secret's record, joined by time: the same test
    assert index.find("Secret/shop/s", None, deleted=False, at=near, manager="helm").record is None
    assert index.find("Secret/shop/s", None, deleted=False, at=near, manager="kubectl-patch").record is not None


def test_when_the_writer_wrote_is_its_entrys_time_when_one_entry_moved() -> None:
    before = managers(fields(("kubectl-create", "Update", "2026-12-07T10:00:00Z")))
    after = managers(fields(("kubectl-create", "Update", "2026-12-07T10:00:00Z"),
                            ("kubectl", "Apply", "2026-12-07T10:00:05Z")))
    assert written_at(before, after) == datetime(2026, 12, 7, 10, 0, 5, tzinfo=UTC)
    assert written_at(before, before) is None  # nothing moved
    assert written_at(None, managers(fields(("a", "Update", "t1")))) is None  # not a time


def test_a_request_received_a_second_or_more_after_the_entry_moved_did_not_make_it() -> None:
    """bob applies with kubectl's default manager name (``kubectl``) and his record was
    not read; alice applies the same manifest later under the same name: nothing changes,
    and her response carries bob's version. The entry's time is when bob wrote."""
    index = AuditIndex()
    uri = "/api/v1/namespaces/shop/configmaps/x?fieldManager=kubectl"
    written = T  # the entry's time, to the second
    index.add(AuditRecord("id-1", KEY, "patch", "alice", "7", T + timedelta(seconds=3), user_agent="kubectl/v1.32.4",
                          received=T + timedelta(seconds=3), request_uri=uri))
    assert index.find(KEY, "7", deleted=False, manager="kubectl", written=written).record is None
    index.add(AuditRecord("id-2", "ConfigMap/shop/y", "patch", "bob", "8", T + timedelta(milliseconds=900),
                          received=T + timedelta(milliseconds=800), request_uri=uri))
    made = index.find("ConfigMap/shop/y", "8", deleted=False, manager="kubectl", written=written).record
    assert made is not None and made.user == "bob"  # received within the entry's second: he may have
