"""The storage port's contract: the same tests against both adapters, a SQLite file and a
PostgreSQL database on a real server (``tests/postgres_fixtures.py``). What a test expects
is worked out from the events it appended (a fold written here), never read back from the
adapter under test alone; tampering is done with the engine's own client, as an attacker
with access to the database would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from gitops.events import (
    AnyEvent,
    ClusterDeleted,
    ClusterDeletedPayload,
    ClusterObserved,
    ClusterObservedPayload,
    DesiredRemoved,
    DesiredRemovedPayload,
    EventSource,
)
from gitops.model.errors import StoreError, TamperedLogError
from gitops.store import Checkpoint, EventLog
from gitops.store.current import Side
from tests.helpers import T0, applied, deployment
from tests.postgres_fixtures import Store


@pytest.fixture
def log(store: Store) -> Iterator[EventLog]:
    with store.open() as event_log:
        yield event_log


def observed(n: int, name: str, *, by: str | None = None, attribution: str = "unknown",
             cluster: str = "cluster:a") -> ClusterObserved:
    return ClusterObserved(
        id=f"obs-{n}", source=EventSource.CLUSTER, resource=f"Deployment.apps/default/{name}", actor=by,
        effective_at=T0 + timedelta(seconds=n), revision=str(n),
        payload=ClusterObservedPayload(manifest=deployment(name), resource_version=str(n), change="modified",
                                       origin=cluster, attribution=attribution))


def deleted(n: int, name: str, cluster: str = "cluster:a") -> ClusterDeleted:
    return ClusterDeleted(id=f"del-{n}", source=EventSource.CLUSTER, resource=f"Deployment.apps/default/{name}",
                          effective_at=T0 + timedelta(seconds=n),
                          payload=ClusterDeletedPayload(resource_version=str(n), origin=cluster))


def removed(n: int, name: str) -> DesiredRemoved:
    return DesiredRemoved(id=f"rm-{n}", source=EventSource.GIT, resource=f"Deployment.apps/default/{name}",
                          effective_at=T0 + timedelta(seconds=n), revision="c2",
                          payload=DesiredRemovedPayload(commit="c2"))


def fold(events: list[AnyEvent], side: str, until: int) -> dict[str, str]:
    """resource -> id of the event that sets it present on ``side`` after the first
    ``until`` events: the state at a point, worked out here."""
    sets = {"desired.applied": ("desired", True), "desired.removed": ("desired", False),
            "cluster.observed": ("actual", True), "cluster.deleted": ("actual", False)}
    state: dict[tuple[str, str], str | None] = {}
    for e in events[:until]:
        s, present = sets[e.type]
        if s == side and e.resource:
            state[(getattr(e.payload, "origin", ""), e.resource)] = e.id if present else None
    return {r: i for (_, r), i in state.items() if i is not None}


def history() -> list[AnyEvent]:
    events: list[AnyEvent] = [applied(i) for i in range(6)]
    return [*events, removed(10, "app-2"), observed(11, "app-0", by="kubectl-edit"),
            observed(12, "app-1", by="gitops", attribution="reconciler"), deleted(13, "app-0"),
            observed(14, "app-3"), applied(15)]


def test_append_is_gapless_idempotent_and_returns_only_what_was_new(log: EventLog) -> None:
    first = log.append([applied(i) for i in range(3)])
    again = log.append([applied(i) for i in range(5)])
    assert [a.seq for a in first + again] == [1, 2, 3, 4, 5]
    assert [a.event.id for a in again] == [applied(3).id, applied(4).id]
    assert log.append([applied(i) for i in range(5)]) == []
    assert log.count() == log.last_seq() == 5
    stored = list(log.read())
    assert [r.event for r in stored] == [applied(i) for i in range(5)]
    assert [r.recorded_at for r in stored] == sorted(r.recorded_at for r in stored)


def test_which_ids_the_log_holds(log: EventLog) -> None:
    """What a pass waits on: whether another writer (the watch) recorded an event yet."""
    log.append([applied(i) for i in range(3)])
    many = [applied(i).id for i in range(1200)]  # more than one statement's worth of parameters
    assert log.known_ids(many) == {applied(i).id for i in range(3)}
    assert log.known_ids([]) == set()


def test_the_event_each_object_is_at(log: EventLog) -> None:
    """What the cluster writer compares a version with before it counts on the log's dedupe."""
    log.append([observed(1, "a"), observed(2, "b"), deleted(3, "a"), observed(4, "a", cluster="cluster:b")])
    keys = ["Deployment.apps/default/a", "Deployment.apps/default/b", "Deployment.apps/default/c"]
    assert log.current_events("actual", origin="cluster:a", resources=keys) == {
        "Deployment.apps/default/a": ("del-3", "cluster.deleted", None),  # a tombstone too; c: none
        "Deployment.apps/default/b": ("obs-2", "cluster.observed", "2")}
    assert log.current_events("actual", origin="cluster:b", resources=keys) == {
        "Deployment.apps/default/a": ("obs-4", "cluster.observed", "4")}
    assert log.current_events("actual", origin="cluster:a", resources=[]) == {}


