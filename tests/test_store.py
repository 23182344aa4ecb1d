from __future__ import annotations

import gc
import multiprocessing
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gitops.model import NotAGitOpsDatabaseError, SchemaTooNewError, StoreError
from gitops.store import Appended, Checkpoint, EventLog
from gitops.store.migrate import latest_version
from gitops.store.wal import WRITER_AUTOCHECKPOINT
from tests.helpers import T0, applied, deployment


def test_append_assigns_seq_and_non_decreasing_recorded_at(log: EventLog) -> None:
    first = log.append([applied(i) for i in range(5)])
    second = log.append([applied(i) for i in range(5, 8)])
    seqs = [a.seq for a in first + second]
    assert seqs == list(range(1, 9))
    stored = list(log.read())
    assert [r.seq for r in stored] == seqs
    times = [r.recorded_at for r in stored]
    assert times == sorted(times)
    assert stored[0].event == applied(0)


def test_append_is_idempotent_by_id_and_returns_only_what_was_new(log: EventLog) -> None:
    assert len(log.append([applied(i) for i in range(3)])) == 3
    again = log.append([applied(i) for i in range(5)] + [applied(4)])
    assert [a.event.id for a in again] == [applied(3).id, applied(4).id]
    assert log.append([applied(i) for i in range(5)]) == []
    assert log.count() == 5
    assert log.verify().ok


def test_checkpoint_is_written_with_its_events(log: EventLog) -> None:
    log.append([applied(1)], checkpoint=Checkpoint("git:repo#main", {"commit": "a"}))
    assert log.checkpoint("git:repo#main") == {"commit": "a"}
    log.append([], checkpoint=[Checkpoint("git:repo#main", {"commit": "b"}), Checkpoint("cluster:x", "42")])
    assert log.checkpoints() == {"cluster:x": "42", "git:repo#main": {"commit": "b"}}
    assert log.checkpoint("missing") is None


def test_a_failure_inside_the_transaction_leaves_neither_events_nor_checkpoint(log: EventLog) -> None:
    def failing_projection(cur: sqlite3.Cursor, appended: list[Appended]) -> None:
        raise RuntimeError("projection failed")

    log.append([applied(0)], checkpoint=Checkpoint("src", 1))
    log.add_hook(failing_projection)
    with pytest.raises(RuntimeError, match="projection failed"):
        log.append([applied(1), applied(2)], checkpoint=Checkpoint("src", 2))
    assert log.count() == 1
    assert log.checkpoint("src") == 1
    assert log.verify().ok


def test_append_leaves_the_garbage_collector_as_it_found_it(log: EventLog) -> None:
    """append pauses the cyclic collector while it writes; it must switch it back on, on
    success and on failure, and must not switch on one its caller had switched off."""
    assert gc.isenabled()
    log.append([applied(1)])
    assert gc.isenabled()
    good = applied(2)
    unstorable = good.model_copy(update={"payload": good.payload.model_copy(update={"manifest": {"x": object()}})})
    with pytest.raises(TypeError):
        log.append([unstorable])  # fails half-way through the write
    assert gc.isenabled()
    gc.disable()
    try:
        log.append([applied(3)])
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert [r.event.id for r in log.read()] == [applied(1).id, applied(3).id]


def test_hooks_see_the_new_events_in_the_same_transaction(log: EventLog) -> None:
    log.conn.execute("CREATE TABLE seen (seq INTEGER)")

    def projection(cur: sqlite3.Cursor, appended: list[Appended]) -> None:
        cur.executemany("INSERT INTO seen VALUES (?)", [(a.seq,) for a in appended])

    log.add_hook(projection)
    log.append([applied(i) for i in range(3)])
    log.append([applied(i) for i in range(4)])
    assert [r[0] for r in log.conn.execute("SELECT seq FROM seen ORDER BY seq")] == [1, 2, 3, 4]


def test_reads_filter_by_seq_type_resource_actor_and_time(log: EventLog) -> None:
    log.append([applied(i, actor="ann@example.com" if i % 2 else "bob@example.com") for i in range(10)])
    assert [r.seq for r in log.read(since_seq=7)] == [8, 9, 10]
    assert [r.seq for r in log.read(since_seq=2, until_seq=4)] == [3, 4]
    assert [r.seq for r in log.read(resource=applied(3).resource)] == [4]
    assert [r.seq for r in log.read(actor="ann@example.com")] == [2, 4, 6, 8, 10]
    assert [r.seq for r in log.read(types=["git.commit"])] == []
    assert len(list(log.read(types=["desired.applied"]))) == 10
    assert [r.seq for r in log.read(start=T0 + timedelta(seconds=2), end=T0 + timedelta(seconds=4))] == [3, 4]
    recorded = list(log.read(time_axis="recorded", end=T0))
    assert recorded == []
    assert [r.seq for r in log.read(limit=2, descending=True)] == [10, 9]


def test_reads_are_streamed() -> None:
    import inspect

    assert inspect.isgeneratorfunction(EventLog.read)


