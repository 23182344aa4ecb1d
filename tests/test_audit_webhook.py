"""The audit webhook receiver over real TLS into a real SQLite log: who may post, what a
batch becomes, and that a batch is acknowledged only once its records are in the log."""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gitops.events import AuditRecorded
from gitops.events.models import SourceErrorEvent
from gitops.model.errors import ConfigError
from gitops.sources.cluster.audit import AuditIndex
from gitops.sources.cluster.audit_records import AuditReader
from gitops.sources.cluster.audit_webhook import AuditWebhook, LogAuditFeed
from gitops.sources.cluster.config import AuditWebhookSettings
from gitops.store import EventLog
from tests.cli_helpers import gitops, one_failure_line
from tests.tls import Pki, make_pki

PLURALS = {("", "configmaps"): ("ConfigMap", True)}
TOKEN = "s3cret-token-of-the-api-server"


def record(n: int, *, user: str = "alice", verb: str = "patch", rv: str | None = None) -> dict[str, Any]:
    return {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": f"id-{n}",
        "stage": "ResponseComplete", "requestURI": f"/api/v1/namespaces/shop/configmaps/cm-{n}", "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]}, "sourceIPs": ["10.0.0.7"],
        "userAgent": "kubectl/v1.32.4", "responseStatus": {"code": 200},
        "objectRef": {"resource": "configmaps", "namespace": "shop", "name": f"cm-{n}", "apiVersion": "v1"},
        "requestObject": {"data": {"password": "never-kept"}},
        "responseObject": {"kind": "ConfigMap", "metadata": {"resourceVersion": rv or str(1000 + n), "uid": f"u-{n}"},
                           "data": {"password": "never-kept"}},
        "requestReceivedTimestamp": "2026-12-01T10:00:00.000000Z", "stageTimestamp": "2026-12-01T10:00:00.010000Z",
    }


def batch(*records: dict[str, Any]) -> bytes:
    return json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
                       "items": list(records)}).encode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def settings(pki: Pki, tmp_path: Path, **over: Any) -> AuditWebhookSettings:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    values: dict[str, Any] = {"address": "127.0.0.1:0", "cert_file": str(pki.server_cert),
                              "key_file": str(pki.server_key), "client_ca_file": str(pki.ca),
                              "token_file": str(token), **over}
    return AuditWebhookSettings.model_validate(values)


class Receiver:
    def __init__(self, hook: AuditWebhook, pki: Pki) -> None:
        self.hook, self.pki = hook, pki
        host, port = hook.address
        self.url = f"https://{host}:{port}/audit"
        self.answered: list[tuple[int, int]] = []

    def post(self, body: bytes, *, cert: bool = True, token: str | None = None,
             client: tuple[Path, Path] | None = None) -> requests.Response:
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        pair = client or ((self.pki.client_cert, self.pki.client_key) if cert else None)
        return requests.post(self.url, data=body, headers=headers, verify=str(self.pki.ca), timeout=10,
                             cert=(str(pair[0]), str(pair[1])) if pair else None)


@pytest.fixture
def receiver(pki: Pki, tmp_path: Path, db_path: Path) -> Iterator[Receiver]:
    EventLog(db_path).close()
    answered: list[tuple[int, int]] = []
    hook = AuditWebhook(db_path, settings(pki, tmp_path, max_body_bytes=64 << 10),
                        reader=AuditReader(resolve=lambda g, r: PLURALS.get((g, r)), origin="cluster:test"),
                        on_request=lambda code, n: answered.append((code, n)),
                        on_dropped=lambda: answered.append((0, 0)), busy_timeout=0.2)
    hook.start()
    r = Receiver(hook, pki)
    r.answered = answered
    yield r
    hook.stop()


def audit_events(db: Path) -> list[AuditRecorded]:
    with EventLog(db) as log:
        return [r.event for r in log.read(types=["audit"]) if isinstance(r.event, AuditRecorded)]