def test_an_append_on_condition_that_a_checkpoint_did_not_move(log: EventLog) -> None:
    """A source that read the log from a checkpoint writes only if nobody moved it meanwhile."""
    from gitops.model.errors import CheckpointMovedError

    first = Checkpoint("git:repo#main", {"commit": "a"})
    log.append([applied(0)], checkpoint=first, expect=Checkpoint("git:repo#main", None))  # not set: as expected
    with pytest.raises(CheckpointMovedError):
        log.append([applied(1)], checkpoint=Checkpoint("git:repo#main", {"commit": "b"}),
                   expect=Checkpoint("git:repo#main", None))
    with pytest.raises(CheckpointMovedError):
        log.append([applied(1)], checkpoint=Checkpoint("git:repo#main", {"commit": "b"}),
                   expect=Checkpoint("git:repo#main", {"commit": "z"}))
    assert log.count() == 1 and log.checkpoint("git:repo#main") == {"commit": "a"}  # nothing written
    log.append([applied(1)], checkpoint=Checkpoint("git:repo#main", {"commit": "b"}), expect=first)
    assert log.count() == 2 and log.checkpoint("git:repo#main") == {"commit": "b"}


def test_a_batch_and_its_checkpoint_are_written_together_or_not_at_all(log: EventLog) -> None:
    log.append([applied(0)], checkpoint=Checkpoint("git:repo#main", {"commit": "a"}))

    def fail(cur: Any, appended: Any) -> None:
        raise RuntimeError("the writer died mid-transaction")

    log.add_hook(fail)
    with pytest.raises(RuntimeError):
        log.append([applied(1), applied(2)], checkpoint=Checkpoint("git:repo#main", {"commit": "b"}))
    assert log.count() == 1
    assert log.checkpoint("git:repo#main") == {"commit": "a"}
    assert log.checkpoints("git:") == {"git:repo#main": {"commit": "a"}}


def test_reads_filter_the_same_way(log: EventLog) -> None:
    events = history()
    log.append(events)
    by_type = [r.event.id for r in log.read(types=["cluster.observed"])]
    assert by_type == [e.id for e in events if e.type == "cluster.observed"]
    assert [r.event.id for r in log.read(resource="Deployment.apps/default/app-0")] == \
        [e.id for e in events if e.resource == "Deployment.apps/default/app-0"]
    assert [r.event.id for r in log.read(resource_glob="*/app-[01]")] == \
        [e.id for e in events if e.resource and e.resource.rsplit("/", 1)[1] in ("app-0", "app-1")]
    assert log.count_where(kind="Deployment") == len(events)
    assert log.count_where(kind="ConfigMap") == 0
    assert log.count_where(namespace="default") == len(events)
    assert [r.event.id for r in log.read(actor_glob="kubectl*")] == ["obs-11"]
    assert [r.event.id for r in log.read(start=T0 + timedelta(seconds=11), end=T0 + timedelta(seconds=13))] == \
        ["obs-11", "obs-12"]
    assert [r.seq for r in log.read(since_seq=9)] == [10, 11, 12]
    assert [r.seq for r in log.read(descending=True, limit=2)] == [12, 11]
    assert [r.event.id for r in log.read(not_attribution="reconciler", types=["cluster.observed"])] == \
        ["obs-11", "obs-14"]
    assert log.count_where(unattributed=True) == sum(1 for e in events if e.actor is None)


def test_out_of_band_changes_are_the_same_on_both(log: EventLog) -> None:
    log.append(history())
    rows = {r.seq: r for r in log.read_audit()}
    oob = sorted(s for s, r in rows.items() if r.out_of_band)
    # kubectl's edit of app-0, its delete (not a prune), and app-3's change: Git desires all three
    assert oob == [8, 10, 11]
    assert [r.seq for r in log.read_audit(out_of_band=True)] == oob
    assert [r.seq for r in log.read_audit(out_of_band=True, descending=True, limit=2)] == oob[::-1][:2]
    assert rows[9].payload_facts().attribution == "reconciler"


