"""Notifications to a real HTTP receiver on loopback: each trigger posted once, signed,
recorded as notify.sent; retries with backoff and then notify.failed; a restart drops
nothing; a sink that falls behind skips the oldest and says so; a tampered log is told;
and neither the secret nor the webhook's token reaches the log."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gitops.events import (
    DriftClosed,
    DriftClosedPayload,
    DriftOpened,
    DriftOpenedPayload,
    EventSource,
    GitCommit,
    GitCommitPayload,
    GitPerson,
    HealthChanged,
    HealthChangedPayload,
    NotifyFailed,
    NotifySent,
    ReconcileAction,
    ReconcileActionPayload,
    ReconcileFinished,
    ReconcileFinishedPayload,
    event_id,
)
from gitops.model.errors import ConfigError
from gitops.service.notify import Notifier, SinkSettings
from gitops.store import EventLog

SCHEMA = Path(__file__).resolve().parent.parent / "schema" / "notification.schema.json"
T = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
KEY = "Deployment.apps/shop/web"


class Receiver:
    """An HTTP server on loopback that records each POST and answers with ``codes`` in turn
    (then 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.codes: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0K3N-in-the-path?token=s3cr3t"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _events(n: int = 0) -> list[Any]:
    """One event of each kind that notifies, and one that does not (a held pass that is no mass prune)."""
    ep = event_id("drift", KEY, str(n))
    return [
        DriftOpened(id=event_id("drift.opened", ep), source=EventSource.RECONCILER, resource=KEY, actor="alice",
                    effective_at=T, payload=DriftOpenedPayload(episode_id=ep, fields=["spec.replicas"], cause_seq=1)),
        ReconcileAction(id=event_id("reconcile.action", str(n)), source=EventSource.RECONCILER, resource=KEY,
                        actor="gitops", effective_at=T,
                        payload=ReconcileActionPayload(run_id="r", action="update", result="failed", code=422,
                                                       error="HTTP 422 Invalid: spec.selector")),
        HealthChanged(id=event_id("health.changed", "a", str(n)), source=EventSource.RECONCILER, resource=KEY,
                      effective_at=T, payload=HealthChangedPayload(instance="prod", status="Degraded",
                                                                   previous="Progressing",
                                                                   reason="ProgressDeadlineExceeded")),
        ReconcileFinished(id=event_id("reconcile.finished", str(n)), source=EventSource.RECONCILER, effective_at=T,
                          payload=ReconcileFinishedPayload(run_id="r", status="partial",
                                                           held="mass-prune: 9 of 10 owned objects would be deleted")),
        ReconcileFinished(id=event_id("reconcile.finished", "quiet", str(n)), source=EventSource.RECONCILER,
                          effective_at=T, payload=ReconcileFinishedPayload(run_id="q", status="succeeded")),
        HealthChanged(id=event_id("health.changed", "b", str(n)), source=EventSource.RECONCILER, resource=KEY,
                      effective_at=T, payload=HealthChangedPayload(instance="prod", status="Healthy",
                                                                   previous="Degraded")),
        DriftClosed(id=event_id("drift.closed", ep), source=EventSource.RECONCILER, resource=KEY, actor="gitops",
                    effective_at=T, payload=DriftClosedPayload(episode_id=ep, how="reconciled")),
        _commit("c", valid=True, n=n),
        _commit("b", valid=False, n=n),  # the newest commit read: invalid
    ]


_DEV = GitPerson(name="Dev", email="dev@example.com", time=T)


def _commit(c: str, *, valid: bool, n: int = 0) -> GitCommit:
    return GitCommit(id=event_id("git.commit", c, str(n)), source=EventSource.GIT, actor="dev@example.com",
                     effective_at=T, revision=c * 40,
                     payload=GitCommitPayload(sha=c * 40, parents=[], author=_DEV, committer=_DEV, message=c,
                                              branch="main", repository="repo", origin="git:repo#main", valid=valid,
                                              errors=0 if valid else 2))


def _sent(db: Path) -> list[Any]:
    with EventLog(db) as log:
        return [r.event for r in log.read(types=["notify.sent", "notify.failed"])]


def _log(tmp_path: Path) -> Path:
    db = tmp_path / "g.db"
    EventLog(db, create=True).close()
    return db


def test_each_trigger_is_posted_once_signed_and_recorded(tmp_path: Path, receiver: Receiver,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "the-shared-secret")
    db = _log(tmp_path)
    sink = SinkSettings(name="ops", url=receiver.url, secret_env="HOOK_SECRET")
    notifier = Notifier(db, [sink], instance="prod")
    assert notifier.poll() == 0  # the first time: from the log's end on
    with EventLog(db) as log:
        log.append(_events())
    assert notifier.poll() == 8
    assert notifier.poll() == 0  # nothing twice
    bodies = receiver.bodies()
    assert [b["trigger"] for b in bodies] == ["drift-opened", "out-of-band", "action-failed", "health-degraded",
                                              "mass-prune-held", "health-recovered", "drift-closed", "commit-invalid"]
    assert bodies[-1]["actor"] == "dev@example.com" and bodies[-1]["details"]["errors"] == 2
    assert bodies[-1]["summary"].startswith(f"commit {'b' * 12} on main is invalid (2 errors): nothing of it")
    schema = json.loads(SCHEMA.read_text())
    for headers, body in receiver.requests:
        jsonschema.validate(json.loads(body), schema)
        want = "sha256=" + hmac.new(b"the-shared-secret", body, hashlib.sha256).hexdigest()
        assert headers["x-gitops-signature"] == want and headers["x-gitops-delivery"] == json.loads(body)["delivery"]
    assert bodies[1]["actor"] == "alice" and "alice changed Deployment.apps/shop/web" in bodies[1]["summary"]
    recorded = _sent(db)
    assert [(type(e), e.payload.trigger, e.payload.status_code) for e in recorded] == [
        (NotifySent, b["trigger"], 200) for b in bodies]
    assert {e.payload.endpoint for e in recorded} == {receiver.url.split("/hooks")[0]}
    raw = db.read_bytes() + (db.with_name("g.db-wal").read_bytes() if db.with_name("g.db-wal").exists() else b"")
    assert b"the-shared-secret" not in raw and b"T0K3N" not in raw and b"s3cr3t" not in raw


def test_a_slack_sink_gets_slacks_body(tmp_path: Path, receiver: Receiver) -> None:
    db = _log(tmp_path)
    notifier = Notifier(db, [SinkSettings(name="chat", url=receiver.url, format="slack",
                                          triggers=["out-of-band"])], instance="prod")
    notifier.poll()
    with EventLog(db) as log:
        log.append(_events())
    assert notifier.poll() == 1
    assert receiver.bodies() == [{"text": "[gitops prod] out-of-band: alice changed Deployment.apps/shop/web "
                                          "outside Git (by alice)"}]
    assert "x-gitops-signature" not in receiver.requests[0][0]


def test_an_invalid_commit_is_told_only_when_it_is_the_newest_read(tmp_path: Path, receiver: Receiver) -> None:
    """Flux and Argo CD judge the head: an invalid commit a valid one followed held nothing
    back, and is not told; one that is the newest is, once."""
    db = _log(tmp_path)
    notifier = Notifier(db, [SinkSettings(name="ops", url=receiver.url, triggers=["commit-invalid"])],
                        instance="prod")
    notifier.poll()
    with EventLog(db) as log:
        log.append([_commit("d", valid=False), _commit("e", valid=True)])
    assert notifier.poll() == 0
    with EventLog(db) as log:
        log.append([_commit("f", valid=False)])
    assert notifier.poll() == 1 and notifier.poll() == 0
    assert [b["details"]["commit"] for b in receiver.bodies()] == ["f" * 40]


def _pass(n: int, held: str | None) -> ReconcileFinished:
    return ReconcileFinished(id=event_id("reconcile.finished", "pass", str(n)), source=EventSource.RECONCILER,
                             effective_at=T, payload=ReconcileFinishedPayload(run_id=str(n), status="succeeded",
                                                                              held=held))


def test_a_held_mass_prune_is_told_when_it_begins_not_at_every_pass_that_holds_it(
        tmp_path: Path, receiver: Receiver) -> None:
    """gitops run passes every minute; a held prune waits for a person, and a message each
    minute would bury the first. Told again once it was released and is held anew; a
    restart does not forget it was told."""
    db = _log(tmp_path)
    sink = SinkSettings(name="ops", url=receiver.url, triggers=["mass-prune-held"])
    Notifier(db, [sink], instance="prod").poll()
    with EventLog(db) as log:
        log.append([_pass(1, "mass-prune: 3 of 3 owned objects would be deleted, over 50%"),
                    _pass(2, "mass-prune: 3 prunes the guard held in an earlier pass are held until ...")])
    assert Notifier(db, [sink], instance="prod").poll() == 1
    with EventLog(db) as log:
        log.append([_pass(3, "mass-prune: 3 prunes the guard held in an earlier pass are held until ...")])
    assert Notifier(db, [sink], instance="prod").poll() == 0  # a new process: still the same hold
    with EventLog(db) as log:
        log.append([_pass(4, None), _pass(5, "mass-prune: 5 of 6 owned objects would be deleted, over 50%")])
    assert Notifier(db, [sink], instance="prod").poll() == 1
    assert [b["details"]["held"][:20] for b in receiver.bodies()] == ["mass-prune: 3 of 3 o", "mass-prune: 5 of 6 o"]


def test_each_instance_of_a_fleet_tells_of_its_own_cluster_and_git_source(tmp_path: Path,
                                                                          receiver: Receiver) -> None:
    """Two gitops run processes share one log (a fleet on PostgreSQL): east must not page
    anyone, under its own name, for west's failed action, held prune or invalid commit."""
    db = _log(tmp_path)
    sinks = [SinkSettings(name="ops", url=receiver.url)]
    east = Notifier(db, sinks, instance="east", cluster="cluster:east", git="git:repo#main")
    west = Notifier(db, sinks, instance="west", cluster="cluster:west", git="git:other#main")
    east.poll(), west.poll()
    failed = ReconcileAction(id=event_id("reconcile.action", "w"), source=EventSource.RECONCILER, resource=KEY,
                             actor="gitops", effective_at=T,
                             payload=ReconcileActionPayload(cluster="cluster:west", run_id="r", action="update",
                                                            result="failed", code=422, error="HTTP 422 Invalid"))
    held = ReconcileFinished(id=event_id("reconcile.finished", "w"), source=EventSource.RECONCILER, effective_at=T,
                             payload=ReconcileFinishedPayload(cluster="cluster:west", run_id="r", status="succeeded",
                                                              held="mass-prune: 3 of 3 owned objects would be deleted"))
    with EventLog(db) as log:
        log.append([failed, held, _commit("a", valid=False)])  # the commit: of git:repo#main, east's
    assert east.poll() == 1 and [(b["instance"], b["trigger"]) for b in receiver.bodies()] == [
        ("east", "commit-invalid")]
    assert west.poll() == 2
    assert [(b["instance"], b["trigger"]) for b in receiver.bodies()[1:]] == [
        ("west", "action-failed"), ("west", "mass-prune-held")]


def test_retries_back_off_then_a_failure_is_recorded(tmp_path: Path, receiver: Receiver) -> None:
    db = _log(tmp_path)
    waits: list[float] = []
    sink = SinkSettings(name="ops", url=receiver.url, retries=2, backoff=0.5, triggers=["action-failed",
                                                                                         "health-degraded"])
    notifier = Notifier(db, [sink], instance="prod", sleep=waits.append)
    notifier.poll()
    with EventLog(db) as log:
        log.append(_events())
    receiver.codes = [500, 502, 200, 503, 503, 503]  # the first: its third try succeeds; the second: never
    notifier.poll()
    assert waits == [0.5, 1.0, 0.5, 1.0]  # doubled each time, for each delivery
    sent, failed = _sent(db)
    assert (type(sent), sent.payload.attempts, sent.payload.status_code) == (NotifySent, 3, 200)
    assert (type(failed), failed.payload.attempts, failed.payload.error) == (NotifyFailed, 3, "HTTP 503")
    assert len(receiver.requests) == 6
    assert len({h["x-gitops-delivery"] for h, _ in receiver.requests[:3]}) == 1  # a retry keeps its delivery id


def test_a_restart_drops_nothing_and_a_sink_that_falls_behind_says_what_it_skipped(
        tmp_path: Path, receiver: Receiver) -> None:
    db = _log(tmp_path)
    sink = SinkSettings(name="ops", url=receiver.url, triggers=["drift-opened"])
    Notifier(db, [sink], instance="prod").poll()  # began following, then was killed before the events came
    with EventLog(db) as log:
        log.append(_events(1))
    assert Notifier(db, [sink], instance="prod").poll() == 1  # the next process sends what the first did not
    assert Notifier(db, [sink], instance="prod").poll() == 0
    small = SinkSettings(name="small", url=receiver.url, triggers=["drift-opened"], max_pending=3)
    Notifier(db, [small], instance="prod").poll()
    with EventLog(db) as log:
        for n in range(2, 5):
            log.append(_events(n))  # 9 events each: the first two drift.opened are more than 3 behind
    assert Notifier(db, [small], instance="prod").poll() == 0
    skipped = [e for e in _sent(db) if e.payload.sink == "small"]
    assert [(type(e), e.payload.trigger) for e in skipped] == [(NotifyFailed, "skipped")]
    assert "24 events were skipped" in (skipped[0].payload.error or "")


def test_a_tampered_log_is_told(tmp_path: Path, receiver: Receiver) -> None:
    db = _log(tmp_path)
    notifier = Notifier(db, [SinkSettings(name="ops", url=receiver.url)], instance="prod")
    notifier.poll()
    with EventLog(db) as log:
        log.append(_events())
    with sqlite3.connect(db) as conn:  # an attacker cuts the tail
        conn.execute("DELETE FROM events WHERE seq = (SELECT max(seq) FROM events)")
    notifier.poll()
    notifier.poll()
    assert [b["trigger"] for b in receiver.bodies()] == ["tamper"]  # once, and nothing else from a cut log
    assert "tampered" in receiver.bodies()[0]["summary"]


def test_a_secret_that_is_not_there_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HOOK_SECRET_MISSING is not set"):
        Notifier(tmp_path / "g.db", [SinkSettings(name="ops", url="http://127.0.0.1:9/x",
                                                  secret_env="HOOK_SECRET_MISSING")], instance="prod")

