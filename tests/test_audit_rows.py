"""The parts of an audit row computed from the log alone, on a real SQLite file: the fields a
change touched, the version it is compared with, and whether it was made out of band."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gitops.events.models import (
    AnyEvent,
    ClusterDeleted,
    ClusterObserved,
    DesiredApplied,
    DesiredRemoved,
    ReconcileAction,
)
from gitops.model.changes import FieldChange, field_changes, flatten
from gitops.query.audit import audit_rows
from gitops.query.report import build_report
from gitops.query.report_render import render_html
from gitops.store import EventLog

T0 = datetime(2026, 3, 1, tzinfo=UTC)
GIT, OTHER_GIT, CLUSTER = "git:/r#main", "git:/other#main", "cluster:https://k"


def _oracle(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[tuple[str, Any, Any]]:
    """The definition: every leaf of both versions flattened, the paths whose values differ."""
    from gitops.diff import normalize

    a = flatten(normalize(old)) if old else {}
    b = flatten(normalize(new)) if new else {}
    missing = object()
    return [(p, a.get(p), b.get(p)) for p in sorted(set(a) | set(b)) if a.get(p, missing) != b.get(p, missing)]


def _value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.45:
        return rng.choice([1, 2, "1", "x", "y", True, None, 0.5, "", []])
    if roll < 0.55:
        return {}
    if roll < 0.8:
        return {rng.choice("abcde"): _value(rng, depth + 1) for _ in range(rng.randrange(1, 4))}
    items: list[Any] = []
    for _ in range(rng.randrange(0, 4)):
        item = _value(rng, depth + 1)
        if isinstance(item, dict) and rng.random() < 0.5:
            item["name"] = rng.choice(["web", "db", "web"])  # merge keys, duplicates too
        items.append(item)
    return items


def _mutate(rng: random.Random, value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict) and value and (depth == 0 or rng.random() < 0.8):
        out = dict(value)
        for _ in range(rng.randrange(1, 3)):
            k = rng.choice([*out, "new"])
            if rng.random() < 0.15:
                out.pop(k, None)
            else:
                out[k] = _mutate(rng, out.get(k), depth + 1)
        return out
    if isinstance(value, list) and value and rng.random() < 0.7:
        out_list = list(value)
        i = rng.randrange(len(out_list))
        out_list[i] = _mutate(rng, out_list[i], depth + 1)
        return out_list
    return _value(rng, depth)


def test_the_changed_fields_are_those_of_the_flattened_versions() -> None:
    """``field_changes`` skips equal parts without flattening them; it must name exactly what
    comparing every flattened leaf names, in the same order, with the same values."""
    rng = random.Random(2026)
    for _ in range(3000):
        old = {"apiVersion": "v1", "kind": rng.choice(["ConfigMap", "Deployment"]),
               "metadata": {"name": "a", "resourceVersion": str(rng.randrange(9)), "labels": {"app": "x"}},
               "spec": _value(rng, 0), "data": _value(rng, 1)}
        new = _mutate(rng, old)
        if rng.random() < 0.3 and isinstance(new.get("metadata"), dict):
            new["metadata"] = {**new["metadata"], "resourceVersion": "99", "uid": "u"}  # server fields: not changes
        got = [(c.path, c.old, c.new) for c in field_changes(old, new)]
        assert got == _oracle(old, new), (old, new)
        assert [(c.path, c.old, c.new) for c in field_changes(new, old)] == _oracle(new, old)
    assert field_changes(None, {"kind": "ConfigMap", "data": {"k": "1"}}) == [FieldChange("data.k", None, "1"),
                                                                            FieldChange("kind", None, "ConfigMap")]


def _cm(version: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"},
            "data": {"v": version, **data}}


class _Events:
    def __init__(self) -> None:
        self.events: list[AnyEvent] = []

    def add(self, cls: type[Any], resource: str | None, actor: str | None, **payload: Any) -> None:
        i = len(self.events)
        self.events.append(cls.model_validate({
            "id": f"e{i}", "source": "git" if cls in (DesiredApplied, DesiredRemoved) else
            "reconciler" if cls is ReconcileAction else "cluster", "resource": resource, "actor": actor,
            "effective_at": T0 + timedelta(minutes=i), "revision": f"{i:040x}", "payload": payload}))


def _desired(e: _Events, origin: str, manifest: dict[str, Any], resource: str = "ConfigMap/n/a") -> None:
    e.add(DesiredApplied, resource, "dev@example.com", manifest=manifest, commit="c" * 40, path="a.yaml",
          document_index=0, origin=origin)


def _observed(e: _Events, manifest: dict[str, Any], who: str | None, how: str, resource: str = "ConfigMap/n/a",
              origin: str = CLUSTER) -> None:
    e.add(ClusterObserved, resource, who, manifest=manifest, resource_version=str(len(e.events)), change="modified",
          origin=origin, attribution=how)


def test_a_change_is_compared_with_the_last_version_of_the_same_side_and_origin(tmp_path: Path) -> None:
    e = _Events()
    _desired(e, GIT, _cm("1"))
    for i in range(7):  # another branch desiring the same object, and the cluster, in between
        _desired(e, OTHER_GIT, _cm(f"other{i}"))
        _observed(e, _cm(f"live{i}"), "gitops", "reconciler")
    _desired(e, GIT, _cm("2", extra="x"))
    e.add(DesiredRemoved, "ConfigMap/n/a", "dev@example.com", commit="d" * 40, origin=GIT)
    _desired(e, GIT, _cm("3"))
    _observed(e, _cm("live6", hand="yes"), "alice", "audit")
    e.add(ClusterDeleted, "ConfigMap/n/a", "alice", resource_version="9", uid="u1", origin=CLUSTER, attribution="audit")
    _observed(e, _cm("again"), "gitops", "reconciler")
    with EventLog(tmp_path / "log.db") as log:
        log.append(e.events)
        rows = list(audit_rows(log, resource="ConfigMap/n/a"))
    by_seq = {r.seq: [(c.path, c.old, c.new) for c in r.changes] for r in rows}
    assert by_seq[1] == [("", None, "(the object)")]
    assert by_seq[2] == [("", None, "(the object)")]  # the other branch's first version
    assert by_seq[4] == [("data.v", "other0", "other1")]
    assert by_seq[5] == [("data.v", "live0", "live1")]
    assert by_seq[16] == [("data.extra", None, "x"), ("data.v", "1", "2")]  # not against the other branch
    assert by_seq[17] == [("", "(the object)", None)]
    assert by_seq[18] == [("", None, "(the object)")]  # after a removal: created again
    assert by_seq[19] == [("data.hand", None, "yes")]
    assert by_seq[21] == [("", None, "(the object)")]


def test_the_actor_unknown_finds_the_changes_no_evidence_names_anyone_for(tmp_path: Path) -> None:
    """Rows show a change without a named actor as "unknown", so that is what a user filters by."""
    e = _Events()
    _desired(e, GIT, _cm("1"))
    _observed(e, _cm("1", k="x"), None, "unknown")  # 2
    _observed(e, _cm("1", k="y"), "alice", "audit")  # 3
    e.add(ClusterDeleted, "ConfigMap/n/a", None, resource_version="9", uid="u1", origin=CLUSTER,
          attribution="unknown")  # 4
    with EventLog(tmp_path / "log.db") as log:
        log.append(e.events)
        assert [r.seq for r in audit_rows(log, actor="unknown")] == [2, 4]
        assert [r.seq for r in audit_rows(log, actor="unknown", out_of_band=True)] == [2, 4]
        assert [r.seq for r in audit_rows(log, actor="alice")] == [3]


def test_out_of_band_is_a_change_by_hand_to_an_object_git_manages(tmp_path: Path) -> None:
    """Each row's flag and the ``--out-of-band`` filter say the same, for every kind of change."""
    e = _Events()
    _desired(e, GIT, _cm("1"))
    _observed(e, _cm("1"), "gitops", "reconciler")  # 2: the reconciler
    _observed(e, _cm("1", k="alice"), "alice", "audit")  # 3: by hand
    _observed(e, _cm("1", k="?"), None, "unknown")  # 4: nobody proven: still not through Git
    _observed(e, _cm("x"), "bob", "audit", resource="ConfigMap/n/unmanaged")  # 5: Git never desired it
    e.add(ReconcileAction, "ConfigMap/n/a", "gitops", run_id="r", action="prune", result="succeeded", uid="u1")
    e.add(ClusterDeleted, "ConfigMap/n/a", "gitops-sa", resource_version="7", uid="u1", origin=CLUSTER,
          attribution="unknown")  # 7: the prune the reconciler recorded
    _observed(e, _cm("1"), "gitops", "reconciler")  # 8
    e.add(ClusterDeleted, "ConfigMap/n/a", "bob", resource_version="9", uid="u2", origin=CLUSTER,
          attribution="audit")  # 9: another incarnation, deleted by hand
    with EventLog(tmp_path / "log.db") as log:
        log.append(e.events)
        flagged = {r.seq for r in audit_rows(log) if r.out_of_band}
        filtered = [r.seq for r in audit_rows(log, out_of_band=True)]
        for_one = {r.seq for r in audit_rows(log, resource="ConfigMap/n/a") if r.out_of_band}
    assert flagged == {3, 4, 9}
    assert filtered == [3, 4, 9]
    assert for_one == {3, 4, 9}


