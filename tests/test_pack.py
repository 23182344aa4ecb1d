"""Packed payloads (gitops.store.pack) on both engines: the versions of an object stored as
small deltas and read back as the very text that was hashed; every query answering a packed
log as it answers the same log stored whole; an old log compacted with its head unchanged;
tampering with what is stored packed found by verify. What is stored is read with the
engine's own client, and the whole-stored twin of a log is made with it too."""

from __future__ import annotations

import json
import sqlite3
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gitops.events import (
    AnyEvent,
    ClusterDeleted,
    ClusterDeletedPayload,
    ClusterObserved,
    ClusterObservedPayload,
    EventSource,
)
from gitops.model.errors import CorruptDatabaseError, StoreError
from gitops.projections import Moment
from gitops.query.blame import blame
from gitops.store import EventLog
from gitops.store.compact import compact_log
from gitops.store.pack import PACK_MIN
from tests.cli_helpers import gitops, one_failure_line
from tests.helpers import T0, applied, deployment
from tests.postgres_fixtures import Store


def query(s: Store, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (with ``?`` placeholders) read with the engine's own client."""
    if s.kind == "sqlite":
        with sqlite3.connect(s.location) as c:
            return c.execute(sql, params).fetchall()
    with psycopg.connect(str(s.location), autocommit=True) as c:
        return [tuple(r) for r in c.execute(sql.replace("?", "%s").encode(), params).fetchall()]


def write(s: Store, sql: str, *params: Any) -> None:
    if s.kind == "sqlite":
        with sqlite3.connect(s.location) as c:
            c.execute(sql, params)
    else:
        with psycopg.connect(str(s.location), autocommit=True) as c:
            c.execute(sql.replace("?", "%s").encode(), params)


def version(n: int, name: str, *, by: str | None = None, attribution: str = "unknown",
            cluster: str = "cluster:a") -> ClusterObserved:
    """Version ``n`` of Deployment ``name`` as the cluster source records it: a new image,
    resourceVersion and generation each time, the rest as before."""
    m = deployment(name)
    m["metadata"].update(resourceVersion=str(1000 + n), generation=n, uid=f"uid-{name}",
                         annotations={"deployment.kubernetes.io/revision": str(n), "team": "shop"})
    m["spec"]["template"]["spec"]["containers"][0]["image"] = f"registry.example/{name}:1.{n}"
    return ClusterObserved(
        id=f"obs-{name}-{n}", source=EventSource.CLUSTER, resource=f"Deployment.apps/default/{name}", actor=by,
        effective_at=T0 + timedelta(seconds=n), revision=str(1000 + n),
        payload=ClusterObservedPayload(manifest=m, resource_version=str(1000 + n), change="modified",
                                       origin=cluster, attribution=attribution))


def history() -> list[AnyEvent]:
    """Versions of three objects, interleaved, from two clusters and three kinds of evidence,
    Git's desired versions of them, and a deletion."""
    events: list[AnyEvent] = [applied(i, manifest=deployment(name)) for i, name in enumerate(("web", "api", "db"))]
    for n in range(1, 25):
        for name in ("web", "api", "db"):
            by, attribution = [("alice", "audit"), (None, "unknown"), ("gitops", "reconciler")][n % 3]
            events.append(version(n, name, by=by, attribution=attribution,
                                  cluster="cluster:east" if name != "db" else "cluster:west"))
    events.append(ClusterDeleted(id="del-db", source=EventSource.CLUSTER, resource="Deployment.apps/default/db",
                                 effective_at=T0 + timedelta(seconds=30),
                                 payload=ClusterDeletedPayload(resource_version="2000", origin="cluster:west")))
    return events


def answers(log: EventLog) -> dict[str, Any]:
    """What the queries of the commands answer on ``log``."""
    at = T0 + timedelta(seconds=12)
    return {
        "read": [r.event for r in log.read()],
        "verify": (log.verify().ok, log.verify().head_hash),
        "by alice": [r.seq for r in log.read(actor="alice")],
        "not reconciler": [r.seq for r in log.read(not_attribution="reconciler")],
        "east": [r.seq for r in log.read(clusters=["cluster:east"])],
        "out of band": [r.seq for r in log.read(out_of_band=True)],
        "audit": list(log.read_audit()),
        "audit out of band": list(log.read_audit(out_of_band=True)),
        "count": log.count_where(types=["cluster.observed"], not_attribution="audit"),
        "actual at": [(r.seq, r.event) for r in log.state_at("actual", at=at)],
        "desired now": [(r.seq, r.event) for r in log.current("desired")],
        "actual now": [(r.seq, r.event) for r in log.current("actual")],
        "payloads": list(log.current_payloads("actual", origin="cluster:east")),
        "stored": list(log.read_stored(resource="Deployment.apps/default/web")),
        "blame": blame(log, "Deployment.apps/default/web", Moment(at)),
        "projections": log.verify_projections(),
    }


def unpack_all(s: Store) -> int:
    """Store every packed row of ``s`` whole again, with the engine's own client: the log as a
    gitops from before packing wrote it. Returns how many rows it changed."""
    with s.open(create=False) as log:
        seqs = [r[0] for r in query(s, "SELECT seq FROM events WHERE packed IS NOT NULL ORDER BY seq")]
        texts = {seq: log.row(seq)["payload"] for seq in seqs}  # type: ignore[index]
    for seq, text in texts.items():
        write(s, "UPDATE events SET payload = ?, packed = NULL, base = NULL WHERE seq = ?", text, seq)
    return len(texts)


def test_the_versions_of_an_object_are_stored_as_small_deltas_and_read_back_whole(store: Store) -> None:
    events = history()
    with store.open() as log:
        log.append(events[:40])
        log.append(events[40:])
        assert [r.event for r in log.read()] == events
        assert log.verify().ok
        texts = {seq: len(log.row(seq)["payload"]) for seq in range(1, log.last_seq() + 1)}  # type: ignore[index]
    rows = query(store, "SELECT seq, type, resource, length(payload), length(packed), base FROM events ORDER BY seq")
    deltas = [r for r in rows if r[4] is not None]
    firsts: dict[tuple[str, str], int] = {}  # each object's first version, by event type: whole, the keyframe
    for seq, type_, resource, *_ in rows:
        firsts.setdefault((type_, resource), seq)
    assert all(r[4] is None and r[3] == texts[r[0]] for r in rows if r[0] in firsts.values())
    assert len(deltas) >= 60  # the versions after them: a keyframe starts again only when a delta grows too big
    for seq, type_, resource, kept, size, base in deltas:
        keyframe = next(r for r in rows if r[0] == base)
        assert keyframe[1:3] == (type_, resource) and keyframe[4] is None  # a whole row of the same object
        assert size * 8 < texts[seq], (seq, size)  # a delta: an eighth of the payload at most
        assert kept < 150  # the fields SQL reads, not the manifest


def test_every_query_answers_a_packed_log_as_it_answers_it_stored_whole(store: Store) -> None:
    with store.open() as log:
        log.append(history())
        packed = answers(log)
    assert unpack_all(store) > 60
    assert query(store, "SELECT count(*) FROM events WHERE packed IS NOT NULL")[0][0] == 0
    with store.open() as log:
        whole = answers(log)
    assert whole == packed
    assert packed["by alice"] and packed["out of band"] and packed["east"] and packed["actual at"]


def test_compact_packs_an_old_log_and_keeps_its_head(store: Store) -> None:
    stored = "SELECT sum(length(payload)) + sum(coalesce(length(packed), 0)) FROM events"
    with store.open() as log:
        log.append(history())
        before = answers(log)
    fresh = query(store, stored)[0][0]  # as written packed
    n = unpack_all(store)
    whole = query(store, stored)[0][0]
    with store.open() as log:
        result = compact_log(log, batch=7)
        assert result.packed == n
        assert result.head is not None and result.head[1] == before["verify"][1]
        assert answers(log) == before
    compacted = query(store, stored)[0][0]
    assert compacted * 3 < whole and compacted == fresh  # packed as the same events written now would be
    with store.open() as log:
        assert compact_log(log).packed == 0  # nothing left to pack: a second run is harmless


def test_compact_refuses_a_log_that_does_not_verify(store: Store) -> None:
    with store.open() as log:
        log.append(history())
    unpack_all(store)
    write(store, "UPDATE events SET actor = 'mallory' WHERE seq = 9")
    with store.open() as log, pytest.raises(StoreError, match=r"does not verify .*seq 9"):
        compact_log(log)
    assert query(store, "SELECT count(*) FROM events WHERE packed IS NOT NULL")[0][0] == 0


def _delta(store: Store) -> tuple[int, int, str]:
    """(seq, base, payload text) of a delta of the log."""
    seq, base = query(store, "SELECT seq, base FROM events WHERE base IS NOT NULL ORDER BY seq LIMIT 1")[0]
    with store.open(create=False) as log:
        return int(seq), int(base), str(log.row(seq)["payload"])  # type: ignore[index]


@pytest.mark.parametrize("how", ["re-deflated", "another keyframe", "cut short", "fields SQL reads"])
def test_verify_finds_a_packed_row_changed(store: Store, how: str) -> None:
    with store.open() as log:
        log.append(history())
    seq, base, text = _delta(store)
    if how == "re-deflated":  # what an attacker who knows the format does: a new text, deflated as gitops would
        with store.open(create=False) as log:
            zdict = log.row(base)["payload"].encode()  # type: ignore[index]
        c = zlib.compressobj(6, zdict=zdict)
        forged = text.replace("registry.example/", "evil.example/")
        assert forged != text
        write(store, "UPDATE events SET packed = ? WHERE seq = ?", c.compress(forged.encode()) + c.flush(), seq)
    elif how == "another keyframe":
        other = query(store, "SELECT seq FROM events WHERE packed IS NULL AND length(payload) > 384 AND seq <> ? "
                             "ORDER BY seq LIMIT 1", base)[0][0]  # another object's keyframe
        write(store, "UPDATE events SET base = ? WHERE seq = ?", other, seq)
    elif how == "cut short":
        (blob,) = query(store, "SELECT packed FROM events WHERE seq = ?", seq)[0]
        write(store, "UPDATE events SET packed = ? WHERE seq = ?", bytes(blob)[:-6], seq)
    else:  # hide the row from the queries that read attribution, the hashed text left as it was
        write(store, "UPDATE events SET payload = ? WHERE seq = ?", '{"origin":"cluster:east","attribution":"x"}',
              seq)
    with store.open(create=False) as log:
        result = log.verify()
    assert not result.ok and (result.first_bad_seq, result.reason) == (seq, "modified"), result


def test_a_packed_row_that_does_not_unpack_is_one_readable_error(store: Store) -> None:
    with store.open() as log:
        log.append(history())
    seq, _, _ = _delta(store)
    write(store, "UPDATE events SET packed = ? WHERE seq = ?", b"not deflate", seq)
    if store.kind == "sqlite":  # text where bytes were (SQLite keeps either in any column)
        write(store, "UPDATE events SET packed = CAST(packed AS TEXT) WHERE seq = ?", seq)
    with store.open(create=False) as log:
        with pytest.raises(CorruptDatabaseError, match=f"seq {seq}"):
            list(log.read())
        with pytest.raises(CorruptDatabaseError, match=f"seq {seq}"):
            list(log.read_stored())
    if store.kind == "sqlite":  # and from the command line: one line, no traceback
        res = gitops("log", "-o", "json", db=Path(store.location))
        one_failure_line(res)
        assert f"seq {seq}" in res.stderr


def test_read_stored_gives_each_event_as_stored_without_its_model(store: Store) -> None:
    """What blame reads: each event's stored fields and its payload's JSON, for deltas and
    whole rows alike, as the engine's own client reads them (the packed ones unpacked)."""
    with store.open() as log:
        log.append(history())
        texts = {seq: log.row(seq)["payload"] for seq in range(1, log.last_seq() + 1)}  # type: ignore[index]
        stored = list(log.read_stored(types=["cluster.observed", "cluster.deleted"], actor="alice"))
        everything = list(log.read_stored())
    rows = query(store, "SELECT seq, type, actor, effective_at, recorded_at FROM events WHERE actor = ? AND type "
                 "IN ('cluster.observed', 'cluster.deleted') ORDER BY seq", "alice")
    assert [tuple(s[:5]) for s in stored] == [tuple(r) for r in rows] and len(rows) == 24
    assert [s.seq for s in everything] == sorted(texts) and len(texts) == len(history())
    assert all(s.payload == json.loads(texts[s.seq]) for s in everything)
    assert any(r[0] for r in query(store, "SELECT packed IS NOT NULL FROM events WHERE actor = ?", "alice"))


def test_blame_of_a_version_changed_outside_gitops_is_one_readable_error(store: Store) -> None:
    """Blame reads versions without their models; a version whose payload lost what blame
    reads is the error a read of the event gives, naming its seq, not a crash."""
    with store.open() as log:
        log.append(history())
    seq = query(store, "SELECT seq FROM events WHERE resource = ? AND type = 'desired.applied' AND packed IS NULL",
                "Deployment.apps/default/web")[0][0]  # its one version: no delta is made against it
    write(store, "UPDATE events SET payload = ? WHERE seq = ?", '{"commit":"abc"}', seq)
    with store.open(create=False) as log, pytest.raises(CorruptDatabaseError, match=f"event seq {seq} cannot"):
        blame(log, "Deployment.apps/default/web", Moment(T0 + timedelta(days=1)))


def test_a_keyframe_of_a_rolled_back_append_is_forgotten(store: Store) -> None:
    """The append that packed a new object's first version failed: the next version, in the
    next transaction, is not a delta against that seq (which another writer has taken since)."""
    with store.open() as log, store.open() as other:
        def fail(cur: object, appended: object) -> None:
            raise RuntimeError("the hook failed")

        log.add_hook(fail)
        with pytest.raises(RuntimeError):
            log.append([version(1, "web")])
        log._hooks.clear()
        other.append([applied(7, manifest=deployment("elsewhere"))])  # takes the seq the failed append had
        log.append([version(2, "web"), version(3, "web")])
        assert [r.event for r in log.read(resource="Deployment.apps/default/web")] == [version(2, "web"),
                                                                                      version(3, "web")]
        assert log.verify().ok


def test_small_payloads_and_first_versions_are_stored_whole(store: Store) -> None:
    with store.open() as log:
        log.append(history())
        sizes = {seq: len(log.row(seq)["payload"]) for seq in range(1, log.last_seq() + 1)}  # type: ignore[index]
    rows = query(store, "SELECT seq, type, resource, packed IS NULL, length(payload) FROM events ORDER BY seq")
    seen: set[tuple[str, str]] = set()
    for seq, type_, resource, whole, stored in rows:
        first = (type_, resource) not in seen
        seen.add((type_, resource))
        if first or sizes[seq] < PACK_MIN:
            assert whole and stored == sizes[seq], seq


def test_gitops_compact_on_a_file(tmp_path: Path) -> None:
    s = Store("sqlite", tmp_path / "gitops.db")
    with s.open() as log:
        for n in range(1, 200):
            log.append([version(n, name) for name in ("web", "api")])
        head = log.row(log.last_seq())
    unpack_all(s)
    with sqlite3.connect(s.location) as c:
        c.execute("VACUUM")
    size = s.location.stat().st_size  # type: ignore[union-attr]
    res = gitops("--db", str(s.location), "compact")
    assert res.returncode == 0, res.stderr
    assert f"head seq {head['seq']} {head['hash']} unchanged" in res.stdout  # type: ignore[index]
    assert "packed 396 payloads" in res.stdout  # all but the first version of each object, the keyframes
    assert s.location.stat().st_size < size * 0.85  # type: ignore[union-attr]  # the payloads' share of the file
    res = gitops("--db", str(s.location), "verify")
    assert res.returncode == 0 and "log intact" in res.stdout


def test_a_postgresql_log_of_the_schema_before_packing_is_upgraded_by_init(postgres_db: str) -> None:
    """A database as gitops wrote it before packing (schema version 1: no packed, base,
    events_base or blob), made here from the current one with PostgreSQL's own client: a
    command that only reads says to run init; init upgrades it once; then it packs."""
    s = Store("postgresql", postgres_db)
    with s.open() as log:
        log.append(history()[:10])
        head = log.row(log.last_seq())
    unpack_all(s)
    with psycopg.connect(postgres_db, autocommit=True) as c:
        c.execute("DROP INDEX events_base")
        c.execute("ALTER TABLE events DROP COLUMN packed")
        c.execute("ALTER TABLE events DROP COLUMN base")
        c.execute("DROP DOMAIN blob")
        c.execute("UPDATE gitops_schema SET version = 1")
    with pytest.raises(StoreError, match="schema version 1; run 'gitops init"):
        s.open(create=False)
    res = gitops("--db", postgres_db, "init")
    assert res.returncode == 0, res.stderr
    assert query(s, "SELECT version FROM gitops_schema") == [(2,)]
    with s.open(create=False) as log:
        assert log.row(head["seq"]) == head  # type: ignore[index]
        assert log.verify().ok
    with s.open() as log:
        log.append(history()[10:])
        assert [r.event for r in log.read()] == history()
    assert query(s, "SELECT count(*) FROM events WHERE packed IS NOT NULL")[0][0] > 30
    res = gitops("--db", postgres_db, "compact")  # the rows from before the upgrade
    assert res.returncode == 0 and "VACUUM FULL events" in res.stdout, res.stdout + res.stderr
    with s.open(create=False) as log:
        assert [r.event for r in log.read(until_seq=len(history()))] == history() and log.verify().ok


def test_a_sqlite_log_of_the_schema_before_packing_is_upgraded_then_compacted(tmp_path: Path) -> None:
    """A file as gitops wrote it before packing (schema version 7), made here from a current
    one with SQLite's own client: a command that only reads says to run init; init upgrades
    it with every row as it was; compact then packs it with its head unchanged."""
    s = Store("sqlite", tmp_path / "gitops.db")
    with s.open() as log:
        log.append(history())
        head = log.row(log.last_seq())
    unpack_all(s)
    with sqlite3.connect(s.location) as c:
        c.execute("DROP INDEX events_base")
        c.execute("ALTER TABLE events DROP COLUMN packed")
        c.execute("ALTER TABLE events DROP COLUMN base")
        c.execute("PRAGMA user_version = 7")
    res = gitops("log", db=Path(s.location))
    one_failure_line(res)
    assert "run 'gitops init' to upgrade it" in res.stderr
    res = gitops("init", db=Path(s.location))
    assert res.returncode == 0 and "schema version 8" in res.stdout, res.stdout + res.stderr
    assert query(s, "SELECT count(*) FROM events WHERE packed IS NOT NULL") == [(0,)]
    res = gitops("compact", db=Path(s.location))
    assert res.returncode == 0, res.stderr
    assert f"head seq {head['seq']} {head['hash']} unchanged" in res.stdout  # type: ignore[index]
    with s.open(create=False) as log:
        assert [r.event for r in log.read(until_seq=head["seq"])] == history()  # type: ignore[index]
        assert [r.event.payload.command for r in log.read(since_seq=head["seq"])] == ["compact"]  # type: ignore
        assert log.verify().ok
    assert query(s, "SELECT count(*) FROM events WHERE packed IS NOT NULL")[0][0] > 60


def test_each_writer_finds_the_keyframes_in_the_log(store: Store) -> None:
    """Every batch appended by a writer that never saw the object before (a process of its
    own, an empty memory): its keyframes are found in the log, in one lookup for the batch."""
    events = history()
    for start in range(0, len(events), 9):
        with store.open() as log:
            log.append(events[start:start + 9])
    with store.open(create=False) as log:
        assert [r.event for r in log.read()] == events
        assert log.verify().ok
    rows = query(store, "SELECT seq, type, resource, base FROM events ORDER BY seq")
    bases = {r[0]: r for r in rows}
    deltas = [r for r in rows if r[3] is not None]
    assert len(deltas) >= 60
    assert all(bases[b][1:3] == (t, res) and bases[b][3] is None and b < s for s, t, res, b in deltas)


def test_a_packed_log_is_copied_as_it_is_stored(tmp_path: Path, postgres_db: str) -> None:
    """gitops copy, SQLite to PostgreSQL and back: deltas stay deltas of the same keyframes,
    every event reads back the same, and the head is the original's."""
    from gitops.store.copy import copy_log

    first, pg, back = (Store("sqlite", tmp_path / "a.db"), Store("postgresql", postgres_db),
                       Store("sqlite", tmp_path / "b.db"))
    with first.open() as log:
        log.append(history())
        head = log.verify().head_hash
    for source, target in ((first, pg), (pg, back)):
        with source.open(create=False, read_only=True) as src, target.open() as dst:
            assert copy_log(src, dst, batch=13).head == (len(history()), head)
    stored = "SELECT seq, payload, packed, base FROM events ORDER BY seq"
    rows = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in query(first, stored)]
    assert sum(1 for r in rows if r[3] is not None) >= 60
    assert [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in query(pg, stored)] == rows
    assert query(back, stored) == rows
    with back.open(create=False) as log:
        assert [r.event for r in log.read()] == history() and log.verify().head_hash == head


def test_gitops_compact_bad_input_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "gitops.db"
    res = gitops("compact", db=db)  # no log there: none is made
    one_failure_line(res)
    assert "no gitops database" in res.stderr and not db.exists()
    s = Store("sqlite", db)
    with s.open() as log:
        log.append(history())
    before = query(s, "SELECT seq, payload, packed FROM events ORDER BY seq")
    one_failure_line(gitops("compact", "--batch", "0", db=db), code=2)  # refused before anything is read
    write(s, "UPDATE events SET actor = 'mallory' WHERE seq = 9")
    res = gitops("compact", db=db)  # a log that does not verify is left as it is
    one_failure_line(res)
    assert "does not verify" in res.stderr and "seq 9" in res.stderr
    after = query(s, "SELECT seq, payload, packed FROM events ORDER BY seq")
    assert after == before  # no row packed, no operator event recorded by either refusal
