"""Many writers, one log: 8 processes append at once (as ``gitops run`` per cluster,
``watch`` and ``ingest`` do on a shared PostgreSQL log) while a reader tails ``seq >
cursor``, on both adapters. The reader must see one gapless sequence, never an event before
every earlier one, and the log must be one hash chain at the end."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from gitops.model.errors import StoreError
from gitops.store import open_log
from tests.helpers import applied
from tests.postgres_fixtures import Store

WRITERS = 8
BATCHES = 25
BATCH = 4


def _write(location: str, writer: int) -> None:
    with open_log(location) as log:
        for b in range(BATCHES):
            base = writer * 10_000 + b * BATCH
            log.append([applied(base + i, commit=f"w{writer}") for i in range(BATCH)])


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_eight_writers_and_a_tailing_reader_see_one_gapless_order(kind: str, request: pytest.FixtureRequest,
                                                                  tmp_path: Path) -> None:
    location = str(tmp_path / "gitops.db") if kind == "sqlite" else request.getfixturevalue("postgres_db")
    store = Store(kind, location)
    total = WRITERS * BATCHES * BATCH
    spawn = multiprocessing.get_context("spawn")
    writers = [spawn.Process(target=_write, args=(location, w)) for w in range(WRITERS)]
    for p in writers:
        p.start()
    seen: list[int] = []
    reads = 0
    deadline = time.monotonic() + 60
    while True:  # the writers race to make the tables of the empty database: one does, the rest wait for it
        try:
            reader = store.open(create=False)
            break
        except StoreError:
            assert time.monotonic() < deadline, "no writer made the log"
            time.sleep(0.01)
    with reader:
        deadline = time.monotonic() + 300
        while len(seen) < total and time.monotonic() < deadline:
            cursor = seen[-1] if seen else 0
            batch = [r.seq for r in reader.read(since_seq=cursor)]
            reads += 1
            # what a tailing reader gets is always the next events, with none missing before them
            assert batch == list(range(cursor + 1, cursor + 1 + len(batch))), (cursor, batch[:5])
            seen += batch
            if not batch:
                time.sleep(0.005)
    for p in writers:
        p.join(60)
        assert p.exitcode == 0
    assert seen == list(range(1, total + 1))
    assert reads > 2  # it read while they wrote, not once at the end
    with store.open(create=False) as log:
        result = log.verify()
        assert result.ok and result.checked == total
        ids = [r.event.id for r in log.read()]
        assert len(set(ids)) == total
        # each writer's own events are in the order it appended them
        for w in range(WRITERS):
            mine = [int(str(r.event.resource).rsplit("-", 1)[1]) for r in log.read(commit_prefix=f"w{w}")]
            assert mine == [w * 10_000 + n for n in range(BATCHES * BATCH)]


def _open_at(location: str, start: float) -> str:
    while time.time() < start:  # all at once
        pass
    try:
        open_log(location).close()
        return "ok"
    except StoreError as e:
        return str(e)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_processes_opening_an_empty_log_at_once_all_open_it(kind: str, request: pytest.FixtureRequest,
                                                           tmp_path: Path) -> None:
    """Every gitops of a fleet may be the first to open the shared log: one makes the tables,
    the others wait for it and use them."""
    location = str(tmp_path / "gitops.db") if kind == "sqlite" else request.getfixturevalue("postgres_db")
    start = time.time() + 1.5  # after the processes have started
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        assert pool.starmap(_open_at, [(location, start)] * 6) == ["ok"] * 6
    with open_log(location, create=False) as log:
        assert log.count() == 0 and log.verify().ok