def test_a_batch_from_the_api_server_is_recorded_once_even_when_sent_again(receiver: Receiver,
                                                                             db_path: Path) -> None:
    body = batch(record(1), record(2, verb="get"), record(3, user="bob"),
                 {**record(4), "stage": "RequestReceived"}, {**record(5), "objectRef": {"resource": "widgets",
                                                                                        "name": "w"}})
    assert receiver.post(body).status_code == 200
    assert receiver.post(body).status_code == 200  # the API server's retry after a lost answer
    events = audit_events(db_path)
    assert [(e.payload.audit_id, e.actor, e.resource, e.revision) for e in events] == [
        ("id-1", "alice", "ConfigMap/shop/cm-1", "1001"), ("id-3", "bob", "ConfigMap/shop/cm-3", "1003")]
    assert events[0].payload.uid == "u-1" and events[0].payload.source_ips == ["10.0.0.7"]
    assert receiver.answered == [(200, 2), (200, 0)]
    assert b"never-kept" not in db_path.read_bytes()


def test_a_bearer_token_is_accepted_and_anything_else_is_401_counted_and_unrecorded(receiver: Receiver,
                                                                                      db_path: Path) -> None:
    assert receiver.post(batch(record(1)), cert=False, token=TOKEN).status_code == 200
    refused = [receiver.post(batch(record(2)), cert=False),  # no credentials
               receiver.post(batch(record(3)), cert=False, token="guessed")]
    assert [r.status_code for r in refused] == [401, 401]
    assert refused[0].headers["WWW-Authenticate"] == "Bearer"
    assert [e.payload.audit_id for e in audit_events(db_path)] == ["id-1"]
    assert receiver.hook.refused == 2
    assert receiver.answered == [(200, 1), (401, 0), (401, 0)]


