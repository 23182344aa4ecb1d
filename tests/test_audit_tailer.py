"""The audit log tailer on a real file: new lines, torn lines, rotation, restart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gitops.events import Attribution, AuditRecorded, ClusterObserved
from gitops.events.models import SourceErrorEvent, event_id
from gitops.sources.cluster.audit import AuditIndex
from gitops.sources.cluster.audit_file import AuditTailer
from gitops.sources.cluster.config import ClusterSourceConfig
from gitops.sources.cluster.watcher import Change
from gitops.sources.cluster.writer import Writer
from gitops.store import Checkpoint, EventLog

PLURALS = {("", "configmaps"): ("ConfigMap", True), ("", "namespaces"): ("Namespace", False)}


def line(n: int, *, verb: str = "patch", user: str = "alice", stage: str = "ResponseComplete",
         resource: str = "configmaps", rv: str | None = None) -> str:
    ev: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": f"id-{n}",
        "stage": stage, "requestURI": f"/api/v1/namespaces/shop/{resource}/cm-{n}", "verb": verb,
        "user": {"username": user, "groups": ["devs", "system:authenticated"]},
        "sourceIPs": ["127.0.0.1"], "userAgent": "kubectl/v1.20.2",
        "objectRef": {"resource": resource, "namespace": "shop", "name": f"cm-{n}", "apiVersion": "v1"},
        "responseStatus": {"code": 200},
        "requestObject": {"data": {"password": "never-kept"}},
        "responseObject": {"kind": "ConfigMap", "metadata": {"resourceVersion": rv or str(1000 + n)},
                           "data": {"password": "never-kept"}},
        "requestReceivedTimestamp": "2026-11-26T10:00:00.000000Z",
        "stageTimestamp": "2026-11-26T10:00:00.010000Z",
    }
    return json.dumps(ev) + "\n"


def tailer(db: Path, path: Path, index: AuditIndex | None = None) -> AuditTailer:
    return AuditTailer(EventLog(db), path, resolve=lambda g, r: PLURALS.get((g, r)), index=index or AuditIndex(),
                       origin="cluster:test")


def audit_ids(db: Path) -> list[str]:
    with EventLog(db) as log:
        return [r.event.payload.audit_id for r in log.read(types=["audit"])
                if isinstance(r.event, AuditRecorded)]


def test_write_requests_become_audit_events_without_bodies(tmp_path: Path, db_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text(line(1) + line(2, verb="get") + line(3, stage="RequestReceived") + line(4, verb="delete")
                    + "{not json\n" + line(5, resource="widgets"))
    index = AuditIndex()
    t = tailer(db_path, path, index)
    assert t.catch_up() == 2
    assert audit_ids(db_path) == ["id-1", "id-4"]
    with EventLog(db_path) as log:
        ev = next(log.read(types=["audit"])).event
    assert isinstance(ev, AuditRecorded)
    assert (ev.resource, ev.actor, ev.revision) == ("ConfigMap/shop/cm-1", "alice", "1001")
    assert ev.payload.groups == ["devs", "system:authenticated"]
    assert (ev.payload.user_agent, ev.payload.source_ips) == ("kubectl/v1.20.2", ["127.0.0.1"])
    assert index.find("ConfigMap/shop/cm-1", "1001", deleted=False).record is not None
    assert b"never-kept" not in db_path.read_bytes()


def test_a_torn_last_line_is_read_once_complete(tmp_path: Path, db_path: Path) -> None:
    path = tmp_path / "audit.log"
    whole = line(1)
    path.write_text(whole[:50])
    t = tailer(db_path, path)
    assert t.catch_up() == 0
    with path.open("a") as f:
        f.write(whole[50:])
    assert t.catch_up() == 1
    assert audit_ids(db_path) == ["id-1"]


def test_rotation_loses_nothing_and_a_restart_resumes_where_it_stopped(tmp_path: Path, db_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text(line(1) + line(2))
    t = tailer(db_path, path)
    assert t.catch_up() == 2
    with path.open("a") as f:  # written just before the rotation, not yet read
        f.write(line(3))
    path.rename(tmp_path / "audit-2026-11-26T10-00-00.log")
    path.write_text(line(4))
    assert t.catch_up() == 2
    t.stop()
    with path.open("a") as f:
        f.write(line(5))
    again = tailer(db_path, path)  # a new process: resumes from the checkpoint
    assert again.catch_up() == 1
    assert audit_ids(db_path) == ["id-1", "id-2", "id-3", "id-4", "id-5"]


def errors(db: Path) -> list[tuple[str, str]]:
    with EventLog(db) as log:
        return [(r.event.payload.code, r.event.payload.detail.get("offset", ""))
                for r in log.read(types=["source.error"]) if isinstance(r.event, SourceErrorEvent)]


def test_odd_records_are_skipped_counted_and_reported_once_never_fatal(tmp_path: Path, db_path: Path) -> None:
    path = tmp_path / "audit.log"
    wrong_types = json.loads(line(3))
    wrong_types["user"] = "alice"  # a string where an object belongs
    bad_time = json.loads(line(4))
    bad_time["requestReceivedTimestamp"] = "yesterday-ish"
    odd = ["[1,2,3]", "42", '"text"', "{not json", json.dumps(wrong_types), json.dumps(bad_time)]
    path.write_text(line(1) + "".join(o + "\n" for o in odd) + line(2))
    t = tailer(db_path, path)
    assert t.catch_up() == 2  # the two good records, around the odd ones
    assert t.malformed == 6
    assert audit_ids(db_path) == ["id-1", "id-2"]
    reported = errors(db_path)
    assert [code for code, _ in reported] == ["audit-malformed"] * 6
    assert len({offset for _, offset in reported}) == 6  # one report for each place
    t.stop()
    with EventLog(db_path) as log:
        log.append([], checkpoint=Checkpoint(t.checkpoint_name, None))  # forget the position: read it all again
    again = tailer(db_path, path)
    assert again.catch_up() == 0
    assert len(errors(db_path)) == 6  # the same places: reported once


def test_a_large_backlog_is_read_and_written_in_bounded_chunks(tmp_path: Path, db_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text("".join(line(i) for i in range(3000)))  # about 2 MB
    t = AuditTailer(EventLog(db_path), path, resolve=lambda g, r: PLURALS.get((g, r)), index=AuditIndex(),
                    origin="cluster:test", chunk_bytes=64 << 10)
    transactions: list[int] = []
    t.log.add_hook(lambda cur, appended: transactions.append(len(appended)))
    assert t.catch_up() == 3000
    per_chunk = (64 << 10) // len(line(0)) + 1
    assert len(transactions) > 20 and max(transactions) <= per_chunk  # never the whole file at once
    assert len(audit_ids(db_path)) == 3000
    assert t.log.checkpoint(t.checkpoint_name) == {"inode": path.stat().st_ino, "offset": path.stat().st_size}


def test_a_rotation_while_nothing_read_is_an_evidence_gap_in_the_report(tmp_path: Path, db_path: Path) -> None:
    from datetime import UTC, datetime

    from gitops.query.report import build_report

    path = tmp_path / "audit.log"
    path.write_text(line(1))
    t = tailer(db_path, path)
    assert t.catch_up() == 1
    t.stop()
    with path.open("a") as f:  # written while nothing read the file...
        f.write(line(2))
    path.rename(tmp_path / "audit.log.1")  # ...then rotated away
    path.write_text(line(3))
    again = tailer(db_path, path)
    assert again.catch_up() == 1
    again.stop()
    assert audit_ids(db_path) == ["id-1", "id-3"]  # id-2 was never read
    assert [code for code, _ in errors(db_path)] == ["audit-gap"]
    with EventLog(db_path) as log:
        scope = build_report(log, datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC)).scope
    assert scope is not None
    gaps = [g for g in scope.evidence_gaps if "audit.log was rotated away" in g.what]
    assert len(gaps) == 1 and gaps[0].end is not None


# ---------------------------------------------------------------------------- records held for their changes


def holding(db: Path, path: Path, index: AuditIndex) -> AuditTailer:
    """A tailer that holds records (as the cluster source's does) longer than any test runs."""
    return AuditTailer(EventLog(db), path, resolve=lambda g, r: PLURALS.get((g, r)), index=index,
                       origin="cluster:test", hold=3600.0)


def change(n: int) -> Change:
    """What the watch saw of cm-N at the version line(N)'s request made."""
    rv = str(1000 + n)
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": str(n)},
                "metadata": {"name": f"cm-{n}", "namespace": "shop", "resourceVersion": rv}}
    return Change(f"ConfigMap/shop/cm-{n}", "ConfigMap", rv, datetime.now(UTC), manifest)


