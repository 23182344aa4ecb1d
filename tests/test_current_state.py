"""The projection tables (current state, changes): kept in the append transaction, always
equal to a fold of the log, rebuilt when they are not. Hypothesis drives random histories into a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gitops.events import (
    ClusterDeleted,
    ClusterDeletedPayload,
    ClusterObserved,
    DesiredApplied,
    DesiredRemoved,
    DesiredRemovedPayload,
    EventSource,
)
from gitops.events.models import AnyEvent, ClusterObservedPayload, DesiredAppliedPayload
from gitops.model.changes import CREATED, DELETED, field_changes
from gitops.projections import fold_actual, fold_desired
from gitops.store import EventLog
from gitops.store.changes import decode
from gitops.store.current import Side
from tests.cli_helpers import gitops

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEYS = [f"ConfigMap/default/c{i}" for i in range(4)]
ORIGINS = ["git:/a#main", "git:/b#main"]


def event(n: int, kind: str, key: str, origin: str) -> AnyEvent:
    at = T0 + timedelta(seconds=n)
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": key.rsplit("/", 1)[1]},
                "data": {"n": str(n)}}
    if kind == "applied":
        return DesiredApplied(id=f"e{n}", source=EventSource.GIT, resource=key, effective_at=at,
                              payload=DesiredAppliedPayload(manifest=manifest, commit="c", path="p",
                                                            document_index=0, origin=origin))
    if kind == "removed":
        return DesiredRemoved(id=f"e{n}", source=EventSource.GIT, resource=key, effective_at=at,
                              payload=DesiredRemovedPayload(commit="c", origin=origin))
    if kind == "observed":
        return ClusterObserved(id=f"e{n}", source=EventSource.CLUSTER, resource=key, effective_at=at,
                               payload=ClusterObservedPayload(manifest=manifest, resource_version=str(n),
                                                              change="modified", origin="cluster:x"))
    return ClusterDeleted(id=f"e{n}", source=EventSource.CLUSTER, resource=key, effective_at=at,
                          payload=ClusterDeletedPayload(resource_version=str(n), origin="cluster:x"))


steps = st.lists(st.tuples(st.sampled_from(["applied", "removed", "observed", "deleted"]), st.sampled_from(KEYS),
                           st.sampled_from(ORIGINS), st.integers(1, 4)), max_size=40)


@settings(max_examples=60)
@given(steps)
def test_the_table_always_equals_a_fold_of_the_log(history: list[tuple[str, str, str, int]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d, EventLog(Path(d) / "g.db") as log:
        batch: list[AnyEvent] = []
        for n, (kind, key, origin, cut) in enumerate(history):
            batch.append(event(n, kind, key, origin))
            if len(batch) >= cut:  # batches of random sizes: several changes of one object in one
                log.append(batch)
                batch = []
        log.append(batch)
        for origin in ORIGINS:
            folded = fold_desired(log.read(), origin=origin)
            stored = {r.event.resource: r.seq for r in log.current("desired", origin=origin)}
            assert stored == {k: e.seq for k, e in folded.items()}
        assert {r.event.resource: r.seq for r in log.current("actual")} == \
            {k: e.seq for k, e in fold_actual(log.read()).items()}
        sides: list[tuple[Side, str]] = [("desired", ORIGINS[0]), ("desired", ORIGINS[1]), ("actual", "cluster:x")]
        for side, origin in sides:  # the same rows read without models (a source's every-pass comparison)
            assert list(log.current_payloads(side, origin=origin)) == [
                (r.event.resource, r.event.payload.model_dump(mode="json")) for r in log.current(side, origin=origin)]
        assert log.verify_projections() == []
        assert _stored_changes(log) == _changes_by_fold(log)
        assert log.check_changes([r.seq for r in log.read()]) == []  # row by row, as an audit checks its rows
        before = sorted((r.seq, r.event.resource) for r in log.current("desired"))
        log.rebuild_projections()  # a rebuild from the log gives what the appends kept
        assert sorted((r.seq, r.event.resource) for r in log.current("desired")) == before


def test_verify_projections_finds_a_changed_table_and_init_rebuilds_it(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        log.append([event(1, "applied", KEYS[0], ORIGINS[0]), event(2, "applied", KEYS[1], ORIGINS[0])])
    assert gitops("verify", "--projections", db=db).stdout.splitlines()[-1] == \
        "projections equal a fresh fold of the log"
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM current_state WHERE resource = ?", (KEYS[1],))
    res = gitops("verify", "--projections", db=db)
    assert res.returncode == 1
    assert f"desired {KEYS[1]} ({ORIGINS[0]}): seq 2 is missing from the table" in res.stderr
    assert "'gitops init --rebuild-projections' rebuilds them" in res.stderr
    # a report reads these tables: every report checks which objects Git manages, and fails as verify does;
    # asked to, it checks every table
    since = (T0 - timedelta(days=1)).isoformat()
    plain = gitops("report", "--since", since, "-o", "json", db=db)
    integrity = json.loads(plain.stdout)["integrity"]
    assert plain.returncode == 1 and integrity["ok"] is False and integrity["projections_checked"] is False
    assert integrity["projection_problems"] == [f"{KEYS[1]}: the log's desired events name it, but the current "
                                                "state does not list it as desired"]
    checked = gitops("report", "--since", since, "-o", "json", "--verify-projections", db=db)
    integrity = json.loads(checked.stdout)["integrity"]
    assert checked.returncode == 1 and integrity["ok"] is False and integrity["projections_checked"] is True
    assert f"desired {KEYS[1]} ({ORIGINS[0]}): seq 2 is missing from the table" in integrity["projection_problems"]
    assert "WARNING: the log failed verification" in checked.stderr and "projection tables" in checked.stderr
    assert "rebuilt" not in gitops("init", db=db).stdout  # plain init only creates or upgrades: quick on any log
    assert gitops("verify", "--projections", db=db).returncode == 1
    res = gitops("init", "--rebuild-projections", db=db)
    assert "rebuilt the projection tables from the log" in res.stdout
    assert gitops("verify", "--projections", db=db).returncode == 0


def _stored_changes(log: EventLog) -> dict[int, list[tuple[str, Any, Any]]]:
    rows = log.conn.execute("SELECT e.seq, e.type, c.fields FROM events e LEFT JOIN changes c ON c.seq = e.seq")
    return {seq: [tuple(c) for c in decode(t, fields)] for seq, t, fields in rows if decode(t, fields)}


def _changes_by_fold(log: EventLog) -> dict[int, list[tuple[str, Any, Any]]]:
    """The definition: each state event against the version its (side, origin, object) had
    just before it in a plain walk of the log, None when it had none or it was removed."""
    last: dict[tuple[str, str, str | None], Any] = {}
    out = {}
    for r in log.read():
        ev = r.event
        if not isinstance(ev, (DesiredApplied, DesiredRemoved, ClusterObserved, ClusterDeleted)):
            continue
        key = (ev.type[:8], ev.payload.origin or "", ev.resource)
        manifest = ev.payload.manifest if isinstance(ev, (DesiredApplied, ClusterObserved)) else None
        before = last.get(key)
        changed = [DELETED] if manifest is None else [CREATED] if before is None else field_changes(before, manifest)
        out[r.seq] = [tuple(c) for c in changed]
        last[key] = manifest
    return out


def test_a_log_from_before_the_tables_existed_gets_them_filled_when_opened_to_write(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        log.append([event(1, "applied", KEYS[0], ORIGINS[0]), event(2, "applied", KEYS[0], ORIGINS[0])])
        want = _stored_changes(log)
    assert want == {1: [("", None, "(the object)")], 2: [("data.n", "1", "2")]}
    with sqlite3.connect(db) as conn:  # as a log written before: no rows, no version
        conn.execute("DELETE FROM current_state")
        conn.execute("DELETE FROM changes")
        conn.execute("DELETE FROM projections")
    with EventLog(db) as log:
        assert [r.seq for r in log.current("desired")] == [2]
        assert _stored_changes(log) == want


def test_verify_projections_finds_a_changed_change_and_init_rebuilds_it(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        log.append([event(1, "applied", KEYS[0], ORIGINS[0]), event(2, "applied", KEYS[0], ORIGINS[0])])
    with sqlite3.connect(db) as conn:
        conn.execute("""UPDATE changes SET fields = '[["data.n","1","3"]]' WHERE seq = 2""")
        conn.execute("""INSERT INTO changes (seq, fields) VALUES (1, '[]')""")
    res = gitops("verify", "--projections", db=db)
    assert res.returncode == 1
    assert "changes of seq 1: in the table, but that event changed no object its source had set" in res.stderr
    assert """changes of seq 2: the table says [["data.n","1","3"]], the log says [["data.n","1","2"]]""" in res.stderr
    assert "rebuilt the projection tables from the log" in gitops("init", "--rebuild-projections", db=db).stdout
    assert gitops("verify", "--projections", db=db).returncode == 0


def test_an_audit_refuses_to_show_changed_fields_the_log_does_not_hold(tmp_path: Path) -> None:
    """The audit's rows read what each event changed from the change projection, outside the
    hash chain: each row it shows is checked against the log first, and a rewritten, added
    or deleted row stops it (exit 1) rather than show fields that never changed."""
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        log.append([event(1, "applied", KEYS[0], ORIGINS[0]), event(2, "observed", KEYS[0], ORIGINS[0]),
                    event(3, "applied", KEYS[0], ORIGINS[1]), event(4, "applied", KEYS[0], ORIGINS[0]),
                    event(5, "observed", KEYS[0], ORIGINS[0]), event(6, "removed", KEYS[0], ORIGINS[0]),
                    event(7, "applied", KEYS[0], ORIGINS[0])])
        assert log.check_changes(range(1, 8)) == []
        honest = gitops("audit", "-o", "json", db=db)
    assert honest.returncode == 0 and "note:" not in honest.stderr, honest.stderr
    fields = {r["seq"]: r["fields"] for r in json.loads(honest.stdout)}
    assert fields[4] == [{"path": "data.n", "old": "1", "new": "4"}]  # against seq 1: same side and origin
    assert fields[5] == [{"path": "data.n", "old": "2", "new": "5"}] and fields[7] == []  # created again
    for tamper, problem in [
        ("UPDATE changes SET fields = '[[\"data.n\",\"1\",\"9\"]]' WHERE seq = 4",
         'changes of seq 4: the table says [["data.n","1","9"]], the log says [["data.n","1","4"]]'),
        ("DELETE FROM changes WHERE seq = 5", 'changes of seq 5: the table says nothing, the log says [["data.n"'),
        ("INSERT INTO changes (seq, fields) VALUES (7, '[[\"data.n\",\"6\",\"7\"]]')",
         "changes of seq 7: the table says [[\"data.n\",\"6\",\"7\"]], the log says nothing"),
    ]:
        assert gitops("init", "--rebuild-projections", db=db).returncode == 0
        with sqlite3.connect(db) as conn:
            conn.execute(tamper)
        for output in ("table", "json"):
            res = gitops("audit", "-o", output, db=db)
            assert res.returncode == 1 and problem in res.stderr, (tamper, res.stderr)
            assert "'gitops init --rebuild-projections' rebuilds" in res.stderr and "Traceback" not in res.stderr
            assert res.stderr.count("\n") == 1 and '"n": "9"' not in res.stdout and " 1 -> 9" not in res.stdout
        assert gitops("audit", "--type", "desired.removed", db=db).returncode == 0  # rows that do not show it


def test_an_audit_longer_than_its_check_says_how_many_rows_were_not_checked(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        for first in range(0, 10_050, 2_010):
            log.append([event(n, "applied", KEYS[n % 4], ORIGINS[0]) for n in range(first, first + 2_010)])
    every = gitops("audit", "-o", "jsonl", db=db)
    assert every.returncode == 0 and len(every.stdout.splitlines()) == 10_050
    assert every.stderr == ("note: the changed fields of the 50 rows after the first 10,000 were not checked against "
                            "the log ('gitops verify --projections' checks them all)\n")
    table = gitops("audit", db=db)  # a table's 1,000 rows: all checked, and no note
    assert table.returncode == 0 and "note:" not in table.stderr


def test_the_state_now_is_read_from_the_table_and_equals_the_fold(tmp_path: Path) -> None:
    from gitops.projections import Moment, desired_at
    from gitops.projections.fold import fold_desired as fold

    with EventLog(tmp_path / "g.db") as log:
        log.append([event(1, "applied", KEYS[0], ORIGINS[0]), event(2, "applied", KEYS[1], ORIGINS[1]),
                    event(3, "removed", KEYS[0], ORIGINS[0])])
        now = Moment(T0 + timedelta(days=1))
        assert desired_at(log, now) == fold(log.read())  # the table's answer is the fold's
        before = Moment(T0 + timedelta(seconds=2))  # a past moment still folds
        assert set(desired_at(log, before)) == {KEYS[0], KEYS[1]}


moments = st.lists(st.tuples(st.sampled_from(["applied", "removed", "observed", "deleted"]), st.sampled_from(KEYS),
                             st.sampled_from(ORIGINS), st.integers(0, 30), st.integers(1, 3)), max_size=40)


@settings(max_examples=60)
@given(moments, st.integers(1, 7), st.lists(st.integers(-1, 32), min_size=1, max_size=5))
def test_the_state_at_any_moment_from_snapshots_equals_the_fold(
        history: list[tuple[str, str, str, int, int]], every: int, probes: list[int]) -> None:
    """Valid times out of order (a back-fill records the past late), snapshots every few
    events: the state at any valid time, recorded time or seq is what a fold of the events up
    to it gives."""
    import tempfile

    with tempfile.TemporaryDirectory() as d, EventLog(Path(d) / "g.db", snapshot_every=every) as log:
        batch: list[AnyEvent] = []
        for n, (kind, key, origin, second, cut) in enumerate(history):
            ev = event(n, kind, key, origin)
            batch.append(ev.model_copy(update={"effective_at": T0 + timedelta(seconds=second)}))
            if len(batch) >= cut:
                log.append(batch)
                batch = []
        log.append(batch)
        everything = list(log.read())
        for probe in probes:
            at = T0 + timedelta(seconds=probe)
            until = probe if probe > 0 else 1
            for origin in ORIGINS:  # each source's desired state on its own
                want = {k: e.seq for k, e in fold_desired(
                    (r for r in everything if r.event.effective_at <= at), origin=origin).items()}
                got = {r.event.resource: r.seq for r in log.state_at("desired", at=at, origin=origin)}
                assert got == want, (origin, probe)
                want = {k: e.seq for k, e in fold_desired((r for r in everything if r.seq <= until),
                                                          origin=origin).items()}
                assert {r.event.resource: r.seq for r in log.state_at("desired", until_seq=until, origin=origin)} \
                    == want
            want = {k: e.seq for k, e in fold_actual(r for r in everything if r.event.effective_at <= at).items()}
            assert {r.event.resource: r.seq for r in log.state_at("actual", at=at)} == want
            if everything:
                recorded = everything[min(len(everything) - 1, max(probe, 0))].recorded_at
                want = {k: e.seq for k, e in fold_actual(r for r in everything if r.recorded_at <= recorded).items()}
                got = {r.event.resource: r.seq for r in log.state_at("actual", at=recorded, axis="recorded")}
                assert got == want


def test_a_change_in_git_is_no_drift_and_git_can_end_one(tmp_path: Path) -> None:
    from gitops.query import drift_episodes

    def with_data(ev: AnyEvent, value: str) -> AnyEvent:
        payload = ev.payload.model_copy(update={"manifest": {**ev.payload.manifest, "data": {"k": value}}})  # type: ignore[union-attr]
        return ev.model_copy(update={"payload": payload})

    key, origin = KEYS[0], ORIGINS[0]
    with EventLog(tmp_path / "g.db") as log:
        log.append([with_data(event(1, "applied", key, origin), "a"), with_data(event(2, "observed", key, origin), "a"),
                    with_data(event(3, "applied", key, origin), "b"),  # Git moves first: pending, not drift
                    with_data(event(4, "observed", key, origin), "b"),  # caught up
                    with_data(event(5, "observed", key, origin), "x"),  # drift
                    with_data(event(6, "applied", key, origin), "x")])  # Git changed to match
        episodes = drift_episodes(log.read())
    assert [(e.opened_seq, e.fields, e.closed_seq, e.how) for e in episodes] == [(5, ["data.k"], 6, "git-changed")]
