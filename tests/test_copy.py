"""``gitops copy``: a SQLite log moved to PostgreSQL with every hash unchanged, resumed after
a kill -9, and refused where it would carry a tampered row or mix two logs. Checked with
``gitops verify`` of both (as an auditor would) and with the engines' own clients."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from gitops.store import Checkpoint, EventLog
from tests.cli_helpers import gitops, one_failure_line
from tests.helpers import applied
from tests.test_store_contract import deleted, observed

EVENTS = 6_000


def make_log(path: Path, n: int = EVENTS) -> None:
    with EventLog(path) as log:
        for k in range(0, n, 500):
            batch: list[Any] = [applied(i) for i in range(k, k + 497)]
            batch += [observed(k + 497, f"app-{k}"),
                      observed(k + 498, f"app-{k + 1}", by="gitops", attribution="reconciler"),
                      deleted(k + 499, f"app-{k}")]
            log.append(batch, checkpoint=Checkpoint("git:repo#main", {"batch": k}))


def verified(db: str | Path) -> dict[str, Any]:
    """What ``gitops verify`` says of the log at ``db`` (a file or a URL)."""
    res = subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), "--read-only", "verify", "-o", "json"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def settled(url: str, timeout: float = 60) -> None:
    """Wait until no other session is connected to the database at ``url``: a client killed
    with SIGKILL may have sent a COMMIT that its server process still carries out after the
    client is gone, so what was copied is known only once that process has ended."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as c:
        while c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()").fetchone()[0]:  # type: ignore[index]
            assert time.monotonic() < deadline, "the killed copy's server sessions did not end"
            time.sleep(0.02)


def pg_count(url: str) -> int:
    with psycopg.connect(url) as c:
        if not c.execute("SELECT to_regclass('events') IS NOT NULL").fetchone()[0]:  # type: ignore[index]
            return 0
        return int(c.execute("SELECT count(*) FROM events").fetchone()[0])  # type: ignore[index]


def test_a_copy_killed_midway_resumes_and_keeps_every_hash(tmp_path: Path, postgres_db: str) -> None:
    db = tmp_path / "gitops.db"
    make_log(db)
    cmd = [sys.executable, "-m", "gitops", "copy", "--from", str(db), "--to", postgres_db, "--batch", "100"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while pg_count(postgres_db) < 1_000 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    settled(postgres_db)
    partial = pg_count(postgres_db)
    assert 0 < partial < EVENTS and partial % 100 == 0  # whole batches only: each one transaction
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"copied {EVENTS - partial} events (resumed after seq {partial})" in res.stdout
    ours, theirs = verified(db), verified(postgres_db)
    assert ours["ok"] and theirs["ok"]
    assert ours["last_seq"] == EVENTS
    assert (theirs["last_seq"], theirs["head_hash"], theirs["merkle_root"]) == \
        (ours["last_seq"], ours["head_hash"], ours["merkle_root"])
    with sqlite3.connect(db) as s, psycopg.connect(postgres_db) as p:
        for sql in ("SELECT seq, id, recorded_at, payload, hash FROM events ORDER BY seq",
                    "SELECT name, value, seq FROM checkpoints ORDER BY name",
                    "SELECT side, origin, resource, seq, present FROM current_state ORDER BY side, origin, resource",
                    "SELECT seq, fields FROM changes ORDER BY seq"):
            assert [tuple(r) for r in s.execute(sql)] == [tuple(r) for r in p.execute(sql.encode())], sql
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0 and "copied 0 events" in again.stdout


def test_a_tampered_source_is_not_carried_over(tmp_path: Path, postgres_db: str) -> None:
    db = tmp_path / "gitops.db"
    make_log(db, 1_000)
    with sqlite3.connect(db) as c:
        c.execute("UPDATE events SET actor = 'mallory' WHERE seq = 700")
    res = gitops("copy", "--from", str(db), "--to", postgres_db, "--batch", "100")
    one_failure_line(res)
    assert "is not intact at seq 700" in res.stderr and "nothing after seq 699 was copied" in res.stderr
    assert pg_count(postgres_db) == 600  # the batches before the bad one's


def test_copying_into_another_log_is_refused(tmp_path: Path) -> None:
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    make_log(first, 500)
    with EventLog(second) as log:
        log.append([applied(9_999)])
    res = gitops("copy", "--from", str(first), "--to", str(second))
    one_failure_line(res)
    assert "is not a copy of" in res.stderr and "differ at seq 1" in res.stderr
    same = gitops("copy", "--from", str(first), "--to", str(first))
    one_failure_line(same, 2)
