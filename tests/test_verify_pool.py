"""``verify`` of a big log in chunks on several processes (gitops.store.verify_pool), and the
same shared between a worker and this process (``SharedCheck``: a report's), say exactly
what one pass over the rows says: for an intact log (the Merkle root, and the roots
at sizes inside and at the edges of chunks) and for each way a row can be tampered with,
at a chunk's first row, its last, and inside it. Real SQLite files, changed with sqlite3
as an attacker would, and real worker processes; chunks of 4 seqs so that 37 events make
ten of them."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from gitops.store import EventLog
from gitops.store.chain import FIELDS, row_hash
from gitops.store.verify_pool import SharedCheck, verify_file
from tests.helpers import applied

N = 37
BITS = 2
SIZES = {1, 3, 4, 5, 8, 9, 20, 36, 37}


@pytest.fixture(scope="module")
def intact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("pool") / "log.db"
    with EventLog(db) as log:
        for start in range(0, N, 10):  # a few appends, as sources write them
            log.append([applied(i, commit=f"{i // 3:040x}") for i in range(start, min(N, start + 10))])
    return db


def both(db: Path) -> tuple[object, object]:
    """(one pass, chunks on two processes) over the file as it is; the chunks shared between
    a worker and this process (``SharedCheck``) are checked to give the same answer too."""
    with EventLog(db, create=False, read_only=True) as log:
        one = log.verify(at_sizes=SIZES, parallel=False)
        cur = log.conn.cursor()
        cur.execute("BEGIN")
        head = cur.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
        tree = log.tree()
        stored = (tree.size, tree.root())
        last = int(cur.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
        cur.execute("ROLLBACK")
    chunked = verify_file(db, False, last, head, tree=stored, at_sizes=SIZES, bits=BITS, workers=2)
    shared = SharedCheck.start(db, False, last, head, tree=stored, at_sizes=SIZES, bits=BITS)
    assert shared is not None
    try:
        assert shared.finish() == one  # at once: the worker has the first chunks, this process the rest
    finally:
        shared.close()
    if last == N:  # the intact log's ten chunks: some were checked here (the worker starts ~0.1 s later)
        assert shared.here > 0
    return one, chunked


def attacked(intact: Path, tmp_path: Path, sql: str, *params: object) -> Path:
    db = tmp_path / "attacked.db"
    with EventLog(intact, create=False, read_only=True) as log:
        log.conn.execute("VACUUM INTO ?", (str(db),))
    with closing(sqlite3.connect(db)) as conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')  # what keeps gitops itself from editing rows
        conn.execute(sql, params)
        conn.commit()
    return db


def test_an_intact_log_gives_the_same_answer_and_merkle_roots(intact: Path) -> None:
    one, chunked = both(intact)
    assert chunked == one
    assert one.ok and one.checked == N and set(one.roots) == SIZES  # type: ignore[attr-defined]


def _relinked(db: Path, seq: int) -> None:
    """Row ``seq`` linked to the wrong row before it, its own hash recomputed: intact, out of chain."""
    with closing(sqlite3.connect(db)) as conn:
        values = conn.execute(f"SELECT {', '.join(FIELDS)} FROM events WHERE seq = ?", (seq,)).fetchone()
        wrong = "ab" * 32
        conn.execute("UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?", (wrong, row_hash(wrong, values), seq))
        conn.commit()


ATTACKS: dict[str, tuple[str, Callable[[int], tuple[object, ...]]]] = {
    "modified": ("UPDATE events SET actor = 'mallory' WHERE seq = ?", lambda s: (s,)),
    "missing": ("DELETE FROM events WHERE seq = ?", lambda s: (s,)),
    "missing two": ("DELETE FROM events WHERE seq IN (?, ?)", lambda s: (s, s + 1)),
    "missing a chunk": ("DELETE FROM events WHERE seq BETWEEN ? AND ?", lambda s: (s, s + 4)),
    "cut tail": ("DELETE FROM events WHERE seq >= ?", lambda s: (s,)),
}


@pytest.mark.parametrize("seq", [1, 2, 4, 5, 8, 9, 12, 33, 36])  # a chunk's first row, its last, inside
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_each_attack_is_found_at_the_same_row_with_the_same_words(intact: Path, tmp_path: Path, attack: str,
                                                                  seq: int) -> None:
    sql, params = ATTACKS[attack]
    one, chunked = both(attacked(intact, tmp_path, sql, *params(seq)))
    assert chunked == one
    assert not one.ok  # type: ignore[attr-defined]


@pytest.mark.parametrize("seq", [2, 4, 5, 13, 37])
def test_a_row_linked_out_of_chain_is_found_the_same(intact: Path, tmp_path: Path, seq: int) -> None:
    db = attacked(intact, tmp_path, "SELECT 1")
    _relinked(db, seq)
    one, chunked = both(db)
    assert chunked == one and one.reason == "reordered"  # type: ignore[attr-defined]


def test_a_stored_tree_that_does_not_match_and_two_faults_in_one_log(intact: Path, tmp_path: Path) -> None:
    db = attacked(intact, tmp_path, "UPDATE merkle_frontier SET hashes = zeroblob(length(hashes))")
    one, chunked = both(db)
    assert chunked == one and one.reason == "tree"  # type: ignore[attr-defined]
    (tmp_path / "two").mkdir()
    two = attacked(intact, tmp_path / "two", "UPDATE events SET actor = 'x' WHERE seq IN (11, 30)")
    one, chunked = both(two)
    assert chunked == one and one.first_bad_seq == 11  # type: ignore[attr-defined]


def test_a_damaged_page_met_by_the_shared_check_is_the_one_line_error(tmp_path: Path) -> None:
    """A page that does not read, met by a chunk of the report's shared check (here or in
    its worker), is the store's damaged-file error naming the page, as verify's is, not
    SQLite's own exception."""
    from gitops.model.errors import CorruptDatabaseError

    db = tmp_path / "log.db"
    with EventLog(db) as log:
        for start in range(0, 3000, 500):
            log.append([applied(i) for i in range(start, start + 500)])
    with db.open("r+b") as f:  # three pages of the events table overwritten
        f.seek(4096 * 40)
        f.write(b"\xab" * 4096 * 3)
    with EventLog(db, create=False, read_only=True) as log, \
            pytest.raises(CorruptDatabaseError, match=r"is damaged at page \d+"), log.verify_meanwhile() as verified:
        verified()
