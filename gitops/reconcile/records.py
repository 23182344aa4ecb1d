"""What a reconcile pass records, and what it gives its caller: the pass's events
(``reconcile.started``, ``reconcile.action``, ``reconcile.finished``, and the object an
apply returned as the ``cluster.observed`` it is) and its ``PassResult``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gitops.events.models import (
    AnyEvent,
    Attribution,
    ClusterDeleted,
    ClusterDeletedPayload,
    ClusterObserved,
    EventSource,
    Mode,
    ReconcileAction,
    ReconcileFinished,
    ReconcileFinishedPayload,
    ReconcileStarted,
    ReconcileStartedPayload,
    event_id,
)
from gitops.events.redaction import Redaction, redact, scheme_field
from gitops.model.keys import format_key, key_of
from gitops.reconcile.plan import Action, Plan
from gitops.sources.cluster.api import Applied

__all__ = ["PassEvents", "PassResult"]


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
    planned: list[tuple[Action, str | None]] = field(default_factory=list)  # dry run: action, error or note
    errors: list[tuple[Action, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    drift_opened: int = 0
    drift_closed: int = 0
    health_changed: int = 0
    duration: float = 0.0
    actions: list[tuple[str, str, str]] = field(default_factory=list)  # (action, Kind.group, result) recorded
    objects: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (sync status, health) this pass
    done: dict[str, str] = field(default_factory=dict)  # key -> what was done to it and succeeded (not a dry run)
    # the cluster served other kinds than the last discovery said (a CRD installed, or not yet): the
    # sources should discover again, so that the cluster's kinds are watched and Git's named as served
    kinds_changed: bool = False

    @property
    def out_of_sync(self) -> int:
        return len(self.plan.actions) + len(self.plan.skipped)


@dataclass(frozen=True)
class PassEvents:
    """The events of the passes of ``instance`` (as ``actor``, its field manager) on the
    cluster whose origin is ``cluster``; each made at the time it is given."""

    instance: str
    actor: str
    cluster: str
    redaction: Redaction

    def started(self, at: datetime, run_id: str, *, trigger: str, mode: Mode, revision: str | None, prune: bool,
                held: str | None) -> ReconcileStarted:
        return ReconcileStarted(
            id=event_id("reconcile.started", self.instance, run_id), source=EventSource.RECONCILER, actor=self.actor,
            effective_at=at, revision=revision,
            payload=ReconcileStartedPayload(cluster=self.cluster, run_id=run_id, trigger=trigger, mode=mode,
                                            desired_revision=revision, prune=prune, instance=self.instance, held=held))

    def observed(self, at: datetime, key: str, obj: dict[str, Any], *, created: bool) -> ClusterObserved:
        """The object an apply returned, as the observation it is (the watcher's event for
        the same resourceVersion has the same id, so it is stored once)."""
        rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        scheme = scheme_field(obj, self.redaction)  # a version seen before under another key is recorded again
        return ClusterObserved.model_validate({
            "id": event_id("cluster.observed", self.cluster, key, rv, *scheme.values()),
            "source": EventSource.CLUSTER,
            "resource": key, "actor": self.actor, "effective_at": at,
            "revision": rv,
            "payload": {"origin": self.cluster, "manifest": redact(obj, self.redaction), "resource_version": rv,
                        "change": "added" if created else "modified",
                        "manager": self.actor, "operation": "Apply",
                        "attribution": Attribution.RECONCILER, **scheme},
        })

    def seen(self, at: datetime, key: str, applied: Applied, namespaced: bool, *, deleted: str | None,
             watched: bool) -> list[AnyEvent]:
        """What an apply of ``key`` returned, as the observation it is, keyed as the server keys
        it (another scope than the plan's key when the log read Git before the cluster served
        the kind); after the deletion of the incarnation a recreate replaced (``deleted``, its
        uid) where no watch records that (``watched``)."""
        where = format_key(key_of(applied.object, namespaced=namespaced))
        out: list[AnyEvent] = [self.observed(at, where, applied.object, created=applied.created)]
        if deleted and not watched:
            out.insert(0, self.deleted(at, key, deleted))
        return out

    def deleted(self, at: datetime, key: str, uid: str) -> ClusterDeleted:
        """The incarnation ``uid`` of ``key`` that a recreate deleted, recorded by the pass
        itself where no watch records it (a one-shot pass: the list after it sees the object
        that replaced it, not the deletion). ``synthetic``: no watch saw it."""
        return ClusterDeleted(
            id=event_id("cluster.deleted", self.cluster, key, f"recreate:{uid}"), source=EventSource.CLUSTER,
            resource=key, actor=self.actor, effective_at=at,
            payload=ClusterDeletedPayload(origin=self.cluster, resource_version=None, synthetic=True, uid=uid,
                                          attribution=Attribution.RECONCILER))

    def action(self, at: datetime, run_id: str, action: Action, outcome: str, *, error: str | None = None,
               terminal: bool = False, dry_run: bool = False, code: int | None = None,
               reason: str | None = None, commit: str | None = None, revision: str | None = None,
               uid: str | None = None, op: str | None = None, dropped: Sequence[str] = (),
               id_parts: Sequence[str] | None = None) -> ReconcileAction:
        done = op or action.op
        return ReconcileAction.model_validate({
            "id": event_id("reconcile.action", self.instance, *(id_parts or (run_id,)), action.op, action.key),
            "source": EventSource.RECONCILER, "resource": action.key, "actor": self.actor,
            "effective_at": at, "revision": revision,
            "payload": {"cluster": self.cluster, "run_id": run_id, "action": done, "result": outcome,
                        "error": error, "terminal": terminal, "dry_run": dry_run, "code": code, "reason": reason,
                        "fields": list(action.fields), "commit": commit, "uid": uid,
                        "planned": action.op if done != action.op else None, "dropped": list(dropped)},
        })

    def finished(self, at: datetime, result: PassResult) -> ReconcileFinished:
        p = result.plan
        return ReconcileFinished(
            id=event_id("reconcile.finished", self.instance, result.run_id), source=EventSource.RECONCILER,
            actor=self.actor, effective_at=at, revision=result.desired_revision,
            payload=ReconcileFinishedPayload(
                cluster=self.cluster, run_id=result.run_id, status=result.status,
                created=result.created, updated=result.updated, pruned=result.pruned, failed=result.failed,
                unchanged=p.unchanged, skipped=len(p.skipped), out_of_sync=result.out_of_sync,
                duration_seconds=round(result.duration, 6), held=result.held))