def _tamper(path: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(sql, params)


@pytest.mark.parametrize(
    ("sql", "bad_seq", "reason"),
    [
        ("UPDATE events SET payload = replace(payload, 'app-4', 'app-x') WHERE seq = 5", 5, "modified"),
        ("UPDATE events SET payload = json_set(payload, '$.origin', 'elsewhere') WHERE seq = 5", 5, "modified"),
        ("UPDATE events SET actor = 'mallory' WHERE seq = 3", 3, "modified"),
        ("UPDATE events SET hash = 'x' || substr(hash, 2) WHERE seq = 7", 7, "modified"),
        ("DELETE FROM events WHERE seq = 4", 4, "missing"),
        ("DELETE FROM events WHERE seq >= 9", 9, "truncated"),
        ("UPDATE events SET seq = seq + 100 WHERE seq IN (5, 6)", 5, "missing"),
    ],
)
def test_verify_names_the_first_bad_seq(db_path: Path, sql: str, bad_seq: int, reason: str) -> None:
    with EventLog(db_path) as log:
        log.append([applied(i) for i in range(10)])
        assert log.verify().ok
    _tamper(db_path, sql)
    with EventLog(db_path) as log:
        result = log.verify()
    assert not result.ok
    assert (result.first_bad_seq, result.reason) == (bad_seq, reason)
    assert f"seq {bad_seq}" in result.describe()


def test_verify_detects_two_rows_swapped(db_path: Path) -> None:
    with EventLog(db_path) as log:
        log.append([applied(i) for i in range(6)])
    with sqlite3.connect(db_path) as conn:  # move rows 3 and 4 to each other's place, intact
        conn.execute("UPDATE events SET seq = -3 WHERE seq = 3")
        conn.execute("UPDATE events SET seq = 3 WHERE seq = 4")
        conn.execute("UPDATE events SET seq = 4 WHERE seq = -3")
    with EventLog(db_path) as log:
        result = log.verify()
    assert (result.ok, result.first_bad_seq, result.reason) == (False, 3, "reordered")


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    before = path.read_bytes()
    with pytest.raises(NotAGitOpsDatabaseError, match="not a gitops database"):
        EventLog(path)
    assert path.read_bytes() == before


def test_sqlite_of_another_program_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
    before = path.read_bytes()
    with pytest.raises(NotAGitOpsDatabaseError, match="another program"):
        EventLog(path)
    assert path.read_bytes() == before


def test_a_newer_schema_is_refused(db_path: Path) -> None:
    EventLog(db_path).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    with pytest.raises(SchemaTooNewError, match="newer than this gitops"):
        EventLog(db_path)


def test_opening_without_create_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="gitops init"):
        EventLog(tmp_path / "absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()


def test_schema_is_versioned_and_wal(log: EventLog) -> None:
    assert log.conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    assert log.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _append_worker(path: str, start: int, count: int) -> None:
    with EventLog(path) as log:
        for i in range(start, start + count, 5):
            log.append([applied(j) for j in range(i, i + 5)], checkpoint=Checkpoint(f"w{start}", i))


def test_two_processes_appending_at_once_both_succeed(db_path: Path) -> None:
    EventLog(db_path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_worker, args=(str(db_path), s, 200)) for s in (0, 1000)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with EventLog(db_path) as log:
        assert log.count() == 400
        assert log.verify().ok
        assert [r.seq for r in log.read()] == list(range(1, 401))
        assert log.checkpoints() == {"w0": 195, "w1000": 1195}


def _big(i: int, size: int) -> Any:
    m = deployment(f"big-{i}")
    m["metadata"]["annotations"] = {"note": "x" * size}
    return applied(i, manifest=m)


def test_the_wal_is_checkpointed_in_the_background_and_stays_bounded(db_path: Path) -> None:
    """gitops.store.wal: the log's own thread copies the WAL into the database file as it
    grows, before the writer's inline bound is reached, and the WAL stays below that bound
    (plus what is written while one checkpoint runs, before the writer waits for it) however
    much is written: without that wait a slow disk took it past 80 MB."""
    wal = Path(f"{db_path}-wal")
    with EventLog(db_path) as log:
        log.append([_big(i, 1000) for i in range(10_000, 10_010)])
        small = db_path.stat().st_size
        for start in range(0, 400, 20):  # about 20 MB: half the inline bound
            log.append([_big(i, 50_000) for i in range(start, start + 20)])
        assert log.wal_idle(timeout=60)
        assert db_path.stat().st_size > small + 15_000_000  # copied by the thread, not inline
        assert any(t.name.startswith("wal-checkpoint:") for t in threading.enumerate())
        for start in range(400, 1400, 20):  # 50 MB more
            log.append([_big(i, 50_000) for i in range(start, start + 20)])
            assert wal.stat().st_size < (WRITER_AUTOCHECKPOINT + 2000) * 4096
        assert log.count() == 1410
        assert log.verify().ok
    assert not any(t.name.startswith("wal-checkpoint:") for t in threading.enumerate())  # close stops it


def test_a_log_that_only_reads_starts_no_thread(db_path: Path) -> None:
    with EventLog(db_path) as log:
        log.append([applied(1)])
    before = threading.active_count()
    with EventLog(db_path) as log:
        assert log.count() == 1 and log.verify().ok
        assert threading.active_count() == before


def test_the_wal_thread_never_creates_a_database_where_the_file_has_gone(db_path: Path) -> None:
    with EventLog(db_path) as log:
        log.append([_big(0, 1000)])
        db_path.unlink()  # the writer keeps its open file; nothing may appear at the path
        for start in range(1, 241, 40):  # past the thread's threshold three times: it starts, fails, restarts
            log.append([_big(i, 50_000) for i in range(start, start + 40)])
            assert log.wal_idle(timeout=60)
            assert not db_path.exists()


def test_the_wal_thread_finds_the_database_after_a_change_of_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    with EventLog("gitops.db") as log:  # relative, as the CLI's default is
        log.append([_big(0, 1000)])
        monkeypatch.chdir(tmp_path / "b")  # before the thread has started
        small = (tmp_path / "a" / "gitops.db").stat().st_size
        for start in range(1, 241, 40):
            log.append([_big(i, 50_000) for i in range(start, start + 40)])
        assert log.wal_idle(timeout=60)
        assert (tmp_path / "a" / "gitops.db").stat().st_size > small + 5_000_000
    assert list((tmp_path / "b").iterdir()) == []
