"""Many writers, one log: 8 processes append at once (as ``gitops run`` per cluster,
``watch`` and ``ingest`` do on a shared PostgreSQL log) while a reader tails ``seq >
cursor``, on both adapters. The reader must see one gapless sequence, never an event before
every earlier one, and the log must be one hash chain at the end."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from gitops.store import open_log
from tests.helpers import applied
from tests.test_store_contract import Store

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
    with store.open() as log:  # the tables exist before the writers race to make them
        assert log.count() == 0
    total = WRITERS * BATCHES * BATCH
    spawn = multiprocessing.get_context("spawn")
    writers = [spawn.Process(target=_write, args=(location, w)) for w in range(WRITERS)]
    for p in writers:
        p.start()
    seen: list[int] = []
    reads = 0
    with store.open(create=False) as reader:
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
