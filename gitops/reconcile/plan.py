"""The plan of a pass: from the diff to an ordered list of actions (pure).

- ``create`` an object Git desires and the cluster lacks, ``update`` one that differs,
  ``prune`` an orphan (an object carrying this instance's ownership label that Git no
  longer has) when pruning is on; in-sync objects are left alone (no request at all).
- Order: Namespaces, then CRDs and the other kinds in a fixed order (what others depend on
  first, as Helm and Flux order them), custom resources last; prunes in the reverse order.
- Left alone, with the reason recorded: objects annotated ``gitops.dev/reconcile:
  disabled`` (in Git or in the cluster), objects the caller says to wait for (a backoff),
  and every prune of a pass that would prune more than ``mass_prune_ratio`` of the owned
  objects, unless allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gitops.diff import OWNERSHIP_LABEL, ObjectDiff, Status
from gitops.diff import Op as DiffOp
from gitops.model.keys import parse_key
from gitops.reconcile.settings import DISABLE_ANNOTATION

__all__ = ["KIND_ORDER", "Action", "Plan", "kind_rank", "make_plan", "owned_by"]

KIND_ORDER: tuple[str, ...] = (
    "Namespace", "ResourceQuota", "LimitRange", "PodSecurityPolicy", "PriorityClass", "NetworkPolicy",
    "CustomResourceDefinition", "ServiceAccount", "Secret", "ConfigMap", "StorageClass", "PersistentVolume",
    "PersistentVolumeClaim", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Endpoints",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler",
    "StatefulSet", "Job", "CronJob", "PodDisruptionBudget", "IngressClass", "Ingress", "APIService",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
)
"""The order objects are applied in (pruned in reverse); other kinds come after these."""

_RANK = {k: i for i, k in enumerate(KIND_ORDER)}

Op = Literal["create", "update", "prune"]


def kind_rank(key: str) -> tuple[int, str]:
    return _RANK.get(parse_key(key).kind, len(KIND_ORDER)), key


def owned_by(manifest: Mapping[str, Any], instance: str) -> bool:
    labels = (manifest.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(OWNERSHIP_LABEL) == instance)


def _disabled(manifest: Mapping[str, Any] | None) -> bool:
    if manifest is None:
        return False
    annotations = (manifest.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(DISABLE_ANNOTATION, "")).lower() == "disabled"


@dataclass(frozen=True)
class Action:
    key: str
    op: Op
    fields: tuple[str, ...] = ()  # what differed
    skipped: str | None = None  # why it is left alone, if it is
    extra: bool = False  # another manager added fields Git does not set (taken over, then removed)


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)  # to carry out, in order
    skipped: list[Action] = field(default_factory=list)  # left alone, with why
    unchanged: int = 0
    held: str | None = None  # the mass-prune guard held the prunes

    @property
    def prunes(self) -> list[Action]:
        return [a for a in self.actions if a.op == "prune"]


def make_plan(diffs: list[ObjectDiff], *, desired: Mapping[str, Mapping[str, Any]],
              actual: Mapping[str, Mapping[str, Any]], instance: str, prune: bool, mass_prune_ratio: float,
              allow_mass_prune: bool = False, waiting: Callable[[str], str | None] = lambda key: None) -> Plan:
    plan = Plan()
    applies: list[Action] = []
    prunes: list[Action] = []
    for d in diffs:
        if d.status == Status.IN_SYNC:
            plan.unchanged += 1
            continue
        if d.status == Status.ORPHAN and not prune:
            continue
        op: Op = {Status.MISSING: "create", Status.OUT_OF_SYNC: "update", Status.ORPHAN: "prune"}[d.status]  # type: ignore[assignment]
        action = Action(d.key, op, tuple(i.path or "(the whole object)" for i in d.items),
                        extra=any(i.op == DiffOp.EXTRA for i in d.items))
        why = ("annotated gitops.dev/reconcile: disabled"
               if _disabled(desired.get(d.key)) or _disabled(actual.get(d.key)) else waiting(d.key))
        if why is not None:
            plan.skipped.append(Action(action.key, action.op, action.fields, why, action.extra))
        else:
            (prunes if op == "prune" else applies).append(action)
    owned = sum(1 for m in actual.values() if owned_by(m, instance))
    if prunes and not allow_mass_prune and len(prunes) > mass_prune_ratio * owned:
        plan.held = (f"mass-prune: {len(prunes)} of {owned} owned objects would be pruned, over "
                     f"{mass_prune_ratio:.0%}; run with --allow-mass-prune to confirm")
        plan.skipped.extend(Action(a.key, a.op, a.fields, "held by the mass-prune guard") for a in prunes)
        prunes = []
    plan.actions = sorted(applies, key=lambda a: kind_rank(a.key)) + sorted(
        prunes, key=lambda a: kind_rank(a.key), reverse=True)
    return plan
