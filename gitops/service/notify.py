"""Notifications: the log's events that need a person, posted to webhooks as Argo CD's
notifications and Flux's notification-controller do.

- **Sinks** (``notify:`` in the config): a generic webhook (a JSON body of the stable
  schema ``schema/notification.schema.json``, signed with HMAC-SHA-256 of the body under a
  shared secret in ``X-Gitops-Signature: sha256=<hex>``) or a Slack-compatible incoming
  webhook (``{"text": ...}``). Each has a timeout and a number of retries with exponential
  backoff; the secret comes from a file or the environment, never from the config file.
- **Triggers**, read from the log: drift opened or closed, an out-of-band change (with the
  user), a failed action, health degraded or recovered, a mass prune held (when a pass first
  holds it: not again at each pass after that holds it still), a commit that is
  invalid (the cluster is held to the last valid one), a tamper found (the log refuses
  writes: the one trigger that cannot be recorded).
- **The queue is the log.** Each sink keeps a checkpoint of the last event it dealt with,
  written with the ``notify.sent`` / ``notify.failed`` event in one transaction: a restart
  resumes from it, so nothing is dropped, and a delivery whose answer was lost is sent
  again with the same ``X-Gitops-Delivery`` id (at least once; receivers dedupe by it).
  It is bounded: past ``max_pending`` events behind, the oldest are skipped and that is
  recorded as a ``notify.failed``. A sink starts from the log's end the first time.
- The URL's path and query (where webhook tokens live) and the secret never reach the log.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import requests
from pydantic import BaseModel, ConfigDict, Field

from gitops.events import (
    AnyEvent,
    DriftClosed,
    DriftOpened,
    EventSource,
    GitCommit,
    HealthChanged,
    NotifyFailed,
    NotifyPayload,
    NotifySent,
    ReconcileAction,
    ReconcileFinished,
    Recorded,
    event_id,
)
from gitops.model.errors import GitOpsError, TamperedLogError
from gitops.model.times import utc_now
from gitops.service.notify_settings import TRIGGERS, SinkSettings, Trigger
from gitops.store import Checkpoint, EventLog, open_log

__all__ = ["TRIGGERS", "Notification", "Notifier", "SinkSettings", "Trigger", "notification_json_schema"]

SCHEMA_ID = "gitops.notification/v1"
_TYPES = ("drift.opened", "drift.closed", "reconcile.action", "health.changed", "reconcile.finished", "git.commit")


class Notification(BaseModel):
    """The body a generic webhook receives (``schema/notification.schema.json``)."""

    model_config = ConfigDict(extra="forbid")

    schema_: str = Field(default=SCHEMA_ID, alias="schema", description="this format and its version")
    delivery: str = Field(description="the same for every retry of one delivery")
    trigger: Trigger
    time: datetime = Field(description="when what it tells of happened (RFC 3339)")
    summary: str
    resource: str | None = None
    actor: str | None = Field(default=None, description="who, when the evidence names anyone")
    instance: str
    seq: int | None = Field(default=None, description="the event of the log it tells of (gitops log --since-seq)")
    details: dict[str, Any] = Field(default_factory=dict)


def notification_json_schema() -> str:
    schema = Notification.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "gitops notification"
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"


def _ours(ev: AnyEvent, cluster: str | None, git: str | None) -> bool:
    """Whether ``ev`` is about this instance's cluster and Git source: a fleet's processes share
    one log, and each tells of its own (an event recorded before the origin was, ``""``, is
    everyone's)."""
    if isinstance(ev, GitCommit):
        return git is None or ev.payload.origin in (git, "")
    there = getattr(getattr(ev, "payload", None), "cluster", "")
    return cluster is None or there in (cluster, "")


def _of(r: Recorded, instance: str) -> list[tuple[Trigger, str, dict[str, Any]]]:
    """The triggers event ``r`` fires: (trigger, summary, details)."""
    ev = r.event
    if isinstance(ev, DriftOpened):
        who = ev.actor or "someone the evidence does not name"
        fields = ", ".join(ev.payload.fields[:5])
        return [("drift-opened", f"{ev.resource} drifted from Git ({fields}), changed by {who}",
                 {"fields": ev.payload.fields}),
                ("out-of-band", f"{who} changed {ev.resource} outside Git", {"fields": ev.payload.fields})]
    if isinstance(ev, DriftClosed):
        return [("drift-closed", f"{ev.resource} matches Git again ({ev.payload.how})", {"how": ev.payload.how})]
    if isinstance(ev, ReconcileAction) and ev.payload.result == "failed" and not ev.payload.dry_run:
        return [("action-failed", f"failed to {ev.payload.action} {ev.resource}: {ev.payload.error}",
                 {"action": ev.payload.action, "code": ev.payload.code, "error": ev.payload.error})]
    if isinstance(ev, HealthChanged) and ev.payload.instance == instance:
        p = ev.payload
        if p.status == "Degraded":
            return [("health-degraded", f"{ev.resource} is Degraded: {p.reason}: {p.detail}".rstrip(": "),
                     {"previous": p.previous, "reason": p.reason, "message": p.detail})]
        if p.previous == "Degraded" and p.status == "Healthy":
            return [("health-recovered", f"{ev.resource} is Healthy again", {"previous": p.previous})]
    if isinstance(ev, GitCommit) and not ev.payload.valid:  # Flux's "build failed", Argo CD's ComparisonError
        c = ev.payload
        n = f"{c.errors} error{'' if c.errors == 1 else 's'}"
        return [("commit-invalid", f"commit {c.sha[:12]} on {c.branch} is invalid ({n}): nothing of it is applied, and "
                                   "the cluster stays at the last valid commit till a valid one comes (gitops status "
                                   "lists the errors)",
                 {"commit": c.sha, "branch": c.branch, "errors": c.errors})]
    if isinstance(ev, ReconcileFinished) and _mass_prune_held(ev):
        return [("mass-prune-held", f"a mass prune was held: {ev.payload.held}", {"held": ev.payload.held})]
    return []


def _mass_prune_held(ev: ReconcileFinished) -> bool:
    return ev.payload.held is not None and "mass-prune" in ev.payload.held


class Notifier:
    """Delivers ``sinks``' notifications from the log at ``db_path``, from a thread of its own
    (``start``/``stop``), or one poll at a time (``poll``, for tests)."""

    def __init__(self, db_path: str | Path, sinks: Iterable[SinkSettings], *, instance: str,
                 cluster: str | None = None, git: str | None = None,
                 sleep: Callable[[float], None] = time.sleep, interval: float = 1.0) -> None:
        """``cluster`` and ``git``: the origins of this instance's sources (None: any)."""
        self.db_path, self.sinks, self.instance = db_path, list(sinks), instance
        self.cluster, self.git = cluster, git
        self.sleep, self.interval = sleep, interval
        self.secrets = {s.name: s.secret() for s in self.sinks}  # read now: a missing secret is a config error
        self._session = requests.Session()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tamper_told = False
        self._held: dict[str, bool] = {}  # by sink: the last pass it read held a mass prune

    def _name(self, sink: SinkSettings) -> str:
        return f"notify:{self.instance}:{sink.name}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(GitOpsError):  # the log cannot be read now (locked, busy): the next poll tries
                self.poll()
            self._stop.wait(self.interval)

    def poll(self) -> int:
        """Deliver what each sink has not dealt with yet; returns how many were sent."""
        sent = 0
        with open_log(self.db_path) as log:
            for sink in self.sinks:
                try:
                    sent += self._poll(log, sink)
                except TamperedLogError as e:
                    self._tamper(sink, e)
        return sent

    def _poll(self, log: EventLog, sink: SinkSettings) -> int:
        log.append([])  # the writer's check that the log is whole (TamperedLogError), before anything is sent
        cp = log.checkpoint(self._name(sink))
        if not isinstance(cp, dict) or not isinstance(cp.get("seq"), int):  # first time: from now on
            log.append([], checkpoint=self._mark(sink, log.last_seq()))
            return 0
        # a held mass prune is told when it begins, not at every pass that holds it again
        self._held[sink.name] = bool(cp.get("mass_prune_held"))
        after = int(cp["seq"])
        last = log.last_seq()
        if last - after > sink.max_pending:  # bounded: the oldest are skipped, and that is recorded
            skipped_to = last - sink.max_pending
            self._record(log, sink, NotifyFailed, "skipped", None, skipped_to, attempts=0,
                         error=f"{skipped_to - after} events were skipped: the sink fell more than "
                               f"{sink.max_pending} behind")
            after = skipped_to
        sent = 0
        # read first, then deliver and record: no write while the read is open on this connection
        read = [r for r in log.read(since_seq=after, until_seq=last, types=_TYPES)
                if _ours(r.event, self.cluster, self.git)]
        # of the commits read, each branch's newest only: an invalid commit a valid one followed held nothing back
        heads = {r.event.payload.origin: r.seq for r in read if isinstance(r.event, GitCommit)}
        for r in read:
            if isinstance(r.event, GitCommit) and heads[r.event.payload.origin] != r.seq:
                continue
            fired = [t for t in _of(r, self.instance) if t[0] in sink.triggers]
            if isinstance(r.event, ReconcileFinished):
                was, self._held[sink.name] = self._held.get(sink.name, False), _mass_prune_held(r.event)
                fired = [t for t in fired if t[0] != "mass-prune-held" or not was]
            if not fired:
                continue
            for trigger, summary, details in fired:
                sent += self._deliver(log, sink, r, trigger, summary, details)
        if last > after:
            log.append([], checkpoint=self._mark(sink, last))
        return sent

    def _mark(self, sink: SinkSettings, seq: int) -> Checkpoint:
        """Where ``sink`` is in the log, and whether the last pass read held a mass prune."""
        return Checkpoint(self._name(sink), {"seq": seq, "mass_prune_held": self._held.get(sink.name, False)})

    def _body(self, sink: SinkSettings, n: Notification) -> bytes:
        if sink.format == "slack":
            who = f" (by {n.actor})" if n.actor else ""
            return orjson.dumps({"text": f"[gitops {n.instance}] {n.trigger}: {n.summary}{who}"})
        return n.model_dump_json(by_alias=True).encode()

    def _post(self, sink: SinkSettings, body: bytes, delivery: str) -> tuple[int | None, str | None, int]:
        headers = {"Content-Type": "application/json", "User-Agent": "gitops-notify", "X-Gitops-Delivery": delivery}
        secret = self.secrets.get(sink.name)
        if secret is not None and sink.format == "generic":
            headers["X-Gitops-Signature"] = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        code, error, wait = None, None, sink.backoff
        for attempt in range(1, sink.retries + 2):
            try:
                r = self._session.post(sink.url, data=body, headers=headers, timeout=sink.timeout)
                code = r.status_code
                if 200 <= code < 300:
                    return code, None, attempt
                error = f"HTTP {code}"
                if 400 <= code < 500 and code not in (408, 429):
                    return code, error, attempt  # the receiver refuses it: trying again will not help
            except requests.RequestException as e:
                code, error = None, type(e).__name__
            if attempt <= sink.retries:
                self.sleep(wait)
                wait = min(wait * 2, 300.0)
        return code, error, sink.retries + 1

    def _deliver(self, log: EventLog, sink: SinkSettings, r: Recorded, trigger: Trigger, summary: str,
                 details: dict[str, Any]) -> int:
        delivery = event_id("notify", self.instance, sink.name, trigger, str(r.seq))
        n = Notification(delivery=delivery, trigger=trigger, time=r.event.effective_at,
                         summary=summary, resource=r.event.resource, actor=r.event.actor, instance=self.instance,
                         seq=r.seq, details=details)
        code, error, attempts = self._post(sink, self._body(sink, n), delivery)
        kind = NotifySent if error is None else NotifyFailed
        self._record(log, sink, kind, trigger, r.seq, r.seq, attempts=attempts, status_code=code, error=error,
                     delivery=delivery)
        return 1 if error is None else 0

    def _record(self, log: EventLog, sink: SinkSettings, kind: type[NotifySent] | type[NotifyFailed], trigger: str,
                cause: int | None, upto: int, *, attempts: int, status_code: int | None = None,
                error: str | None = None, delivery: str = "") -> None:
        event: AnyEvent = kind(
            id=event_id(kind.model_fields["type"].default, self.instance, sink.name, trigger, str(cause), delivery,
                        str(upto)),
            source=EventSource.RECONCILER, effective_at=utc_now(),
            payload=NotifyPayload(sink=sink.name, endpoint=sink.endpoint, trigger=trigger, delivery=delivery,
                                  cause_seq=cause, attempts=attempts, status_code=status_code, error=error))
        log.append([event], checkpoint=self._mark(sink, upto))

    def _tamper(self, sink: SinkSettings, e: TamperedLogError) -> None:
        """The log refuses writes: say so to the sink, once per process (it cannot be recorded)."""
        if self._tamper_told or "tamper" not in sink.triggers:
            return
        n = Notification(delivery=event_id("notify", self.instance, sink.name, "tamper", str(e)), trigger="tamper",
                         time=utc_now(), summary=f"the event log was tampered with: {e}", instance=self.instance)
        self._post(sink, self._body(sink, n), n.delivery)
        self._tamper_told = True



if __name__ == "__main__":  # make schema
    import sys

    Path(sys.argv[1]).write_text(notification_json_schema())