def test_the_newest_changes_by_hand_are_found_in_seq_order_whatever_their_valid_times(tmp_path: Path) -> None:
    """The out-of-band filter with a limit, newest first, and a range of either time: the rows
    the per-row flag picks, in seq order (valid times arrive out of order), read by seq from
    the partial index's list, so that the newest 1,000 are not found by sorting them all."""
    from gitops.store.filters import select

    rng = random.Random(7)
    e = _Events()
    for name in "abc":
        _desired(e, GIT, _cm("1"), resource=f"ConfigMap/n/{name}")
    for i in range(120):
        name = rng.choice("abcd")  # d: Git never desired it
        who, how = rng.choice([("gitops", "reconciler"), ("alice", "audit"), (None, "unknown")])
        _observed(e, _cm(str(i)), who, how, resource=f"ConfigMap/n/{name}")
    for ev in e.events:  # valid times out of seq order, as late-arriving changes have them
        object.__setattr__(ev, "effective_at", T0 + timedelta(minutes=rng.randrange(1000)))
    with EventLog(tmp_path / "log.db") as log:
        log.append(e.events)
        rows = list(audit_rows(log))
        start, end = T0 + timedelta(minutes=200), T0 + timedelta(minutes=700)
        in_range = [r.seq for r in rows if r.out_of_band and start <= r.time < end]
        by_hand = [r.seq for r in rows if r.out_of_band]
        assert 20 < len(in_range) < len(by_hand) < 100
        assert [r.seq for r in audit_rows(log, out_of_band=True)] == by_hand
        assert [r.seq for r in audit_rows(log, out_of_band=True, limit=10, descending=True)] == by_hand[::-1][:10]
        assert [r.seq for r in audit_rows(log, out_of_band=True, since=start, until=end)] == in_range
        assert [r.seq for r in audit_rows(log, out_of_band=True, since=start, until=end, limit=5,
                                          descending=True)] == in_range[::-1][:5]
        assert [r.seq for r in audit_rows(log, out_of_band=True, namespace="n", actor="alice")] == [
            r.seq for r in rows if r.out_of_band and r.actor == "alice"]
        f = select(out_of_band=True, start=start, end=end)
        plan = " ".join(str(r[-1]) for r in log.conn.execute(
            f"EXPLAIN QUERY PLAN SELECT seq FROM events{f.where()} ORDER BY seq DESC LIMIT 5", f.params))
    assert "events_by_hand" in plan and "TEMP B-TREE" not in plan, plan