def observed(db: Path, n: int) -> ClusterObserved:
    with EventLog(db) as log:
        (r,) = log.read(types=["cluster.observed"], resource=f"ConfigMap/shop/cm-{n}")
    assert isinstance(r.event, ClusterObserved)
    return r.event


def test_a_record_is_kept_in_the_event_of_its_change_and_written_alone_when_none_took_it(
        tmp_path: Path, db_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text(line(1) + line(2) + line(3, user="bob"))
    index = AuditIndex()
    t = holding(db_path, path, index)
    earlier = Writer(EventLog(db_path), origin="cluster:test", config=ClusterSourceConfig())
    earlier.put(change(3))  # recorded before its record was read: the event is in the log without it
    earlier.drain()
    assert t.catch_up() == 0 and audit_ids(db_path) == []  # held
    writer = Writer(EventLog(db_path), origin="cluster:test", config=ClusterSourceConfig(), index=index, feeds=[t])
    for n in (1, 3):
        writer.put(change(n))
    writer.drain()
    ev = observed(db_path, 1)
    assert (ev.actor, ev.payload.attribution, ev.payload.audit_id) == ("alice", Attribution.AUDIT, "id-1")
    assert ev.payload.audit is not None
    assert (ev.payload.audit.verb, ev.payload.audit.request_uri, ev.payload.audit.user_agent) == \
        ("patch", "/api/v1/namespaces/shop/configmaps/cm-1", "kubectl/v1.20.2")
    assert t.take("id-1") is None  # one change keeps it
    assert observed(db_path, 3).payload.audit is None  # written before: the writer's second event was not new
    assert t.flush() == 2
    assert audit_ids(db_path) == ["id-2", "id-3"]  # nobody's change, and bob's that no event kept
    assert t.records == 3  # read: one kept in its change, two written on their own (what `ingest` reports)
    t.stop()
    again = holding(db_path, path, AuditIndex())  # a restart: the checkpoint passed them all
    assert again.catch_up() == 0 and again.flush() == 0
    assert audit_ids(db_path) == ["id-2", "id-3"]


def test_the_checkpoint_never_passes_a_held_record(tmp_path: Path, db_path: Path) -> None:
    """A crash while records are held: they are read again, and one already kept in its
    change's event comes back as an audit event (the same evidence twice, never none)."""
    path = tmp_path / "audit.log"
    path.write_text(line(1) + line(2))
    index = AuditIndex()
    t = holding(db_path, path, index)
    writer = Writer(EventLog(db_path), origin="cluster:test", config=ClusterSourceConfig(), index=index, feeds=[t])
    writer.put(change(1))
    writer.drain()  # id-1 is in cm-1's event; id-2 is held; then the process dies before writing id-2
    assert observed(db_path, 1).payload.audit_id == "id-1" and audit_ids(db_path) == []
    assert t.log.checkpoint(t.checkpoint_name) == {"inode": path.stat().st_ino, "offset": 0}
    again = holding(db_path, path, AuditIndex())
    assert again.catch_up() == 0
    assert again.flush() == 2
    assert audit_ids(db_path) == ["id-1", "id-2"]
    assert again.log.checkpoint(again.checkpoint_name) == {"inode": path.stat().st_ino,
                                                           "offset": path.stat().st_size}


def test_records_held_when_the_file_rotates_are_written_before_the_new_file_is_read(
        tmp_path: Path, db_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text(line(1))
    t = holding(db_path, path, AuditIndex())
    assert t.catch_up() == 0
    path.rename(tmp_path / "audit-old.log")
    path.write_text(line(2))
    assert t.catch_up() == 1  # id-1 from the old file; id-2 held
    assert audit_ids(db_path) == ["id-1"]
    assert t.log.checkpoint(t.checkpoint_name) == {"inode": path.stat().st_ino, "offset": 0}
    assert t.flush() == 1 and audit_ids(db_path) == ["id-1", "id-2"]


def test_an_evidence_gap_starts_at_the_last_record_read_when_a_change_kept_it(tmp_path: Path, db_path: Path) -> None:
    from gitops.query.report import build_report

    path = tmp_path / "audit.log"
    made = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)  # after the log began
    first = json.loads(line(1))
    first["stageTimestamp"] = made.isoformat().replace("+00:00", "Z")
    path.write_text(json.dumps(first) + "\n")
    index = AuditIndex()
    t = holding(db_path, path, index)
    writer = Writer(EventLog(db_path), origin="cluster:test", config=ClusterSourceConfig(), index=index, feeds=[t])
    writer.put(change(1))
    writer.drain()
    assert t.catch_up() == 0  # id-1 is in cm-1's event: the checkpoint moves past it
    t.stop()
    with path.open("a") as f:  # written while nothing read the file, then rotated away
        f.write(line(2))
    path.rename(tmp_path / "audit.log.1")
    path.write_text(line(3))
    again = tailer(db_path, path)
    assert again.catch_up() == 1
    assert audit_ids(db_path) == ["id-3"] and observed(db_path, 1).payload.audit_id == "id-1"
    with EventLog(db_path) as log:
        scope = build_report(log, datetime(2000, 1, 1, tzinfo=UTC), made + timedelta(hours=1)).scope
    assert scope is not None
    (gap,) = [g for g in scope.evidence_gaps if "audit.log was rotated away" in g.what]
    assert gap.start == made  # id-1's time


def test_a_stopped_tailer_asked_again_reads_on_from_where_it_was(tmp_path: Path, db_path: Path) -> None:
    """The cluster writer asks the tailer for records while it drains its queue at stop:
    the file is read on from where it was, not again from its first line."""
    path = tmp_path / "audit.log"
    path.write_text(line(1) + line(2))
    index = AuditIndex()
    t = holding(db_path, path, index)
    assert t.catch_up() == 0
    assert t.flush() == 2
    t.stop()
    with path.open("a") as f:
        f.write(line(3))
    transactions: list[list[str]] = []
    t.log.add_hook(lambda cur, appended: transactions.append([a.event.id for a in appended]))
    assert t.catch_up() == 0  # id-3 held; id-1 and id-2 not read again (nor held: the checkpoint is at id-3)
    assert t.log.checkpoint(t.checkpoint_name) == {"inode": path.stat().st_ino, "offset": len(line(1) + line(2))}
    assert t.flush() == 1 and transactions == [[event_id("audit", "cluster:test", "id-3")]]
    assert audit_ids(db_path) == ["id-1", "id-2", "id-3"]


def test_the_checkpoint_alone_is_written_once_in_a_while_not_at_each_read(tmp_path: Path, db_path: Path) -> None:
    """The cluster writer asks for records at each change: a transaction for each would slow
    it down. The checkpoint may lag behind what was read (read again after a crash), never
    pass a record held."""
    path = tmp_path / "audit.log"
    path.write_text(line(1))
    t = holding(db_path, path, AuditIndex())
    assert t.catch_up() == 0
    assert t.log.checkpoint(t.checkpoint_name) == {"inode": path.stat().st_ino, "offset": 0}  # the file's first
    assert t.take("id-1") is not None
    t.settle(["id-1"])
    with path.open("a") as f:
        f.write(line(2))
    assert t.catch_up() == 0
    assert t.log.checkpoint(t.checkpoint_name) == {"inode": path.stat().st_ino, "offset": 0}  # not yet
    assert t.flush() == 1
    assert t.log.checkpoint(t.checkpoint_name) == {"inode": path.stat().st_ino, "offset": path.stat().st_size}


def test_a_service_does_not_hold_records_read_long_after_they_were_made(tmp_path: Path, db_path: Path) -> None:
    """A backlog read at a service's start is written at once; a fresh record is held."""
    fresh = json.loads(line(2))
    fresh["stageTimestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    path = tmp_path / "audit.log"
    path.write_text(line(1) + json.dumps(fresh) + "\n")  # line(1) was made on 2026-11-26
    t = AuditTailer(EventLog(db_path), path, resolve=lambda g, r: PLURALS.get((g, r)), index=AuditIndex(),
                    origin="cluster:test", hold=3600.0, stale=60.0)
    assert t.catch_up() == 1
    assert audit_ids(db_path) == ["id-1"]
    assert t.take("id-1") is None and t.take("id-2") is not None
    assert t.log.checkpoint(t.checkpoint_name) == {"inode": path.stat().st_ino, "offset": len(line(1))}


def test_a_deletecollection_is_written_at_once_one_event_per_object_it_deleted(tmp_path: Path,
                                                                               db_path: Path) -> None:
    """No one change keeps a request that deleted several objects: it is not held, and each
    object's deletion finds it by its uid."""
    path = tmp_path / "audit.log"
    collection = json.loads(line(2, verb="deletecollection"))
    collection["objectRef"].pop("name")
    collection["responseObject"] = {"kind": "ConfigMapList", "metadata": {"resourceVersion": "2000"}, "items": [
        {"metadata": {"name": n, "namespace": "shop", "uid": f"u-{n}"}, "data": {"password": "never-kept"}}
        for n in ("a", "b")]}
    path.write_text(line(1) + json.dumps(collection) + "\n")
    index = AuditIndex()
    t = holding(db_path, path, index)
    assert t.catch_up() == 2 and audit_ids(db_path) == ["id-2", "id-2"]  # id-1 (one change's) is held
    with EventLog(db_path) as log:
        assert [r.event.resource for r in log.read(types=["audit"])] == ["ConfigMap/shop/a", "ConfigMap/shop/b"]
    assert t.take("id-2") is None
    for n in ("a", "b"):
        join = index.find(f"ConfigMap/shop/{n}", None, deleted=True, uid=f"u-{n}")
        assert join.record is not None and join.record.audit_id == "id-2"
    assert t.records == 2  # two requests read
    assert b"never-kept" not in db_path.read_bytes()


def test_a_record_no_change_can_take_is_written_at_once_not_held(tmp_path: Path, db_path: Path) -> None:
    """A refused request and a dry run changed nothing: no change will keep them, so they
    are not held back (an alert on refused requests sees them as they are read)."""
    refused = json.loads(line(2, user="bob"))
    refused["responseStatus"] = {"code": 403}
    refused["responseObject"] = {"kind": "Status", "code": 403}
    dry = json.loads(line(3))
    dry["requestURI"] += "?dryRun=All"
    path = tmp_path / "audit.log"
    path.write_text(line(1) + json.dumps(refused) + "\n" + json.dumps(dry) + "\n")
    t = holding(db_path, path, AuditIndex())
    assert t.catch_up() == 2
    assert audit_ids(db_path) == ["id-2", "id-3"]  # id-1, a write a change may keep, is held
    assert t.take("id-1") is not None and t.take("id-2") is None