def test_a_certificate_of_another_ca_fails_the_handshake(receiver: Receiver, db_path: Path,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    """Under CERT_OPTIONAL a certificate that is presented must be valid: the handshake fails.
    The receiver counts the dropped connection and prints nothing (a traceback from the
    request's thread was printed once, in CI, where it came after the test had ended)."""
    import time

    with pytest.raises(requests.exceptions.SSLError):
        receiver.post(batch(record(1)), client=(receiver.pki.other_client_cert, receiver.pki.other_client_key))
    deadline = time.monotonic() + 10
    while receiver.hook.dropped == 0 and time.monotonic() < deadline:  # the request's thread ends on its own
        time.sleep(0.05)
    assert receiver.hook.dropped == 1 and receiver.answered == [(0, 0)]  # and told (a metric in 'gitops run')
    assert "Traceback" not in capfd.readouterr().err
    assert audit_events(db_path) == []
    assert receiver.post(batch(record(2))).status_code == 200  # and it serves the next one


def test_a_batch_over_the_limit_is_413_and_recorded_as_an_evidence_gap(receiver: Receiver, db_path: Path) -> None:
    big = batch(*(record(n) for n in range(200)))
    assert len(big) > 64 << 10
    r = receiver.post(big)
    assert r.status_code == 413
    with EventLog(db_path) as log:
        errors = [e.event for e in log.read(types=["source.error"])]
    assert [e.payload.code for e in errors if isinstance(e, SourceErrorEvent)] == ["audit-webhook-refused"]
    assert audit_events(db_path) == []


def test_a_body_without_a_length_is_411_and_the_client_still_sending_reads_it(receiver: Receiver) -> None:
    """The refusal comes before the body: a client that sends it after the answer was written
    (the headers, a pause, then the chunks) still reads the 411 instead of a reset connection."""
    ctx = ssl.create_default_context(cafile=str(receiver.pki.ca))
    ctx.load_cert_chain(str(receiver.pki.client_cert), str(receiver.pki.client_key))
    host, port = receiver.hook.address
    body = batch(record(1))
    with socket.create_connection((host, port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"POST /audit HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
                    "Content-Type: application/json\r\n\r\n".encode())
        time.sleep(0.3)  # the answer is written and the server is done with the request
        for _ in range(8):
            tls.sendall(f"{len(body):x}\r\n".encode() + body + b"\r\n")
        tls.sendall(b"0\r\n\r\n")
        answer = http.client.HTTPResponse(tls)
        answer.begin()
        assert answer.status == 411
        assert json.loads(answer.read())["message"] == "a Content-Length is required"


def test_a_body_that_is_not_an_event_list_is_recorded_as_malformed(receiver: Receiver, db_path: Path) -> None:
    assert receiver.post(b"{not json").status_code == 200  # sending it again would not help
    assert receiver.post(batch(record(1), {"auditID": "id-9", "stage": "ResponseComplete",
                                           "verb": "patch", "user": "not-an-object"})).status_code == 200
    with EventLog(db_path) as log:
        codes = [(r.event.payload.code, r.event.payload.detail) for r in log.read(types=["source.error"])
                 if isinstance(r.event, SourceErrorEvent)]
    assert [c for c, _ in codes] == ["audit-malformed", "audit-malformed"]
    assert codes[1][1] == {"record": "id-9"}
    assert [e.payload.audit_id for e in audit_events(db_path)] == ["id-1"]


def test_a_log_that_cannot_be_written_is_503_and_the_retry_records_the_batch(receiver: Receiver,
                                                                             db_path: Path) -> None:
    """Another writer holds the lock past the busy timeout: nothing is acknowledged, and the
    API server's retry finds the batch recorded once."""
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        assert receiver.post(batch(record(1))).status_code == 503
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert audit_events(db_path) == []
    assert receiver.post(batch(record(1))).status_code == 200
    assert [e.payload.audit_id for e in audit_events(db_path)] == ["id-1"]


def test_what_the_webhook_recorded_reaches_the_index_through_the_log(receiver: Receiver, db_path: Path) -> None:
    """Whichever process received a record, the watcher joins changes to it from the log."""
    index = AuditIndex()
    with EventLog(db_path) as log:
        feed = LogAuditFeed(log, index, origin="cluster:test")
        assert feed.catch_up() == 0
        receiver.post(batch(record(1), record(2, verb="delete")))
        assert feed.catch_up() == 2
        assert feed.catch_up() == 0
        join = index.find("ConfigMap/shop/cm-1", "1001", deleted=False)
        assert join.record is not None and join.record.user == "alice"
        gone = index.find("ConfigMap/shop/cm-2", None, deleted=True, uid="u-2")
        assert gone.record is not None and gone.record.audit_id == "id-2"
        other = LogAuditFeed(log, AuditIndex(), origin="cluster:elsewhere")
        assert other.catch_up() == 0  # another cluster's records are not this one's


def collection_delete(n: int, *, user: str, deleted: dict[str, str] | None) -> dict[str, Any]:
    """A deletecollection's record: its response lists the objects deleted (``deleted``: name ->
    uid), or, refused, is a Status."""
    rec = {**record(n, user=user, verb="deletecollection"), "requestURI": "/api/v1/namespaces/shop/configmaps",
           "objectRef": {"resource": "configmaps", "namespace": "shop", "apiVersion": "v1"}}
    if deleted is None:
        return {**rec, "responseStatus": {"code": 403}, "responseObject": {"kind": "Status", "code": 403}}
    return {**rec, "responseObject": {"kind": "ConfigMapList", "metadata": {"resourceVersion": "2000"}, "items": [
        {"metadata": {"name": name, "namespace": "shop", "uid": uid, "resourceVersion": "1999"},
         "data": {"password": "never-kept"}} for name, uid in deleted.items()]}}


def test_a_deletecollection_joins_each_object_it_deleted_by_uid_through_the_log(receiver: Receiver,
                                                                                 db_path: Path) -> None:
    """One request, an audit event per object its response lists: each deletion is joined
    by its uid, and once; a refused one names no object and is kept, joined to nothing."""
    index = AuditIndex()
    with EventLog(db_path) as log:
        feed = LogAuditFeed(log, index, origin="cluster:test")
        receiver.post(batch(collection_delete(1, user="alice", deleted={"a": "u-a", "b": "u-b"}),
                            collection_delete(2, user="bob", deleted=None)))
        assert receiver.answered == [(200, 2)]  # two records (requests), three events
        assert feed.catch_up() == 3
    events = audit_events(db_path)
    assert [(e.payload.audit_id, e.actor, e.resource, e.payload.uid) for e in events] == [
        ("id-1", "alice", "ConfigMap/shop/a", "u-a"), ("id-1", "alice", "ConfigMap/shop/b", "u-b"),
        ("id-2", "bob", None, None)]
    assert events[2].payload.response_code == 403
    for name in ("a", "b"):
        join = index.find(f"ConfigMap/shop/{name}", None, deleted=True, uid=f"u-{name}")
        assert join.record is not None and (join.record.user, join.record.audit_id) == ("alice", "id-1")
    assert index.find("ConfigMap/shop/a", None, deleted=True, uid="u-other").record is None
    assert b"never-kept" not in db_path.read_bytes()
    shown = gitops("log", "--type", "audit", "--actor", "bob", "-o", "csv", db=db_path)
    assert shown.returncode == 0, shown.stderr
    assert "deletecollection /api/v1/namespaces/shop/configmaps -> 403" in shown.stdout  # which collection


def test_the_audit_timeline_says_what_each_request_asked_and_how_it_was_answered(receiver: Receiver,
                                                                                 db_path: Path) -> None:
    """bob's refused patches, twice on one object (the second stored packed, as a delta of
    the first): each row of `gitops audit` says what he asked and the 403, not a blank."""
    refused = [{**record(n, user="bob"), "auditID": f"id-{n}", "responseStatus": {"code": 403},
                "userAgent": "kubectl/v1.32.4 (linux/amd64) kubernetes/4cb5f07", "sourceIPs": ["10.0.0.7", "10.0.0.1"],
                "objectRef": {"resource": "configmaps", "namespace": "shop", "name": "cm-1", "apiVersion": "v1"},
                "requestURI": "/api/v1/namespaces/shop/configmaps/cm-1?fieldManager=kubectl-patch",
                "responseObject": {"kind": "Status", "code": 403}} for n in (1, 2)]
    assert receiver.post(batch(*refused)).status_code == 200
    with sqlite3.connect(db_path) as c:
        assert [p is not None for (p,) in c.execute("SELECT packed FROM events WHERE type = 'audit' ORDER BY seq")] \
            == [False, True]
    shown = gitops("audit", "--actor", "bob", "-o", "json", db=db_path)
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    uri = refused[0]["requestURI"]
    assert [(r["action"], r["resource"], r["how"], r["detail"]) for r in rows] == [
        ("audit", "ConfigMap/shop/cm-1", "patch 403", uri)] * 2


def test_settings_that_cannot_work_are_one_line(pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITOPS_AUDIT_WEBHOOK_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="must authenticate"):
        settings(pki, tmp_path, client_ca_file=None, token_file=None).check()
    with pytest.raises(ConfigError, match="cannot use the audit webhook's certificate"):
        settings(pki, tmp_path, cert_file=str(tmp_path / "missing.crt")).check()
    with pytest.raises(ConfigError, match="not host:port"):
        settings(pki, tmp_path, address="8443").check()
    monkeypatch.setenv("GITOPS_AUDIT_WEBHOOK_TOKEN", "from-the-environment")
    assert settings(pki, tmp_path, client_ca_file=None, token_file=None).token() == b"from-the-environment"


@pytest.mark.parametrize(("args", "says"), [
    (["--audit-webhook", "127.0.0.1:0"], "needs --audit-webhook-cert and --audit-webhook-key"),
    (["--audit-webhook-cert", "x.crt"], "--audit-webhook-cert without --audit-webhook HOST:PORT"),
    (["--audit-webhook", "127.0.0.1:0", "--audit-webhook-cert", "/nonexistent.crt", "--audit-webhook-key",
      "/nonexistent.key", "--audit-webhook-token-file", "TOKEN"], "cannot use the audit webhook's certificate"),
    (["--audit-webhook", "8443", "--audit-webhook-cert", "CERT", "--audit-webhook-key", "KEY",
      "--audit-webhook-token-file", "TOKEN"], "is not host:port"),
])
def test_webhook_flags_that_cannot_work_are_one_line_and_make_no_log(pki: Pki, tmp_path: Path, args: list[str],
                                                                     says: str) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    args = [{"CERT": str(pki.server_cert), "KEY": str(pki.server_key), "TOKEN": str(token)}.get(a, a) for a in args]
    db = tmp_path / "g.db"
    res = gitops("watch", "--kubeconfig", str(tmp_path / "no-kubeconfig"), *args, db=db)
    one_failure_line(res, 2)
    assert says in res.stderr and not db.exists()