def test_the_timeline_draws_one_dot_per_pixel_and_says_how_many_it_stands_for(tmp_path: Path) -> None:
    e = _Events()
    _desired(e, GIT, _cm("1"))
    for i in range(40):  # 40 changes by hand within 40 seconds: one pixel of a month's timeline
        _observed(e, _cm("1", k=str(i)), "alice", "audit")
        e.events[-1] = e.events[-1].model_copy(update={"effective_at": T0 + timedelta(hours=1, seconds=i)})
    with EventLog(tmp_path / "log.db") as log:
        log.append(e.events)
        # a late change by hand, far from the others
        _observed(e, _cm("1", k="late"), "bob", "audit")
        late = e.events[-1].model_copy(update={"effective_at": T0 + timedelta(days=20)})
        log.append([late])
        report = build_report(log, T0, T0 + timedelta(days=30))
    html = render_html(report)
    assert len(report.out_of_band) == 41
    circles = re.findall(r'<circle [^>]*fill="#cf222e"><title>([^<]*)</title>', html)
    assert circles[0].startswith("40 out-of-band, 2026-03-01 01:00:00Z to 2026-03-01 01:00:39Z"), circles
    assert circles[1:] == ["ConfigMap/n/a by bob"]
    assert html.count('<tr><td>2026-03-') >= 41  # the table still lists every change


