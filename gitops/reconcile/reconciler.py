"""One reconcile pass, in fixed, named steps, each recorded in the log.

1. **ingest**: the caller's hook brings new commits and observations into the log (the
   one-shot command ingests Git and lists the cluster; the running service's followers
   keep the log current and pass no hook).
2. **project**: desired (the last valid commit: invalid commits record no ``desired.*``
   events, so a commit with a ``source.error`` applies nothing) and actual, from the
   current-state tables.
3. **diff**: each desired object, with this instance's ownership label added, against
   the live one; live objects with the label that Git no longer has are orphans.
4. **drift**: the drift projection followed over the events since the last pass;
   episodes it opens or closes are recorded as ``drift.opened`` / ``drift.closed``.
5. **plan**: ``make_plan`` (order, prune guard, objects left alone, backoffs).
6. **apply**: each action through the port: server-side apply under the field manager
   (forcing conflicts, or not, by configuration), a CRD waited for until established,
   prunes of only this instance's objects with the uid as precondition. An error is
   recorded with the API's code, reason and message, and the rest goes on; transient
   errors are retried on later passes with capped exponential backoff, terminal ones
   once the desired or the live object changed.
7. **record**: ``reconcile.action`` per action, with the object the API returned recorded
   as the observation it is (the watcher's event for the same resourceVersion has the
   same id, so it is stored once); ``reconcile.finished`` with the counts.

A pass over an in-sync cluster sends no request to the API at all: the diff comes from the
log, and in-sync objects are not planned.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gitops.diff import OWNERSHIP_LABEL, DiffSettings, DriftTracker, diff_states, take_over
from gitops.diff.drift import DriftEpisode
from gitops.events.models import (
    AnyEvent,
    Attribution,
    ClusterObserved,
    DriftClosed,
    DriftClosedPayload,
    DriftOpened,
    DriftOpenedPayload,
    EventSource,
    Mode,
    ReconcileAction,
    ReconcileFinished,
    ReconcileFinishedPayload,
    ReconcileStarted,
    ReconcileStartedPayload,
    event_id,
)
from gitops.events.redaction import RedactionRule, redact
from gitops.model.errors import ClusterUnavailableError
from gitops.model.keys import parse_key
from gitops.model.times import utc_now
from gitops.projections import fold_actual, fold_desired
from gitops.projections.fold import ActualEntry, DesiredEntry
from gitops.reconcile.plan import Action, Plan, make_plan, owned_by
from gitops.reconcile.port import ApplyPort
from gitops.reconcile.settings import ReconcileSettings
from gitops.reconcile.windows import holding_window
from gitops.sources.cluster.client import ApiRefused, KindInfo
from gitops.sources.cluster.port import Backoff, Clock
from gitops.store import Checkpoint, EventLog
from gitops.store.current import STATE_TYPES

__all__ = ["PassResult", "Reconciler", "with_ownership"]

Manifests = Callable[[str, dict[str, str]], dict[str, dict[str, Any]]]
"""(commit, {key: path}) -> {key: manifest}: the unredacted objects to apply, read from Git."""


def with_ownership(manifest: dict[str, Any], instance: str) -> dict[str, Any]:
    """``manifest`` with this instance's ownership label (a copy)."""
    meta = dict(manifest.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), OWNERSHIP_LABEL: instance}
    return {**manifest, "metadata": meta}


@dataclass
class PassResult:
    run_id: str
    mode: Mode
    status: Literal["succeeded", "failed", "partial", "skipped"]
    plan: Plan
    held: str | None = None
    created: int = 0
    updated: int = 0
    pruned: int = 0
    failed: int = 0
    desired_revision: str | None = None  # the last valid commit, whose state the pass acted on
    planned: list[tuple[Action, str | None]] = field(default_factory=list)  # dry run: action, error
    errors: list[tuple[Action, str]] = field(default_factory=list)
    drift_opened: int = 0
    drift_closed: int = 0
    duration: float = 0.0

    @property
    def out_of_sync(self) -> int:
        return len(self.plan.actions) + len(self.plan.skipped)


@dataclass
class _Failure:
    inputs: tuple[int | None, int | None]  # (desired seq, actual seq) when it failed
    terminal: bool
    backoff: Backoff
    retry_at: float = 0.0
    message: str = ""