@pytest.mark.parametrize("side", ["desired", "actual"])
def test_state_now_and_at_every_point_is_the_fold_of_the_log(store: Store, side: Side) -> None:
    events = history()
    with store.open(snapshot_every=4) as log:  # snapshots on the way: state at T merges one
        for e in events:
            log.append([e])
        want_now = fold(events, side, len(events))
        assert {r.event.resource: r.event.id for r in log.current(side)} == want_now
        for n in range(len(events) + 1):
            got = {r.event.resource: r.event.id for r in log.state_at(side, until_seq=n)}
            assert got == fold(events, side, n), n
        at = T0 + timedelta(seconds=11, milliseconds=500)
        got = {r.event.resource: r.event.id for r in log.state_at(side, at=at)}
        assert got == fold(events, side, sum(1 for e in events if e.effective_at <= at))


def test_verify_and_the_merkle_tree_agree(log: EventLog) -> None:
    log.append(history())
    result = log.verify()
    assert result.ok and result.checked == 12
    size, root, head = log.tree_head()
    assert (size, root) == (12, result.root)
    assert head == (12, result.head_hash)
    assert log.tree().root(5) == log.verify(at_sizes={5}).roots[5]


def test_a_modified_row_is_found(store: Store) -> None:
    with store.open() as log:
        log.append(history())
    store.raw("UPDATE events SET actor = 'someone-else' WHERE seq = 8")
    with store.open() as log:
        result = log.verify()
    assert not result.ok and (result.first_bad_seq, result.reason) == (8, "modified")


def test_a_cut_tail_refuses_every_later_write(store: Store) -> None:
    with store.open() as log:
        log.append(history())
    store.raw("DELETE FROM events WHERE seq > 9")
    with store.open() as log:
        result = log.verify()
        assert not result.ok and result.reason == "truncated"
        with pytest.raises(TamperedLogError, match="ends at seq 9"):
            log.append([applied(99)])
        assert log.last_seq() == 9


def test_a_reader_opens_only_an_existing_log(store: Store) -> None:
    with pytest.raises(StoreError):
        store.open(create=False)
    with store.open() as log:
        log.append([applied(0)])
    with store.open(create=False) as log:
        assert log.count() == 1


def test_the_first_claim_of_a_checkpoint_wins(log: EventLog) -> None:
    assert log.claim("integrity:digest-key", {"id": "aaaa"}) == {"id": "aaaa"}
    assert log.claim("integrity:digest-key", {"id": "bbbb"}) == {"id": "aaaa"}
    assert log.checkpoint("integrity:digest-key") == {"id": "aaaa"}


def test_projections_are_checked_and_rebuilt_from_the_log(store: Store) -> None:
    with store.open() as log:
        log.append(history())
        assert log.verify_projections() == []
        before = ({(r.event.resource, r.seq) for r in log.current("actual")},
                  [(r.seq, r.changes) for r in log.read_audit()])
    store.raw("DELETE FROM current_state WHERE resource = 'Deployment.apps/default/app-3'")
    store.raw("INSERT INTO changes (seq, fields) VALUES (8, '[]')")  # obs-11 created app-0 there: no change
    with store.open() as log:
        found = log.verify_projections()
        assert any("app-3" in f and "missing from the table" in f for f in found), found
        assert any(f.startswith("changes of seq 8: in the table, but") for f in found), found
        every = [r.seq for r in log.read()]
        assert log.check_changes(every) == ["changes of seq 8: the table says [], the log says nothing"]
        log.rebuild_projections()
        assert log.verify_projections() == [] and log.check_changes(every) == []
        assert ({(r.event.resource, r.seq) for r in log.current("actual")},
                [(r.seq, r.changes) for r in log.read_audit()]) == before
        assert log.verify().ok


def test_what_each_commit_did_to_each_object(log: EventLog) -> None:
    """``commit_objects`` (the report's objects of each commit): created where the object
    had no earlier version from its source, updated where it had one that differs, removed."""
    log.append([applied(1, commit="c1"), applied(2, commit="c1"), applied(3, commit="c1", origin="git:r#main:b",
                                                                              at=T0 + timedelta(seconds=2))])
    log.append([applied(1, manifest=deployment("app-1", replicas=3), commit="c2", at=T0 + timedelta(seconds=3)),
                removed(4, "app-2")])
    assert list(log.commit_objects(start=T0)) == [
        ("c1", "", "Deployment.apps/default/app-1", "created"), ("c1", "", "Deployment.apps/default/app-2", "created"),
        ("c1", "git:r#main:b", "Deployment.apps/default/app-3", "created"),
        ("c2", "", "Deployment.apps/default/app-1", "updated"), ("c2", "", "Deployment.apps/default/app-2", "removed")]
    assert list(log.commit_objects(start=T0 + timedelta(seconds=3))) == [
        ("c2", "", "Deployment.apps/default/app-1", "updated"), ("c2", "", "Deployment.apps/default/app-2", "removed")]