def test_a_commit_filter_keeps_the_commits_events_not_resource_versions_with_the_same_digits(tmp_path: Path) -> None:
    """A sha can start with digits only (1234567...), and a resourceVersion is digits: the
    cluster's events are not a commit's because their revision starts the same way."""
    from gitops.events.models import GitCommit
    from gitops.model.errors import UsageError

    sha = "1234567" + "a" * 33
    e = _Events()
    e.events.append(GitCommit.model_validate({
        "id": "c", "source": "git", "actor": "dev@example.com", "effective_at": T0, "revision": sha,
        "payload": {"sha": sha, "parents": [], "branch": "main", "repository": "/r", "origin": GIT, "message": "m",
                    "author": {"name": "D", "email": "dev@example.com", "time": T0},
                    "committer": {"name": "D", "email": "dev@example.com", "time": T0}}}))
    e.add(DesiredApplied, "ConfigMap/n/a", "dev@example.com", manifest=_cm("1"), commit=sha, path="a.yaml",
          document_index=0, origin=GIT)
    e.events[-1] = e.events[-1].model_copy(update={"revision": sha})
    _observed(e, _cm("1"), "gitops", "reconciler")
    e.events[-1] = e.events[-1].model_copy(update={"revision": "12345678"})  # a resourceVersion
    e.add(ReconcileAction, "ConfigMap/n/a", "gitops", run_id="r", action="create", result="succeeded", commit=sha)
    e.events[-1] = e.events[-1].model_copy(update={"revision": "12345678"})
    with EventLog(tmp_path / "log.db") as log:
        log.append(e.events)
        assert [r.action for r in audit_rows(log, commit="1234567")] == ["git.commit", "desired.applied",
                                                                          "reconcile.action"]
        assert [r.action for r in audit_rows(log, commit=sha.upper()[:12])] == ["git.commit", "desired.applied",
                                                                                 "reconcile.action"]
        assert list(audit_rows(log, commit="7654321")) == []
        for bad in ("xyz", "12", "1234567g"):
            with pytest.raises(UsageError, match="not a commit sha"):
                list(audit_rows(log, commit=bad))