class Reconciler:
    """Makes the cluster behind ``port`` match what the log says Git desires."""

    def __init__(self, log: EventLog, port: ApplyPort, *, settings: ReconcileSettings, desired_origin: str | None,
                 actual_origin: str, manifests: Manifests, last_valid: Callable[[], str | None] = lambda: None,
                 diff: DiffSettings | None = None, redaction: Sequence[RedactionRule] = (),
                 clock: Clock = utc_now, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.port = port
        self.settings = settings
        self.desired_origin = desired_origin
        self.actual_origin = actual_origin
        self.manifests = manifests
        self.last_valid = last_valid
        self.diff = diff or DiffSettings()
        self.redaction = tuple(redaction)
        self.clock = clock
        self.monotonic = monotonic
        self.actor = settings.field_manager
        self._kinds: dict[tuple[str, str], KindInfo] | None = None
        self._failures: dict[str, _Failure] = {}
        self._pruned: dict[str, str | None] = {}  # key -> uid deleted, until the log sees it go
        self._tracker: DriftTracker | None = None
        self._drift_seq = 0
        self.stopping = threading.Event()  # set: the pass in progress ends after its current action
        self.watched: set[str] = set()  # the desired and owned objects of the last pass

    @property
    def open_drift(self) -> int:
        """Drift episodes open now (as the last pass recorded them)."""
        return 0 if self._tracker is None else len(self._tracker.open_episodes())

    # ------------------------------------------------------------------ the pass

    def run_pass(self, *, trigger: str = "manual", mode: Mode | None = None, allow_mass_prune: bool = False,
                 prune: bool | None = None, ingest: Callable[[], None] | None = None) -> PassResult:
        started = self.monotonic()
        run_id = uuid.uuid4().hex
        s = self.settings
        mode = mode or s.mode
        prune = s.prune if prune is None else prune
        held = "suspended" if s.suspend else None
        if held is None and mode == "apply":
            held = holding_window(s.windows, self.clock())
            if held is not None:
                mode = "detect-only"
        if self._tracker is None:  # the drift projection as of before this pass's ingest
            self._tracker, self._drift_seq = self._primed_tracker()
        # 1. ingest
        if ingest is not None and not s.suspend:
            ingest()
        revision = self.last_valid()
        self._append([ReconcileStarted(
            id=event_id("reconcile.started", s.instance, run_id), source=EventSource.RECONCILER, actor=self.actor,
            effective_at=self.clock(), revision=revision,
            payload=ReconcileStartedPayload(run_id=run_id, trigger=trigger, mode=mode, desired_revision=revision,
                                            prune=prune, instance=s.instance, held=held))])
        result = PassResult(run_id, mode, "skipped", Plan(), held=held, desired_revision=revision)
        if s.suspend:
            return self._finish(result, started)
        # 2. project
        desired = fold_desired(self.log.current("desired", origin=self.desired_origin))
        actual = fold_actual(self.log.current("actual", origin=self.actual_origin))
        self._forget_pruned(actual)
        desired_manifests = {k: e.manifest for k, e in desired.items()}
        live_manifests = {k: e.manifest for k, e in actual.items()}
        self.watched = set(desired) | {k for k, m in live_manifests.items() if owned_by(m, s.instance)}
        # 3. diff
        diffs = diff_states({k: with_ownership(m, s.instance) for k, m in desired_manifests.items()},
                            live_manifests, instance=s.instance, field_manager=s.field_manager,
                            ignore_managers=self.diff.ignore_managers, ignore=self.diff.ignore)
        # 4. drift
        result.drift_opened, result.drift_closed = self._record_drift()
        # 5. plan
        result.plan = plan = make_plan(
            diffs, desired=desired_manifests, actual=live_manifests, instance=s.instance, prune=prune,
            mass_prune_ratio=s.mass_prune_ratio, allow_mass_prune=allow_mass_prune,
            waiting=lambda key: self._waiting(key, desired.get(key), actual.get(key)))
        if plan.held is not None:
            result.held = plan.held if result.held is None else f"{result.held}; {plan.held}"
            self._append([self._action_event(run_id, a, "skipped", error=a.skipped) for a in plan.skipped
                          if a.op == "prune" and a.skipped == "held by the mass-prune guard"])
        if mode == "detect-only":
            result.status = "succeeded"
            return self._finish(result, started)
        # 6. apply, 7. record
        to_apply = self._read_manifests(plan.actions, desired)
        for action in plan.actions:
            if self.stopping.is_set():
                result.held = "stopped: the process is stopping" if result.held is None else result.held
                break
            self._carry_out(result, action, desired.get(action.key), actual.get(action.key), to_apply, mode)
        if result.created or result.updated or result.pruned:  # what the applies closed, recorded now
            opened, closed = self._record_drift()
            result.drift_opened, result.drift_closed = result.drift_opened + opened, result.drift_closed + closed
        done = result.created + result.updated + result.pruned + len(result.planned)
        result.status = "succeeded" if not result.failed else "failed" if not done else "partial"
        return self._finish(result, started)

    # ------------------------------------------------------------------ steps

    def _read_manifests(self, actions: list[Action], desired: dict[str, DesiredEntry]
                        ) -> dict[str, dict[str, Any]]:
        by_commit: dict[str, dict[str, str]] = {}
        for a in actions:
            entry = desired.get(a.key)
            if a.op != "prune" and entry is not None:
                by_commit.setdefault(entry.commit, {})[a.key] = entry.path
        out: dict[str, dict[str, Any]] = {}
        for commit, paths in by_commit.items():
            out.update(self.manifests(commit, paths))
        return out

    def _carry_out(self, result: PassResult, action: Action, want: DesiredEntry | None, live: ActualEntry | None,
                   manifests: dict[str, dict[str, Any]], mode: Mode) -> None:
        dry_run = mode == "dry-run"
        inputs = (want.seq if want else None, live.seq if live else None)
        try:
            uid = None
            if action.op == "prune":
                assert live is not None
                uid = self._prune(action, live, dry_run)
                events: list[AnyEvent] = []
            else:
                assert want is not None
                manifest = manifests.get(action.key)
                if manifest is None:
                    raise ApiRefused(404, "NotFound", f"{want.path} at {want.commit[:12]} no longer holds "
                                                      f"{action.key}")
                obj = self._apply(action, manifest, dry_run, want)
                events = [] if dry_run else [self._observed(action, obj)]
        except (ApiRefused, ClusterUnavailableError) as e:
            terminal = isinstance(e, ApiRefused) and not e.transient
            self._failed(action.key, inputs, terminal, str(e))
            result.failed += 1
            result.errors.append((action, str(e)))
            if dry_run:
                result.planned.append((action, str(e)))
            self._append([self._action_event(
                result.run_id, action, "failed", error=str(e), terminal=terminal, dry_run=dry_run,
                code=e.code if isinstance(e, ApiRefused) else None,
                reason=e.reason if isinstance(e, ApiRefused) else "Unavailable",
                commit=want.commit if want else None)])
            return
        self._failures.pop(action.key, None)
        if dry_run:
            result.planned.append((action, None))
        elif action.op == "create":
            result.created += 1
        elif action.op == "update":
            result.updated += 1
        else:
            result.pruned += 1
        revision = events[0].revision if events else None
        self._append([self._action_event(result.run_id, action, "planned" if dry_run else "succeeded",
                                         dry_run=dry_run, commit=want.commit if want else None,
                                         revision=revision, uid=uid), *events])

    def _kind(self, key: str, api_version: str | None = None) -> KindInfo:
        k = parse_key(key)
        for fresh in (False, True):
            if self._kinds is None or fresh:
                self._kinds = self.port.discover().kinds
            info = self._kinds.get((k.group, k.kind))
            if info is not None:
                if api_version and api_version != info.api_version:  # apply as Git wrote it
                    group, _, version = api_version.rpartition("/")
                    return KindInfo(group, version, info.kind, info.plural, info.namespaced, info.verbs, info.names)
                return info
        raise ApiRefused(404, "NotFound", f"the cluster does not serve {k.kind}{'.' + k.group if k.group else ''}")

    def _apply(self, action: Action, manifest: dict[str, Any], dry_run: bool, want: DesiredEntry) -> dict[str, Any]:
        kind = self._kind(action.key, str(manifest.get("apiVersion", "")))
        if action.extra and not dry_run:
            self._take_over(action, kind, want)
        obj = self.port.apply(kind, with_ownership(manifest, self.settings.instance),
                              field_manager=self.settings.field_manager, force=self.settings.force_conflicts,
                              dry_run=dry_run)
        if kind.kind == "CustomResourceDefinition" and not dry_run:
            self._wait_established(kind, obj)
            self._kinds = None  # its kind is served from now: discover again when asked
        return obj

    def _take_over(self, action: Action, kind: KindInfo, want: DesiredEntry) -> None:
        """Hand the fields other managers added (and Git does not set) to our field manager,
        so that the apply that follows removes them."""
        key = parse_key(action.key)
        live = self.port.get(kind, key.namespace or None, key.name)
        if live is None:
            return
        fields = take_over(with_ownership(want.manifest, self.settings.instance), live,
                           field_manager=self.settings.field_manager, ignore_managers=self.diff.ignore_managers)
        if fields is not None:
            rv = (live.get("metadata") or {}).get("resourceVersion")
            self.port.patch(kind, key.namespace or None, key.name,
                            {"metadata": {"managedFields": fields, "resourceVersion": rv}})

    def _wait_established(self, kind: KindInfo, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name"))
        deadline = self.monotonic() + self.settings.crd_timeout
        while True:
            conditions = (obj.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                return
            if self.monotonic() > deadline:
                raise ClusterUnavailableError(f"CustomResourceDefinition {name} was not established within "
                                              f"{self.settings.crd_timeout:g}s")
            time.sleep(0.1)
            obj = self.port.get(kind, None, name) or {}

    def _prune(self, action: Action, live: ActualEntry, dry_run: bool) -> str | None:
        """Delete that incarnation (uid) of the object; returns the uid."""
        key = parse_key(action.key)
        kind = self._kind(action.key)
        uid = (live.manifest.get("metadata") or {}).get("uid")
        self.port.delete(kind, key.namespace or None, key.name, uid=uid, dry_run=dry_run)
        if not dry_run:
            self._pruned[action.key] = uid
        return uid

    def _forget_pruned(self, actual: dict[str, ActualEntry]) -> None:
        for key, uid in list(self._pruned.items()):
            entry = actual.get(key)
            if entry is None or (entry.manifest.get("metadata") or {}).get("uid") != uid:
                del self._pruned[key]

    def _failed(self, key: str, inputs: tuple[int | None, int | None], terminal: bool, message: str) -> None:
        s = self.settings
        f = self._failures.get(key)
        if f is None or f.inputs != inputs:
            f = self._failures[key] = _Failure(inputs, terminal, Backoff(s.retry_initial, s.retry_max))
        f.terminal, f.message = terminal, message
        f.retry_at = self.monotonic() + f.backoff.delay()

    def _waiting(self, key: str, want: DesiredEntry | None, live: ActualEntry | None) -> str | None:
        if key in self._pruned:
            return "being deleted"
        f = self._failures.get(key)
        if f is None:
            return None
        if f.inputs != (want.seq if want else None, live.seq if live else None):
            del self._failures[key]  # the input changed: try again now
            return None
        if f.terminal and want is not None:
            return f"waiting for the desired or live object to change ({f.message})"
        if self.monotonic() < f.retry_at:
            return f"retrying in {f.retry_at - self.monotonic():.0f}s ({f.message})"
        return None

    # ------------------------------------------------------------------ drift

    def _record_drift(self) -> tuple[int, int]:
        """Follow the drift projection over the events since the last pass and record the
        episodes they opened or closed (``run_pass`` primes the tracker before its ingest)."""
        assert self._tracker is not None
        events: list[AnyEvent] = []
        last = self._drift_seq
        opened = closed = 0
        for r in self.log.read(since_seq=self._drift_seq, types=STATE_TYPES):
            last = r.seq
            origin = getattr(r.event.payload, "origin", "")
            if origin not in (self.desired_origin, self.actual_origin):
                continue
            ep = self._tracker.feed(r)
            if ep is None:
                continue
            episode_id = event_id("drift", ep.resource, str(ep.opened_seq))
            if ep.closed_seq is None:
                opened += 1
                events.append(DriftOpened(
                    id=event_id("drift.opened", episode_id), source=EventSource.RECONCILER, resource=ep.resource,
                    actor=ep.opened_by, effective_at=ep.opened_at,
                    payload=DriftOpenedPayload(episode_id=episode_id, fields=ep.fields, cause_seq=ep.opened_seq)))
            else:
                assert ep.how is not None and ep.closed_at is not None
                closed += 1
                events.append(DriftClosed(
                    id=event_id("drift.closed", episode_id), source=EventSource.RECONCILER, resource=ep.resource,
                    actor=ep.closed_by, effective_at=ep.closed_at,
                    payload=DriftClosedPayload(episode_id=episode_id, how=ep.how, cause_seq=ep.closed_seq)))
        self._drift_seq = max(last, self._drift_seq)
        self.log.append(events, checkpoint=Checkpoint(self._drift_checkpoint, {"seq": self._drift_seq}))
        return opened, closed

    @property
    def _drift_checkpoint(self) -> str:
        return f"reconciler:{self.settings.instance}:drift"

    def _primed_tracker(self) -> tuple[DriftTracker, int]:
        """The drift projection where the last pass left it (its checkpoint), or as of now
        on a first pass, from the current-state tables and snapshots and the episodes the
        log holds open, rather than from a fold of the whole log."""
        tracker = DriftTracker(field_manager=self.settings.field_manager)
        cp = self.log.checkpoint(self._drift_checkpoint)
        if isinstance(cp, dict) and isinstance(cp.get("seq"), int):  # where the last pass (any process) left it
            seq = int(cp["seq"])
            desired = fold_desired(self.log.state_at("desired", until_seq=seq, origin=self.desired_origin))
            actual = fold_actual(self.log.state_at("actual", until_seq=seq, origin=self.actual_origin))
        else:  # a first pass: from now on
            seq = self.log.last_seq()
            desired = fold_desired(self.log.current("desired", origin=self.desired_origin))
            actual = fold_actual(self.log.current("actual", origin=self.actual_origin))
        open_eps: dict[str, DriftEpisode] = {}
        for r in self.log.read(types=["drift.opened", "drift.closed"]):
            ev = r.event
            if isinstance(ev, DriftOpened) and ev.resource:
                open_eps[ev.resource] = DriftEpisode(ev.resource, ev.effective_at, ev.payload.cause_seq or r.seq,
                                                     ev.actor, list(ev.payload.fields))
            elif isinstance(ev, DriftClosed) and ev.resource:
                open_eps.pop(ev.resource, None)
        for key in set(desired) | set(actual):
            d, a = desired.get(key), actual.get(key)
            tracker.prime(key, d.manifest if d else None, a.manifest if a else None, open_eps.get(key))
        return tracker, seq

    # ------------------------------------------------------------------ events

    def _observed(self, action: Action, obj: dict[str, Any]) -> ClusterObserved:
        rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        return ClusterObserved.model_validate({
            "id": event_id("cluster.observed", self.actual_origin, action.key, rv), "source": EventSource.CLUSTER,
            "resource": action.key, "actor": self.settings.field_manager, "effective_at": self.clock(),
            "revision": rv,
            "payload": {"origin": self.actual_origin, "manifest": redact(obj, self.redaction), "resource_version": rv,
                        "change": "added" if action.op == "create" else "modified",
                        "manager": self.settings.field_manager, "operation": "Apply",
                        "attribution": Attribution.RECONCILER},
        })

    def _action_event(self, run_id: str, action: Action, result: str, *, error: str | None = None,
                      terminal: bool = False, dry_run: bool = False, code: int | None = None,
                      reason: str | None = None, commit: str | None = None,
                      revision: str | None = None, uid: str | None = None) -> ReconcileAction:
        return ReconcileAction.model_validate({
            "id": event_id("reconcile.action", self.settings.instance, run_id, action.op, action.key),
            "source": EventSource.RECONCILER, "resource": action.key, "actor": self.actor,
            "effective_at": self.clock(), "revision": revision,
            "payload": {"run_id": run_id, "action": action.op, "result": result, "error": error,
                        "terminal": terminal, "dry_run": dry_run, "code": code, "reason": reason,
                        "fields": list(action.fields), "commit": commit, "uid": uid},
        })

    def _finish(self, result: PassResult, started: float) -> PassResult:
        result.duration = self.monotonic() - started
        p = result.plan
        self._append([ReconcileFinished(
            id=event_id("reconcile.finished", self.settings.instance, result.run_id), source=EventSource.RECONCILER,
            actor=self.actor, effective_at=self.clock(), revision=result.desired_revision,
            payload=ReconcileFinishedPayload(
                run_id=result.run_id, status=result.status,
                created=result.created, updated=result.updated, pruned=result.pruned, failed=result.failed,
                unchanged=p.unchanged, skipped=len(p.skipped), out_of_sync=result.out_of_sync,
                duration_seconds=round(result.duration, 6), held=result.held))])
        return result

    def _append(self, events: list[AnyEvent]) -> None:
        if events:
            self.log.append(events)
