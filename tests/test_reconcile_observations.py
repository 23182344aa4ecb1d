"""gitops.reconcile.observations: a pass that applied leaves its observations to the watch
that feeds the same log, and appends only what the watch has not recorded. A real SQLite
log; the "watch" is a second connection appending from another thread, as the cluster
source's writer does."""

from __future__ import annotations

import threading
from pathlib import Path

from gitops.reconcile.observations import left_by_the_watch
from gitops.store import EventLog
from tests.helpers import applied


def _append_later(db: Path, event: object, *, after: float) -> threading.Thread:
    def run() -> None:
        threading.Event().wait(after)
        with EventLog(db) as other:
            other.append([event])  # type: ignore[list-item]
    t = threading.Thread(target=run)
    t.start()
    return t


def test_what_the_watch_records_meanwhile_is_not_appended_again(db_path: Path) -> None:
    mine = [applied(1), applied(2)]
    with EventLog(db_path) as log:
        log.append([applied(0)])
        watch = _append_later(db_path, mine[0], after=0.3)
        watch2 = _append_later(db_path, mine[1], after=0.6)
        assert left_by_the_watch(log, mine, timeout=60, stopping=threading.Event()) == []
        watch.join()
        watch2.join()
        assert [r.event.id for r in log.read()] == [applied(0).id, mine[0].id, mine[1].id]


def test_what_no_watch_records_is_handed_back_at_once_and_the_rest_after_the_timeout(db_path: Path) -> None:
    unwatched = applied(1)  # a Deployment: no watch of its kind (its CRD served in this pass, say)
    never = applied(2, manifest={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    with EventLog(db_path) as log:
        log.append([applied(0)])
        # had it waited for the unwatched kind, it would have found this append and handed back only the other
        late = _append_later(db_path, unwatched, after=1.0)
        left = left_by_the_watch(log, [unwatched, never], timeout=1.5, stopping=threading.Event(),
                                 watches=lambda kind: kind == "ConfigMap")
        late.join()
    assert left == [unwatched, never]


def test_a_stopping_pass_does_not_wait(db_path: Path) -> None:
    stopping = threading.Event()
    stopping.set()
    with EventLog(db_path) as log:
        log.append([applied(0)])
        assert left_by_the_watch(log, [applied(0), applied(1)], timeout=600, stopping=stopping) == [applied(1)]