def test_blame_credits_each_field_to_the_version_that_last_changed_it(tmp_path: Path) -> None:
    """Over random versions (a removal among them), ``blame`` credits what the definition
    does: each leaf of the last version to the last version whose value of it differed from
    the one before (or that brought it), everything forgotten at a removal."""
    from gitops.diff import normalize
    from gitops.projections import Moment
    from gitops.query.blame import blame

    rng = random.Random(7)
    e = _Events()
    manifest: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"},
                                "data": {f"k{j}": "0" for j in range(20)}, "spec": _value(rng, 0)}
    expected: dict[str, tuple[Any, int]] = {}
    values: dict[str, Any] = {}
    for i in range(120):
        if i == 60:
            e.add(DesiredRemoved, "ConfigMap/n/a", "dev@example.com", commit="d" * 40, origin=GIT)
            expected, values = {}, {}
            continue
        if rng.random() < 0.6:  # one key of many changes, or comes back after a removal
            manifest = {**manifest, "data": {**manifest.get("data", {}), f"k{rng.randrange(25)}": str(i)}}
        else:
            manifest = {**_mutate(rng, manifest), "metadata": {"name": "a", "namespace": "n"}}
            if not isinstance(manifest.get("data"), dict):
                manifest["data"] = {}
        e.add(DesiredApplied, "ConfigMap/n/a", f"dev{i}@example.com", manifest=manifest, commit=f"{i:040x}",
              path="a.yaml", document_index=0, origin=GIT)
        seq = len(e.events)
        now = flatten(normalize(manifest))
        for path, value in now.items():
            if path not in values or values[path] != value:
                expected[path] = (value, seq)
        expected = {p: c for p, c in expected.items() if p in now}
        values = now
    with EventLog(tmp_path / "log.db") as log:
        log.append(e.events)
        lines = [b for b in blame(log, "ConfigMap/n/a", Moment(T0 + timedelta(days=1))) if b.side == "desired"]
    assert {b.path: (b.value, b.seq) for b in lines} == expected
    assert len({seq for _, seq in expected.values()}) > 5  # the credit is spread over many versions
    assert all(b.actor == f"dev{b.seq - 1}@example.com" for b in lines)  # event i is seq i + 1


def test_blame_compares_each_version_with_the_last_one_from_the_same_source(tmp_path: Path) -> None:
    """Two clusters watched into one log hold the same object: carol changed only j in the
    first, so k stays alice's there, whatever the second cluster held in between; and each
    cluster's fields are shown apart (live@NAME), never folded into one object."""
    from gitops.projections import Moment
    from gitops.query.blame import blame

    e = _Events()
    _observed(e, _cm("1", k="1", j="1"), "alice", "audit", origin="cluster:https://a")  # 1
    _observed(e, _cm("1", k="2", j="1"), "bob", "audit", origin="cluster:https://b")  # 2
    _observed(e, _cm("1", k="1", j="3"), "carol", "audit", origin="cluster:https://a")  # 3
    with EventLog(tmp_path / "log.db") as log:
        log.append(e.events)
        moment = Moment(T0 + timedelta(days=1))
        lines = {(b.side, b.path): (b.actor, b.seq) for b in blame(log, "ConfigMap/n/a", moment)}
        assert lines[("live@https://a", "data.k")] == ("alice", 1)
        assert lines[("live@https://a", "data.j")] == ("carol", 3)
        assert lines[("live@https://b", "data.k")] == ("bob", 2) and lines[("live@https://b", "data.j")] == ("bob", 2)
        only_b = blame(log, "ConfigMap/n/a", Moment(T0 + timedelta(days=1)), clusters=["cluster:https://b"])
        assert {b.side for b in only_b} == {"live"} and {b.actor for b in only_b} == {"bob"}
        log.append([ClusterDeleted.model_validate({  # gone from the first cluster: nothing live to blame
            "id": "gone", "source": "cluster", "resource": "ConfigMap/n/a", "actor": "dave",
            "effective_at": T0 + timedelta(hours=1), "payload": {"resource_version": "9", "uid": "u",
                                                                 "origin": "cluster:https://a",
                                                                 "attribution": "audit"}})])
        left = blame(log, "ConfigMap/n/a", Moment(T0 + timedelta(days=1)))  # gone from a; b still holds it
        assert {b.side for b in left} == {"live@https://b"} and {b.actor for b in left} == {"bob"}


