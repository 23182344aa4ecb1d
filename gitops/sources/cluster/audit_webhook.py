"""The Kubernetes audit webhook backend: ``AuditWebhook`` serves HTTPS where the API server
posts its audit events (``--audit-webhook-config-file``, a kubeconfig naming this endpoint),
so that in a cluster, where the API server's audit log file is out of reach, the real user
behind each kubectl edit is still named.

Guarantees:
- **Only an authenticated client is heard**: a TLS client certificate that ``client_ca``
  signed, or the bearer token of ``token_file``. Anything else is refused with 401 before
  its body is read, counted, and nothing of it is recorded.
- **Bodies are bounded**: an authenticated batch larger than ``max_body_bytes`` is refused
  with 413, unread; the API server drops a batch it cannot send, so that refusal is
  recorded as an evidence gap (``source.error audit-webhook-refused``).
- **A refusal reaches its client**: after answering 401, 411 or 413, what the client still
  sends is read and dropped (at most ``max_body_bytes``, for at most ``LINGER_SECONDS``)
  before the connection closes; closing on unread bytes resets it, and the client, still
  sending, would lose the answer.
- **A batch is acknowledged only once its records are in the log**: they are appended in
  one transaction, and 200 is sent after it commits. A failure to write is 503, after
  which the API server retries (batch mode); a retry of a batch whose answer was lost
  appends nothing twice, since an audit event's id is its auditID.
- **The join is the file's**: records are read by ``AuditReader`` as the file's lines are,
  and ``LogAuditFeed`` brings the ``audit`` events of the log into the cluster watcher's
  index, whichever process received them (two replicas behind one Service).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from gitops.events.models import AnyEvent, AuditRecorded, EventSource, SourceErrorEvent, SourceErrorPayload, event_id
from gitops.model.errors import ConfigError, GitOpsError
from gitops.model.times import utc_now
from gitops.sources.cluster.audit import AuditIndex
from gitops.sources.cluster.audit_records import AuditReader, Malformed, record_of
from gitops.sources.cluster.config import AuditWebhookSettings
from gitops.store import EventLog, open_log

if TYPE_CHECKING:
    from gitops.events.payloads import AuditPayload

__all__ = ["AuditWebhook", "LogAuditFeed", "RequestCallback"]

RequestCallback = Callable[[int, int], None]
"""Told of each request answered: its HTTP status and how many audit records it brought."""

LINGER_SECONDS = 2.0
"""How long a refused client may go on sending before its connection closes."""


class AuditWebhook:
    """Receives the API server's audit batches into the log at ``db_path``."""

    def __init__(self, db_path: str | Path, settings: AuditWebhookSettings, *, reader: AuditReader,
                 on_request: RequestCallback | None = None, on_dropped: Callable[[], None] | None = None,
                 busy_timeout: float = 10.0) -> None:
        self._tls, self.token = settings.check()
        self.settings = settings
        self.reader = reader
        self.on_request = on_request
        self.on_dropped = on_dropped  # told of each connection dropped before its request (a metric)
        self.refused = 0  # requests refused as unauthenticated (401)
        self.dropped = 0  # connections that ended before a request: a failed TLS handshake, a reset, a timeout
        self.received = 0  # audit records appended
        # a write lock held longer than this is a 503 the API server retries, not a request left hanging
        self._log = open_log(db_path, busy_timeout=busy_timeout)
        self._log_lock = threading.Lock()  # one append at a time on the one connection
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        return self.reader.origin

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port, when the settings asked for port 0)."""
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        host, port = self.settings.host_port()
        try:
            server = _Server((host, port), _handler(self))
        except OSError as e:
            raise ConfigError(f"cannot serve the audit webhook on {self.settings.address}: "
                              f"{e.strerror or e}") from None
        server.daemon_threads = True
        server.hook = self
        # the handshake runs in the request's own thread (on its first read), never in the accept loop
        server.socket = self._tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="audit-webhook", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._log_lock:
            self._log.close()

    # ------------------------------------------------------------------ one request

    def authenticated(self, peer_cert: Any, authorization: str | None) -> bool:
        if peer_cert:  # verified against client_ca by the handshake (CERT_OPTIONAL: absent, or valid)
            return True
        if self.token is None or not authorization or not authorization.startswith("Bearer "):
            return False
        return hmac.compare_digest(authorization[len("Bearer "):].strip().encode(), self.token)

    def refusal(self, why: str, detail: dict[str, str]) -> SourceErrorEvent:
        """A batch the API server sent and this receiver could not take: the records in it are
        not in the log, and the report names the gap."""
        at = utc_now()
        return SourceErrorEvent(
            id=event_id("source.error", self.origin, "audit-webhook-refused", at.isoformat(), *detail.values()),
            source=EventSource.AUDIT, effective_at=at,
            payload=SourceErrorPayload(code="audit-webhook-refused", origin=self.origin, detail=detail,
                                       message=f"an audit batch posted to the webhook was refused ({why}): the "
                                               "records in it are not in the log"))

    def events(self, body: bytes) -> list[AnyEvent]:
        """The events of one posted batch (an ``audit.k8s.io/v1`` EventList); a body that is
        not one gives a single ``source.error``, each unreadable record one of its own."""
        digest = hashlib.sha256(body).hexdigest()
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "EventList" else None
        if not isinstance(items, list):
            return [self._malformed(digest, "the body is not an audit.k8s.io EventList")]
        events: list[AnyEvent] = []
        for n, item in enumerate(items):
            read = self.reader.read(item)
            if isinstance(read, Malformed):
                audit_id = item.get("auditID") if isinstance(item, dict) else None
                events.append(self._malformed(str(audit_id or f"{digest}:{n}"), read))
            elif read is not None:
                events.extend(event for _, event in read)
        return events

    def _malformed(self, where: str, why: str) -> SourceErrorEvent:
        return SourceErrorEvent(
            id=event_id("source.error", self.origin, "audit-malformed", "webhook", where),
            source=EventSource.AUDIT, effective_at=utc_now(),
            payload=SourceErrorPayload(code="audit-malformed", origin=self.origin, detail={"record": where},
                                       message=f"an audit record posted to the webhook: {why}; it was skipped"))

    def append(self, events: list[AnyEvent]) -> int:
        """Append ``events`` in one transaction; returns the audit records that were new."""
        with self._log_lock:
            appended = self._log.append(events)
        # records, not events: a deletecollection is an event per object it deleted
        new = len({a.event.payload.audit_id for a in appended if isinstance(a.event, AuditRecorded)})
        self.received += new
        return new

    def answered(self, status: int, records: int = 0) -> None:
        if status == 401:
            self.refused += 1
        if self.on_request is not None:
            self.on_request(status, records)


class _Server(ThreadingHTTPServer):
    """The receiver's server: a connection that ends before its request (a client whose
    certificate fails the handshake, a reset, a stalled client dropped) is counted on the
    hook (``dropped``), not printed as a traceback: as with refused requests, a scan of the
    port must not flood the service's output. Any other error is the server's own."""

    hook: AuditWebhook | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.hook is not None and isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, TimeoutError)):
            self.hook.dropped += 1
            if self.hook.on_dropped is not None:
                self.hook.on_dropped()
            return
        super().handle_error(request, client_address)


def _handler(hook: AuditWebhook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # seconds a client may take for its handshake and its request (a stalled one is dropped)
        protocol_version = "HTTP/1.1"
        server_version = "gitops-audit-webhook"

        def do_POST(self) -> None:
            peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
            if not hook.authenticated(peer, self.headers.get("Authorization")):
                self._answer(401, "unauthenticated: a client certificate or a bearer token is required",
                             close=True, extra={"WWW-Authenticate": "Bearer"})
                return
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self._answer(411, "a Content-Length is required", close=True)
                return
            if int(length) > hook.settings.max_body_bytes:
                self._record([hook.refusal(f"{length} bytes, over the limit of {hook.settings.max_body_bytes}",
                                           {"bytes": length})])
                self._answer(413, f"the batch is over {hook.settings.max_body_bytes} bytes", close=True)
                return
            body = self.rfile.read(int(length))
            events = hook.events(body)
            try:
                new = hook.append(events)
            except GitOpsError as e:  # the log cannot be written now: the API server sends the batch again
                self._answer(503, f"not recorded: {e}")
                return
            self._answer(200, "", records=new)

        def do_GET(self) -> None:
            self._answer(405, "POST audit.k8s.io EventList batches here", extra={"Allow": "POST"})

        do_PUT = do_DELETE = do_PATCH = do_GET

        def _record(self, events: list[AnyEvent]) -> None:
            # the refusal is answered either way; a log that cannot be written is reported by its writers
            with contextlib.suppress(GitOpsError):
                hook.append(events)

        def _answer(self, status: int, message: str, *, records: int = 0, close: bool = False,
                    extra: dict[str, str] | None = None) -> None:
            body = orjson.dumps({"status": status, "message": message} if message else {})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
            hook.answered(status, records)
            if close:
                self.wfile.flush()
                self._linger()

        def _linger(self) -> None:
            left, deadline = hook.settings.max_body_bytes, time.monotonic() + LINGER_SECONDS
            with contextlib.suppress(OSError):  # a timeout, a reset, a TLS error: the client is gone or done
                while left > 0 and (wait := deadline - time.monotonic()) > 0:
                    self.connection.settimeout(wait)
                    chunk = self.connection.recv(min(left, 1 << 14))
                    if not chunk:
                        return
                    left -= len(chunk)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # counted, not printed: a scan of the port must not flood the service's output

    return Handler


class LogAuditFeed:
    """The ``audit`` events of cluster ``origin`` that reach the log (from the webhook, in
    this process or another one writing the same log), into ``index``: from those recorded
    ``since`` ago at start, then each new one."""

    def __init__(self, log: EventLog, index: AuditIndex, *, origin: str, since: timedelta = timedelta(minutes=15),
                 delay: float = 0.0) -> None:
        self.log = log
        self.index = index
        self.origin = origin
        self.delay = delay
        self._lock = threading.Lock()
        self._cursor: int | None = None
        self._since = since

    def catch_up(self) -> int:
        with self._lock:
            if self._cursor is None:
                self._cursor = self.log.seq_recorded_before(utc_now() - self._since)
            n = 0
            for r in self.log.read(types=["audit"], since_seq=self._cursor):
                self._cursor = r.seq
                if isinstance(r.event, AuditRecorded) and r.event.payload.origin == self.origin:
                    record = record_of(r.event)
                    if record is not None:
                        self.index.add(record)
                    n += 1
            return n

    def take(self, audit_id: str) -> AuditPayload | None:  # its records are in the log already
        return None

    def settle(self, audit_ids: Iterable[str]) -> None:
        pass

    def close(self) -> None:
        self.log.close()
