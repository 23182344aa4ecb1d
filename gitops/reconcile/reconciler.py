"""One reconcile pass, in fixed, named steps, each recorded in the log.

1. **ingest**: the caller's hook brings new commits and observations into the log (the
   one-shot command ingests Git and lists the cluster; the running service's followers
   keep the log current and pass no hook).
2. **wait for the cluster**: no pass plans before every watched kind has been listed
   (``cluster_synced``): planned from a half-listed cluster, a pass would "create" what
   exists and record that it did.
3. **project**: desired (the last valid commit: invalid commits record no ``desired.*``
   events, so a commit with a ``source.error`` applies nothing) and actual, from the
   current-state tables; the server's schema the cluster source keeps beside them.
4. **diff**: each desired object, with this instance's ownership label added, against
   the live one; live objects with the label that Git no longer has are orphans.
5. **drift**: ``DriftRecorder`` records the episodes the events since the last pass
   opened or closed.
6. **plan**: ``make_plan`` (order, what the cascade of a pruned Namespace or CRD would
   take, the prune guard, objects left alone: annotated, another instance's, in backoff,
   in conflict with a controller). Holds that say why are recorded.
7. **apply**: each action through ``Applier`` (the lease taken first, and only, when
   there is something to apply): an error is recorded with the API's code, reason and
   message, and the rest goes on (``Holds``: backoff, bounded 500s, terminal errors).
8. **record**: ``reconcile.action`` per action, typed by what the API server answered
   (201 created, 200 updated); the object it returned is the observation it is, left to
   the watch when one feeds the log (``observations``: recorded in the order the cluster
   made it); ``reconcile.finished`` with the counts. A pass a kill cut short is found by the
   next one (``RunningPasses``) and recorded as ``reconcile.interrupted``.

A pass over an in-sync cluster sends no request to the API at all: the diff comes from the
log, and in-sync objects are not planned.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from gitops.diff import DiffSettings, ObjectDiff, Status, diff_states
from gitops.events.models import (
    AnyEvent,
    Mode,
)
from gitops.events.redaction import Redaction, RedactionRule, as_redaction
from gitops.model.errors import ClusterUnavailableError
from gitops.model.keys import parse_key
from gitops.model.times import utc_now
from gitops.projections import fold_actual, fold_desired
from gitops.projections.fold import ActualEntry, DesiredEntry
from gitops.projections.inventory import ever_desired
from gitops.reconcile.apply import NOT_SERVED, Applier, with_ownership
from gitops.reconcile.cascade import CASCADING_KINDS, Contents
from gitops.reconcile.drift_step import DriftRecorder
from gitops.reconcile.guard import still_held
from gitops.reconcile.health_step import HealthRecorder
from gitops.reconcile.holds import Holds
from gitops.reconcile.inventory import not_in_inventory
from gitops.reconcile.observations import Handoff
from gitops.reconcile.plan import Action, Hold, Plan, make_plan, owned_by
from gitops.reconcile.port import ApplyPort
from gitops.reconcile.records import PassEvents, PassResult
from gitops.reconcile.running import RunningPasses
from gitops.reconcile.settings import ReconcileSettings
from gitops.reconcile.suspension import suspension
from gitops.reconcile.windows import holding_window
from gitops.sources.cluster.api import AccessDenied, ApiRefused
from gitops.sources.cluster.port import Clock
from gitops.store import EventLog
from gitops.store.openapi import load_schemas

__all__ = ["PassResult", "Reconciler", "with_ownership"]

Manifests = Callable[[str, dict[str, str]], dict[str, dict[str, Any]]]
"""(commit, {key: path}) -> {key: manifest}: the unredacted objects to apply, read from Git."""

Acquire = Callable[[], str | None]
"""Take the lease before the first write of a pass: None when taken, else why not."""


class Reconciler:
    """Makes the cluster behind ``port`` match what the log says Git desires."""

    def __init__(self, log: EventLog, port: ApplyPort, *, settings: ReconcileSettings, desired_origin: str | None,
                 actual_origin: str, manifests: Manifests, last_valid: Callable[[], str | None] = lambda: None,
                 diff: DiffSettings | None = None, redaction: Redaction | Sequence[RedactionRule] = (),
                 clock: Clock = utc_now, monotonic: Callable[[], float] = time.monotonic,
                 identity: str | None = None, namespaces: Sequence[str] = ()) -> None:
        self.log = log
        self.namespaces = frozenset(namespaces)  # the only ones it acts in (cluster.namespaces); empty: all
        self.port = port
        self.settings = settings
        self.desired_origin = desired_origin
        self.actual_origin = actual_origin
        self.manifests = manifests
        self.last_valid = last_valid
        self.diff = diff or DiffSettings()
        self.redaction = as_redaction(redaction)
        self.events = PassEvents(settings.instance, settings.field_manager, actual_origin, self.redaction)
        self.clock = clock
        self.actor = settings.field_manager
        self.applier = Applier(port, settings, self.diff, monotonic=monotonic)
        self.holds = Holds(settings, monotonic)
        self.drift = DriftRecorder(log, instance=settings.instance, field_manager=settings.field_manager,
                                   diff=self.diff, desired_origin=desired_origin, actual_origin=actual_origin)
        self.health = HealthRecorder(log, instance=settings.instance, rules=settings.health.rules,
                                     cluster=actual_origin, clock=lambda: self.clock())  # noqa: PLW0108 - tests move self.clock on
        self.running = RunningPasses(log, instance=settings.instance, actor=self.actor,
                                     identity=identity or f"reconciler-{uuid.uuid4().hex[:12]}")
        self.cluster_synced: Callable[[float], bool] | None = None  # the service's: every watched kind listed
        self.observations = Handoff()  # what the applies returned: left to the watch where one feeds the log
        self.sync_timeout = 60.0
        self.stopping = threading.Event()  # set: the pass in progress ends after its current action
        self.watched: set[str] = set()  # the desired and owned objects of the last pass, and what waits on them
        self._monotonic = monotonic
        self._warned: set[tuple[str, int]] = set()
        self._looked_for_interrupted = False
        self._checked_as_applier = False

    @property
    def monotonic(self) -> Callable[[], float]:
        return self._monotonic

    @monotonic.setter
    def monotonic(self, value: Callable[[], float]) -> None:  # tests move time on
        self._monotonic = self.holds.monotonic = self.applier.monotonic = value

    @property
    def open_drift(self) -> int:
        """Drift episodes open now (as the last pass recorded them)."""
        return self.drift.open_episodes

    # ------------------------------------------------------------------ the pass

    def run_pass(self, *, trigger: str = "manual", mode: Mode | None = None, allow_mass_prune: bool = False,
                 prune: bool | None = None, ingest: Callable[[], None] | None = None,
                 acquire: Acquire | None = None) -> PassResult:
        started = self.monotonic()
        run_id = uuid.uuid4().hex
        s = self.settings
        mode = mode or s.mode
        prune = s.prune if prune is None else prune
        suspended = suspension(self.log, s.instance)  # gitops suspend: honoured from the next pass
        held = "suspended" if s.suspend else suspended.describe() if suspended is not None else None
        if suspended is not None:
            s = s.model_copy(update={"suspend": True})
        if held is None and mode == "apply":
            held = holding_window(s.windows, self.clock())
            if held is not None:
                mode = "detect-only"
        schemas = load_schemas(self.log, self.actual_origin)
        self.drift.prime(schemas)  # the drift projection as of before this pass's ingest
        # 1. ingest
        if ingest is not None and not s.suspend:
            ingest()
        # 2. wait for the cluster
        waiting = held is None and self.cluster_synced is not None and not self.cluster_synced(self.sync_timeout)
        if waiting:
            held = "waiting for the cluster: not every watched kind has been listed yet"
        if not self._looked_for_interrupted and not s.suspend:  # a process of this host that died mid-pass
            self._looked_for_interrupted = True
            self.running.find_interrupted(applying=False)
        if mode == "apply" and acquire is None:  # the caller holds the lease (or runs without one)
            self._find_interrupted_as_applier()
        revision = self.last_valid()
        self.log.append([self.events.started(self.clock(), run_id, trigger=trigger, mode=mode, revision=revision,
                                             prune=prune, held=held)], checkpoint=self.running.started(run_id, mode))
        result = PassResult(run_id, mode, "skipped", Plan(), held=held, desired_revision=revision)
        if s.suspend or waiting:
            return self._finish(result, started)
        # 3. project (the schema again: the ingest may have brought a newer one)
        schemas = load_schemas(self.log, self.actual_origin)
        desired = fold_desired(self.log.current("desired", origin=self.desired_origin))
        actual = fold_actual(self.log.current("actual", origin=self.actual_origin))
        self.holds.forget_pruned(actual)
        desired_manifests = {k: e.manifest for k, e in desired.items()}
        live_manifests = {k: e.manifest for k, e in actual.items()}
        # 4. diff
        diffs = diff_states({k: with_ownership(m, s.instance) for k, m in desired_manifests.items()},
                            live_manifests, instance=s.instance, field_manager=s.field_manager,
                            ignore_managers=self.diff.ignore_managers, ignore=self.diff.ignore, schemas=schemas)
        # 5. drift, and health as the live objects show it
        result.drift_opened, result.drift_closed = self.drift.record()
        result.health_changed = len(self.health.record(desired, actual))
        result.objects = {d.key: (d.status.value, self.health.last.get(d.key, "")) for d in diffs}
        # 6. plan
        cascades = self._cascades(diffs, actual) if prune else {}

        result.plan = plan = make_plan(
            diffs, desired=desired_manifests, actual=live_manifests, instance=s.instance, prune=prune,
            mass_prune_ratio=s.mass_prune_ratio, allow_mass_prune=allow_mass_prune,
            waiting=lambda d: self._hold(d, desired, actual, s.instance), cascades=cascades,
            adopt_from=s.adopt_from, namespaces=self.namespaces, namespaced=self.applier.served_namespaced,
            held_before=lambda keys: still_held(self.log, keys, cluster=self.actual_origin,
                                                desired_origin=self.desired_origin))
        self.watched = set(desired) | {k for k, m in live_manifests.items() if owned_by(m, s.instance)} | {
            f"Namespace/{parse_key(k).namespace}" for k in self.holds.failures if parse_key(k).namespace}
        if plan.held is not None:
            result.held = plan.held if result.held is None else f"{result.held}; {plan.held}"
        self._record_holds(result, desired, actual)
        if mode == "detect-only":
            result.status = "succeeded" if not result.failed else "failed"
            return self._finish(result, started)
        # 7. apply (the lease first, only when there is something to apply), 8. record
        self._apply(result, desired, actual, mode, acquire)
        return self._finish(result, started, desired)

    def _judge_applied(self, result: PassResult, desired: dict[str, DesiredEntry]) -> None:
        """What the pass applied, judged as the server answered: not left "Missing" till the next pass."""
        if not result.done:
            return
        now = fold_actual(self.log.current("actual", origin=self.actual_origin))
        result.health_changed += len(self.health.record(desired, now))
        result.objects = {k: (sync, self.health.last.get(k, "")) for k, (sync, _) in result.objects.items()}

    # ------------------------------------------------------------------ steps

    def _apply(self, result: PassResult, desired: dict[str, DesiredEntry], actual: dict[str, ActualEntry],
               mode: Mode, acquire: Acquire | None) -> None:
        plan = result.plan
        if plan.actions and mode == "apply" and acquire is not None:
            refused = acquire()
            if refused is not None:
                result.held = refused if result.held is None else f"{result.held}; {refused}"
                return
            self._find_interrupted_as_applier()
        to_apply = self._read_manifests(plan.actions, desired)
        new_namespaces = {parse_key(a.key).name for a in plan.actions
                          if a.op == "create" and a.key.startswith("Namespace/") and a.key not in actual}
        for action in plan.actions:
            if self.stopping.is_set():
                result.held = "stopped: the process is stopping" if result.held is None else result.held
                break
            want, live = desired.get(action.key), actual.get(action.key)
            self._carry_out(result, action, want, live, to_apply, mode, new_namespaces=new_namespaces,
                            inputs=self.holds.inputs(action.key, want, live, actual))
        self.observations.settle(self.log, self.stopping)
        if result.created or result.updated or result.pruned:  # what the applies closed, recorded now
            opened, closed = self.drift.record()
            result.drift_opened, result.drift_closed = result.drift_opened + opened, result.drift_closed + closed
        done = result.created + result.updated + result.pruned + len(result.planned)
        result.status = "succeeded" if not result.failed else "failed" if not done else "partial"

    def _find_interrupted_as_applier(self) -> None:
        """Holding the lease, no other process of the instance applies: a pass of one
        that never ended, on any host, was cut short."""
        if not self._checked_as_applier:
            self._checked_as_applier = True
            self.running.find_interrupted(applying=True)

    def _cascades(self, diffs: list[ObjectDiff], actual: dict[str, ActualEntry]) -> dict[str, Contents]:
        """What each orphan Namespace and CRD holds, listed now (only when one is to be pruned)."""
        out: dict[str, Contents] = {}
        for d in diffs:
            k = parse_key(d.key)
            if d.status.value != "orphan" or (k.group, k.kind) not in CASCADING_KINDS or d.key not in actual:
                continue
            try:
                out[d.key] = self.applier.contents(d.key, actual[d.key].manifest)
            except (ApiRefused, AccessDenied, ClusterUnavailableError) as e:
                out[d.key] = Contents(unlisted={"its": str(e)})
        return out

    def _record_holds(self, result: PassResult, desired: dict[str, DesiredEntry],
                      actual: dict[str, ActualEntry]) -> None:
        """Record the holds that say why (once for each situation: the event's id is made
        of the object's inputs and the reason); count and remember the failed ones."""
        events: list[AnyEvent] = []
        for a in result.plan.skipped:
            if a.reason is None:
                continue
            want, live = desired.get(a.key), actual.get(a.key)
            inputs = self.holds.inputs(a.key, want, live, actual)
            if a.failed:
                self.holds.failed(a.key, inputs, terminal=True, code=None, message=a.skipped or "")
                result.failed += 1
                result.errors.append((a, a.skipped or ""))
            result.actions.append((a.op, a.key.split("/", 1)[0], "failed" if a.failed else "skipped"))
            events.append(self.events.action(
                self.clock(), result.run_id, a, "failed" if a.failed else "skipped", error=a.skipped, terminal=a.failed,
                reason=a.reason, commit=want.commit if want else None,
                id_parts=("held", a.reason, *(str(i) for i in inputs), a.skipped or "")))
        if events:
            self.log.append(events)

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
                   manifests: dict[str, dict[str, Any]], mode: Mode, *, new_namespaces: set[str],
                   inputs: tuple[int | None, int | None, int | None]) -> None:
        dry_run = mode == "dry-run"
        op: str = action.op
        dropped: list[str] = []
        try:
            uid = None
            events: list[AnyEvent] = []
            if action.op == "prune":
                assert live is not None
                uid = self.applier.prune(action.key, live.manifest, dry_run=dry_run)
                if not dry_run:
                    self.holds.pruned[action.key] = uid
            else:
                assert want is not None
                manifest = manifests.get(action.key)
                if manifest is None:
                    raise ApiRefused(404, "NotFound", f"{want.path} at {want.commit[:12]} no longer holds "
                                                      f"{action.key}")
                kind = self.applier.kind(action.key, str(manifest.get("apiVersion", "")))
                _, dropped = self.applier.to_send(action.key, manifest, kind)
                self._warn(result, action.key, want, dropped)
                if dry_run and parse_key(action.key).namespace in new_namespaces:
                    result.planned.append((action, f"not checked by the server: its namespace "
                                                   f"{parse_key(action.key).namespace} would be created first"))
                    self._record_action(result, action, "planned", dry_run=True, commit=want.commit, dropped=dropped)
                    return
                adopt = action.op == "update" and live is not None and not _applied_by(live, self.actor)
                applied, op, uid = self.applier.apply_or_recreate(
                    action.key, manifest, live.manifest if live is not None else None, dry_run=dry_run,
                    take=action.extra, adopt=adopt)
                if self.applier.learned:
                    self.applier.learned, result.kinds_changed = False, True
                events = [] if dry_run else self.events.seen(self.clock(), action.key, applied, kind.namespaced,
                                                             deleted=uid, watched=self.observations.watched)
        except (ApiRefused, ClusterUnavailableError) as e:
            code = e.code if isinstance(e, ApiRefused) else None
            unserved = isinstance(e, ApiRefused) and e.reason == NOT_SERVED  # its CRD may come: no giving up
            result.kinds_changed |= unserved
            terminal, message = self.holds.failed(action.key, inputs, terminal=isinstance(e, ApiRefused)
                                                  and not e.transient and not unserved,
                                                  code=None if unserved else code, message=str(e))
            result.failed += 1
            result.errors.append((action, message))
            if dry_run:
                result.planned.append((action, message))
            self._record_action(result, action, "failed", error=message, terminal=terminal, dry_run=dry_run,
                                code=code, reason=e.reason if isinstance(e, ApiRefused) else "Unavailable",
                                commit=want.commit if want else None, dropped=dropped)
            return
        self.holds.succeeded(action.key, op="create" if op == "recreate" else op, fields=action.fields)
        if dry_run:
            result.planned.append((action, None))
        elif op == "create":
            result.created += 1
        elif op in ("update", "recreate"):
            result.updated += 1
        else:
            result.pruned += 1
        revision = events[-1].revision if events else None  # the version the apply made
        self._record_action(result, action, "planned" if dry_run else "succeeded", dry_run=dry_run, op=op,
                            commit=want.commit if want else None, revision=revision, uid=uid, dropped=dropped,
                            also=events)

    def _hold(self, d: ObjectDiff, desired: dict[str, DesiredEntry], actual: dict[str, ActualEntry],
              instance: str) -> Hold | None:
        """Why the plan should leave ``d`` alone this pass, if it should."""
        if d.status == Status.ORPHAN and not ever_desired(self.log, d.key, origin=self.desired_origin):
            return not_in_inventory(instance)
        want, live = desired.get(d.key), actual.get(d.key)
        return self.holds.hold(d, want, live, self.holds.inputs(d.key, want, live, actual))

    def _warn(self, result: PassResult, key: str, want: DesiredEntry, dropped: list[str]) -> None:
        if dropped and (key, want.seq) not in self._warned:
            self._warned.add((key, want.seq))
            result.warnings.append(f"{key}: {want.path} at {want.commit[:12]} holds fields only the API server sets "
                                   f"({', '.join(dropped)}); they were left out of the apply")

    # ------------------------------------------------------------------ events

    def _record_action(self, result: PassResult, action: Action, outcome: str, *, also: Sequence[AnyEvent] = (),
                       **kw: Any) -> None:
        result.actions.append((kw.get("op") or action.op, action.key.split("/", 1)[0], outcome))
        if outcome == "succeeded" and not kw.get("dry_run"):
            result.done[action.key] = kw.get("op") or action.op
        self.log.append([self.events.action(self.clock(), result.run_id, action, outcome, **kw),
                         *self.observations.keep(also)])

    def _finish(self, result: PassResult, started: float,
                desired: dict[str, DesiredEntry] | None = None) -> PassResult:
        if desired is not None:  # a pass that applied: what it applied is judged too
            self._judge_applied(result, desired)
        result.duration = self.monotonic() - started
        self.log.append([self.events.finished(self.clock(), result)], checkpoint=self.running.finished())
        return result


def _applied_by(live: ActualEntry, field_manager: str) -> bool:
    """Whether the live object has an Apply entry of ours: the reconciler applied it before."""
    entries = (live.manifest.get("metadata") or {}).get("managedFields") or []
    return any(e.get("manager") == field_manager and e.get("operation") == "Apply" for e in entries)