def test_blame_of_a_secret_credits_each_value_and_shows_none(tmp_path: Path) -> None:
    """A Secret's values (stored as digests by the source) are credited like any field, and
    shown only as "(secret)": stringData counts as data, as the API server folds it."""
    from gitops.projections import Moment
    from gitops.query.blame import blame

    def secret(user: str, password: str, *, folded: bool) -> dict[str, Any]:
        values = {"user": f"sha256:{user * 64}", "password": f"sha256:{password * 64}"}
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "n"},
                **({"data": values} if folded else {"stringData": values})}

    e = _Events()
    e.add(DesiredApplied, "Secret/n/db", "ann@example.com", manifest=secret("a", "b", folded=False), commit="1" * 40,
          path="s.yaml", document_index=0, origin=GIT)
    e.add(DesiredApplied, "Secret/n/db", "bo@example.com", manifest=secret("a", "c", folded=True), commit="2" * 40,
          path="s.yaml", document_index=0, origin=GIT)
    with EventLog(tmp_path / "log.db") as log:
        log.append(e.events)
        lines = blame(log, "Secret/n/db", Moment(T0 + timedelta(days=1)))
    by_path = {b.path: (b.value, b.actor) for b in lines}
    assert by_path["data.user"] == ("(secret)", "ann@example.com")
    assert by_path["data.password"] == ("(secret)", "bo@example.com")
    assert by_path["metadata.name"] == ("db", "ann@example.com")
    assert not any("sha256:" in str(b.value) for b in lines)


def test_tables_show_the_newest_thousand_rows_and_say_so_the_machine_formats_all(tmp_path: Path) -> None:
    """A table is for people (rich lays out every row: 30,000 took 15 s); as ``gitops log``
    does, it stops at 1,000 unless --limit says otherwise, keeping the newest (the recent is
    what is looked for), and says on stderr that it cut and how to get the rest."""
    import json
    import subprocess
    import sys

    e = _Events()
    _desired(e, GIT, _cm("0"))
    for i in range(1100):
        _observed(e, _cm(str(i)), "alice", "audit")
    db = tmp_path / "log.db"
    with EventLog(db) as log:
        log.append(e.events)

    def gitops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), *args], capture_output=True,
                              text=True, timeout=120)

    def rows(out: str) -> int:
        return len(re.findall(r"^\d+ ", out, re.MULTILINE))  # piped: plain rows, each starting with its seq

    for command in (["audit", "--actor", "alice"], ["log", "--actor", "alice"]):
        table = gitops(*command)
        assert table.returncode == 0, table.stderr
        assert rows(table.stdout) == 1000 and "showing the newest 1000" in table.stderr
        seqs = [int(m) for m in re.findall(r"^(\d+) ", table.stdout, re.MULTILINE)]
        assert seqs == list(range(102, 1102))  # the newest thousand, oldest first
        everything = gitops(*command, "--limit", "0")
        assert rows(everything.stdout) == 1100 and "showing the newest" not in everything.stderr
        some = gitops(*command, "--limit", "5")
        assert rows(some.stdout) == 5 and "showing the newest 5" in some.stderr
    lines = gitops("audit", "--actor", "alice", "-o", "jsonl").stdout.splitlines()
    assert len(lines) == 1100 and json.loads(lines[-1])["actor"] == "alice"


