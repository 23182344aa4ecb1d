"""Two writers of one object's versions on one log (a real SQLite file): a watch's writer
appends what its stream saw, in order, after another writer (a one-shot pass, a pass's copy)
recorded a newer version first. Whatever the interleaving, after the watch's batch the log's
current state of the object is the last version the watch saw, and a version already current
is not written twice."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gitops.events import ClusterDeleted, ClusterObserved
from gitops.sources.cluster import ClusterSourceConfig
from gitops.sources.cluster.watcher import Change
from gitops.sources.cluster.writer import Writer
from gitops.store import EventLog

KEY = "ConfigMap/shop/cm"
ORIGIN = "cluster:test"


def version(rv: int, uid: str = "uid-1") -> Change:
    manifest: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"rv": str(rv)},
                                "metadata": {"name": "cm", "namespace": "shop", "resourceVersion": str(rv),
                                             "uid": uid}}
    return Change(KEY, "ConfigMap", str(rv), datetime.now(UTC), manifest, uid=uid)


def deletion(rv: int, uid: str = "uid-1") -> Change:
    return Change(KEY, "ConfigMap", str(rv), datetime.now(UTC), None, "deleted", uid=uid)


def write(db: Path, *changes: Change) -> None:
    writer = Writer(EventLog(db), origin=ORIGIN, config=ClusterSourceConfig())
    for c in changes:
        writer.put(c)
    writer.drain()
    writer.log.close()


def current(db: Path) -> Any:
    """The event the log's current state of the object points at (a deletion too)."""
    with EventLog(db) as log:
        (seq,) = log.conn.execute("SELECT seq FROM current_state WHERE side = 'actual' AND resource = ?",
                                  (KEY,)).fetchone()
        return next(iter(log.read(since_seq=seq - 1, until_seq=seq))).event


def versions(db: Path) -> list[tuple[str, str | None, bool]]:
    with EventLog(db) as log:
        return [(r.event.type, r.event.revision, r.event.payload.observed_late)  # type: ignore[union-attr]
                for r in log.read(types=["cluster.observed", "cluster.deleted"], resource=KEY)]


def test_an_older_version_appended_late_does_not_stay_current(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    EventLog(db, create=True).close()
    write(db, version(105))  # another writer: the newest version, first
    write(db, version(103), version(105))  # the watch: its stream, in order
    now = current(db)
    assert isinstance(now, ClusterObserved) and now.revision == "105" and now.payload.observed_late
    assert versions(db) == [("cluster.observed", "105", False), ("cluster.observed", "103", False),
                            ("cluster.observed", "105", True)]  # recorded again, said to be late
    write(db, version(105))  # seen again (a relist): current already, nothing new
    assert len(versions(db)) == 3


def test_the_deletion_of_an_old_incarnation_appended_after_the_new_one(tmp_path: Path) -> None:
    """A recreate: the pass recorded the new object; the watch held the old one's deletion
    for its audit record, and its batches may split anywhere."""
    db = tmp_path / "g.db"
    EventLog(db, create=True).close()
    write(db, version(100))
    write(db, version(105, uid="uid-2"))  # the pass's copy of what its create returned
    write(db, deletion(101))  # the watch's held deletion, in a batch of its own
    assert isinstance(current(db), ClusterDeleted)  # for now: the watch has not written what came next
    write(db, version(105, uid="uid-2"))
    now = current(db)
    assert isinstance(now, ClusterObserved) and now.payload.manifest["metadata"]["uid"] == "uid-2"
    write(db, deletion(201, uid="uid-2"), version(205, uid="uid-3"))  # and in one batch, when nothing raced
    now = current(db)
    assert isinstance(now, ClusterObserved) and now.revision == "205" and not now.payload.observed_late