def test_the_report_checks_integrity_in_its_own_process_where_it_cannot_start_another(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some containers have no POSIX semaphores (no /dev/shm): the pool of the second process
    cannot be made, and the check runs in this one, with the same answer."""
    import gitops.query.report as report_module

    e = _Events()
    _desired(e, GIT, _cm("1"))
    _observed(e, _cm("1", k="x"), "alice", "audit")
    with EventLog(tmp_path / "log.db") as log:
        log.append(e.events)
        beside = build_report(log, T0, T0 + timedelta(days=1)).integrity

        def no_semaphores(*args: Any, **kwargs: Any) -> Any:
            raise OSError(38, "Function not implemented")

        monkeypatch.setattr(report_module, "ProcessPoolExecutor", no_semaphores)
        here = build_report(log, T0, T0 + timedelta(days=1)).integrity
    assert beside == here and here.ok and here.checked == 2 and here.head_seq == 2


def test_the_html_made_while_the_integrity_check_runs_is_the_html_made_after_it(tmp_path: Path) -> None:
    """The report's big tables are made from the report before its integrity section is known
    (what the CLI does while the check runs in the other process): the page is, byte for byte,
    the one made from the finished report, whose integrity section is the check's answer."""
    from gitops.query.report_render import prepare_html

    e = _Events()
    _desired(e, GIT, _cm("1"))
    _observed(e, _cm("1", k="x"), "alice", "audit")
    _observed(e, _cm("1", k="y"), "<!--gitops:integrity-->", "audit")  # the page's own mark, as a user's name
    given: list[Any] = []
    with EventLog(tmp_path / "log.db") as log:
        log.append(e.events)
        report = build_report(log, T0, T0 + timedelta(days=1),
                              meanwhile=lambda body: given.append((body, prepare_html(body))))
    (body, parts), = given
    assert not body.integrity.ok and body.integrity.checked == 0  # the placeholder, which is never shown
    assert report.integrity.ok and report.integrity.checked == 3 and report.integrity.head_seq == 3
    assert body.model_copy(update={"integrity": report.integrity}) == report
    html = render_html(report, parts)
    assert html == render_html(report)
    assert "not finished" not in html and len(report.out_of_band) == 2
    # the section is written where the template has it, once; a value from the log that looks like its mark
    # is escaped as every value is, and left where it is
    assert html.count("<!--gitops") == 0 and html.count("&lt;!--gitops:integrity--&gt;") >= 1
    assert html.count("The hash chain verifies over all 3 events") == 1
    assert html.index("<h2>Integrity</h2>") < html.index("The hash chain verifies") < html.index("Changes through Git")


def test_an_out_of_band_changes_outcome_is_its_drift_episodes_or_says_it_was_not_checked(tmp_path: Path) -> None:
    """A change that joins an episode already open ends as that episode does; a change
    without an episode is "no drift" only where the reconciler's drift step followed it
    (from the first pass to its checkpoint): before, or after, nobody judged it."""
    from gitops.events.models import DriftClosed, DriftOpened, EventSource, ReconcileStarted
    from gitops.store.log import Checkpoint

    e = _Events()

    def by_reconciler() -> None:
        e.events[-1] = e.events[-1].model_copy(update={"source": EventSource.RECONCILER})

    _desired(e, GIT, _cm("1"))  # 1
    _observed(e, _cm("1"), "gitops", "reconciler")  # 2
    _observed(e, _cm("1", k="alice"), "alice", "audit")  # 3: before any pass
    e.add(ReconcileStarted, None, "gitops", run_id="r1", trigger="start", mode="apply")  # 4
    by_reconciler()
    _observed(e, _cm("1", k="bob"), "bob", "audit")  # 5: opens an episode
    _observed(e, _cm("1", k="carol"), "carol", "audit")  # 6: joins it
    _observed(e, _cm("1"), "gitops", "reconciler")  # 7: closes it
    e.add(DriftOpened, "ConfigMap/n/a", "bob", episode_id="ep", fields=["data.k"], cause_seq=5)  # 8
    by_reconciler()
    e.add(DriftClosed, "ConfigMap/n/a", "gitops", episode_id="ep", how="reconciled", cause_seq=7)  # 9
    by_reconciler()
    _observed(e, {**_cm("1"), "metadata": {"name": "a", "namespace": "n", "annotations": {"x": "y"}}}, "dave",
              "audit")  # 10: Git sets no annotation: no drift, as the drift step found
    _observed(e, _cm("1", k="erin"), "erin", "audit")  # 11: after the drift step's last pass
    with EventLog(tmp_path / "log.db") as log:
        log.append(e.events, checkpoint=Checkpoint("reconciler:default:drift", {"seq": 10}))
        report = build_report(log, T0, T0 + timedelta(days=1))
    assert {o.actor: o.outcome for o in report.out_of_band} == {
        "alice": "not checked", "bob": "reverted by self-heal", "carol": "reverted by self-heal",
        "dave": "no drift", "erin": "not checked"}


def test_the_report_lists_drift_open_through_the_range_and_not_drift_over_before_it(tmp_path: Path) -> None:
    from gitops.events.models import DriftClosed, DriftOpened

    e = _Events()
    for i, (episode, resource) in enumerate((("over", "ConfigMap/n/a"), ("through", "ConfigMap/n/b"),
                                             ("ends-in", "ConfigMap/n/c"))):
        e.add(DriftOpened, resource, "alice", episode_id=episode, fields=["data.k"])
        e.events[-1] = e.events[-1].model_copy(update={"effective_at": T0 - timedelta(days=10, minutes=-i)})
    e.add(DriftClosed, "ConfigMap/n/a", "gitops", episode_id="over", how="reconciled")
    e.events[-1] = e.events[-1].model_copy(update={"effective_at": T0 - timedelta(days=9)})
    e.add(DriftClosed, "ConfigMap/n/c", "gitops", episode_id="ends-in", how="reverted")
    e.events[-1] = e.events[-1].model_copy(update={"effective_at": T0 + timedelta(hours=1)})
    with EventLog(tmp_path / "log.db") as log:
        log.append(e.events)
        report = build_report(log, T0, T0 + timedelta(days=1))
    episodes = {d.resource: (d.closed_at is None, d.resolution) for d in report.drift_episodes}
    assert episodes == {"ConfigMap/n/b": (True, None), "ConfigMap/n/c": (False, "reverted")}
    assert report.summary.drift_episodes == 2


def test_a_report_checks_the_projection_tables_it_reads_or_says_it_did_not(tmp_path: Path) -> None:
    """The projection tables are not in the hash chain. Changed by hand, they change what the
    report says while the chain verifies: an object taken out of the current state is no
    longer one Git manages, so the changes by hand to it are not out of band any more; a
    change's fields can be rewritten. Every report checks the first against the log's
    desired events and fails when they differ; the fields only with verify_projections, and
    without it the report says they were not checked."""
    import sqlite3

    from gitops.query.report_policy import ReportSettings

    e = _Events()
    _desired(e, GIT, _cm("1"))
    _observed(e, _cm("1", k="x"), "alice", "audit")
    _observed(e, _cm("1", k="y"), "bob", "audit")
    db = tmp_path / "log.db"
    week = (T0, T0 + timedelta(days=7))
    check = ReportSettings(verify_projections=True)
    with EventLog(db) as log:
        log.append(e.events)
        honest, checked = build_report(log, *week), build_report(log, *week, check)
    assert len(honest.out_of_band) == 2 and honest.integrity.ok and not honest.integrity.projections_checked
    assert "which was not checked for this report" in render_html(honest)
    assert checked.integrity.ok and checked.integrity.projections_checked and not checked.integrity.projection_problems
    assert "match the log" in render_html(checked)

    with sqlite3.connect(db) as c:  # as someone with write access to the file would hide bob's change: its fields
        c.execute("UPDATE changes SET fields = '[[\"data.k\", \"x\", \"x\"]]' WHERE seq = 3")
    with EventLog(db) as log:
        assert log.verify().ok  # the chain cannot see it
        fooled, caught = build_report(log, *week), build_report(log, *week, check)
    assert fooled.out_of_band[1].fields == "data.k: x -> x" and fooled.integrity.ok  # what the table says now ...
    assert not fooled.integrity.projections_checked  # ... and the report says it did not check that table
    assert not caught.integrity.ok and caught.integrity.projections_checked
    assert caught.integrity.problem is not None and "projection tables" in caught.integrity.problem
    assert any(p.startswith("changes of seq 3") for p in caught.integrity.projection_problems)

    with sqlite3.connect(db) as c:  # ... and alice's and bob's changes whole: the object is no longer Git's
        c.execute("DELETE FROM current_state WHERE side = 'desired'")
    with EventLog(db) as log:
        assert log.verify().ok
        plain = build_report(log, *week)
    assert plain.out_of_band == []  # what the table says, and every report checks that table: it fails
    assert not plain.integrity.ok and not plain.integrity.projections_checked
    assert plain.integrity.projection_problems == [
        "ConfigMap/n/a: the log's desired events name it, but the current state does not list it as desired"]
    html = render_html(plain)
    assert 'id="integrity-alarm"' in html and "cannot be trusted" in html and 'id="projection-problems"' in html
