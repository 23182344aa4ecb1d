"""The plan of a pass: from the diff to an ordered list of actions (pure).

- ``create`` an object Git desires and the cluster lacks, ``update`` one that differs,
  ``prune`` an orphan (an object carrying this instance's ownership label that Git no
  longer has) when pruning is on; in-sync objects are left alone (no request at all).
- Order: Namespaces, then CRDs and the other kinds in a fixed order (what others depend on
  first, as Helm and Flux order them), custom resources last; prunes in the reverse order.
- Left alone, with the reason recorded: objects annotated ``gitops.dev/reconcile:
  disabled`` (in Git or in the cluster); objects another instance's ownership label names
  (a ``shared-resource`` error, unless ``adopt_from`` lists that instance, as Argo CD warns
  of a resource two applications share); objects the caller says to wait for (a backoff, a
  conflict with a controller); a Namespace or CRD whose deletion would take with it what
  gitops must not delete (``prune-blocked``, see ``cascade``); and every prune of a pass
  that would delete more than ``mass_prune_ratio`` of the owned objects, counting what
  the cascades of pruned Namespaces and CRDs delete, unless allowed; a prune it held stays
  held in the passes after, until allowed (``guard``).
- Named in the wrong scope, an error recorded as failed (``ScopeMismatch``): Git's object
  read as namespaced (``Widget.example/default/w``) while the cluster serves its kind as
  cluster-scoped, or the other way round (the log read Git before the cluster served the
  kind). Neither the object Git names nor its live twin in the other scope is created,
  updated or pruned: pruning the twin as an orphan would delete what Git asks for.
- Out of scope, and so an error recorded as failed (``OutOfScope``): with the cluster source
  limited to some namespaces (``cluster.namespaces``), an object in any other namespace, or
  a Namespace not among them: this instance neither reads nor may write there, and Git
  asking for it is a mistake someone must fix.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from gitops.diff import OWNERSHIP_LABEL, ObjectDiff, Status
from gitops.diff import Op as DiffOp
from gitops.model.keys import parse_key
from gitops.reconcile.cascade import CASCADING_KINDS, Contents, judge_cascade
from gitops.reconcile.settings import DISABLE_ANNOTATION, annotated

__all__ = ["KIND_ORDER", "MASS_PRUNE", "Action", "Hold", "Plan", "kind_rank", "make_plan", "owned_by", "owner_of"]

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


def owner_of(manifest: Mapping[str, Any] | None) -> str | None:
    """The instance whose ownership label the object carries, if any."""
    labels = ((manifest or {}).get("metadata") or {}).get("labels") or {}
    owner = labels.get(OWNERSHIP_LABEL)
    return None if owner is None else str(owner)


def owned_by(manifest: Mapping[str, Any], instance: str) -> bool:
    return owner_of(manifest) == instance


def _disabled(manifest: Mapping[str, Any] | None) -> bool:
    return annotated(manifest, DISABLE_ANNOTATION, "disabled")


def _outside(key: str, namespaces: Collection[str]) -> str | None:
    """The namespace ``key`` is in (or is) when that is not one of ``namespaces``."""
    if not namespaces:
        return None
    k = parse_key(key)
    namespace = k.name if (k.group, k.kind) == ("", "Namespace") else k.namespace
    return f"namespace {namespace}" if namespace and namespace not in namespaces else None


MASS_PRUNE = "MassPrune"  # the reason code of the mass-prune guard's holds


@dataclass(frozen=True)
class Hold:
    """Why an object is left alone this pass. With a ``reason`` (a code such as
    ``PruneBlocked``) the hold is recorded as a ``reconcile.action``; ``failed`` ones are
    errors someone must act on (recorded as failed and terminal, counted in the pass's
    failures)."""

    why: str
    reason: str | None = None
    failed: bool = False


_GUARDED = Hold("held by the mass-prune guard", MASS_PRUNE)


@dataclass(frozen=True)
class Action:
    key: str
    op: Op
    fields: tuple[str, ...] = ()  # what differed
    skipped: str | None = None  # why it is left alone, if it is
    extra: bool = False  # another manager added fields Git does not set (taken over, then removed)
    reason: str | None = None  # a recorded hold's code (see Hold)
    failed: bool = False  # a hold that is an error


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)  # to carry out, in order
    skipped: list[Action] = field(default_factory=list)  # left alone, with why
    unchanged: int = 0
    held: str | None = None  # the mass-prune guard held the prunes, or a cascade blocked one
    cascaded: int = 0  # objects the cascades of the pruned Namespaces and CRDs delete besides the prunes

    @property
    def prunes(self) -> list[Action]:
        return [a for a in self.actions if a.op == "prune"]


def _hold(action: Action, hold: Hold) -> Action:
    return replace(action, skipped=hold.why, reason=hold.reason, failed=hold.failed)


def _judge_cascades(plan: Plan, prunes: list[Action], cascades: Mapping[str, Contents], *, instance: str,
                    desired: Collection[str]) -> list[Action]:
    """The prunes that may go ahead; a Namespace or CRD whose cascade would delete what
    gitops must not is held (``prune-blocked``), what the others take with them counted."""
    pruning = {a.key for a in prunes}
    kept: list[Action] = []
    for a in prunes:
        k = parse_key(a.key)
        if (k.group, k.kind) not in CASCADING_KINDS:
            kept.append(a)
            continue
        contents = cascades.get(a.key)
        blocked, extra = (None, 0) if contents is None else judge_cascade(
            a.key, contents, instance=instance, desired=desired, pruning=pruning)
        if contents is None:
            why = "prune-blocked: what it holds is not known"
        elif blocked is not None:
            why = blocked.message
        else:
            plan.cascaded += extra
            kept.append(a)
            continue
        plan.skipped.append(_hold(a, Hold(why, "PruneBlocked")))
        plan.held = f"{a.key}: {why}" if plan.held is None else f"{plan.held}; {a.key}: {why}"
    return kept


def _scope_mismatches(diffs: list[ObjectDiff], desired: Collection[str], actual: Collection[str],
                      namespaced: Callable[[str, str], bool | None]) -> dict[str, Hold]:
    """The keys of the diffs named in a scope the cluster does not serve their kind in: a
    desired key and a live one of the same kind and name in the two scopes (both held), or
    a desired key whose kind the cluster serves in the other scope. Only objects Git desires
    and the cluster lacks are looked at: an in-sync pass pays nothing."""
    out: dict[str, Hold] = {}
    for d in diffs:
        if d.status != Status.MISSING:  # desired, not live
            continue
        k = parse_key(d.key)
        head = d.key.partition("/")[0]
        if k.namespaced:
            twins = [t for t in (f"{head}/{k.name}",) if t in actual and t not in desired]
        else:
            twins = [t for t in actual if t.startswith(head + "/") and t.endswith("/" + k.name)
                     and t.count("/") == 2 and t not in desired]
        served = namespaced(k.group, k.kind)
        if not twins and (served is None or served == k.namespaced):
            continue
        scope = "namespaced" if k.namespaced else "cluster-scoped"
        other = "cluster-scoped" if k.namespaced else "namespaced"
        why = (f"scope-mismatch: the log read Git's {head} {k.name} as {scope} ({d.key}), and the cluster serves "
               f"{head} as {other}{' (' + ', '.join(twins) + ')' if twins else ''}; neither is applied or pruned "
               "until Git's object is read again under the cluster's scope (the Git source does when its discovery "
               "learns the kind, or at a commit that changes the file)")
        out[d.key] = Hold(why, "ScopeMismatch", failed=True)
        for t in twins:
            out[t] = Hold(why, "ScopeMismatch", failed=True)
    return out


def make_plan(diffs: list[ObjectDiff], *, desired: Mapping[str, Mapping[str, Any]],
              actual: Mapping[str, Mapping[str, Any]], instance: str, prune: bool, mass_prune_ratio: float,
              allow_mass_prune: bool = False, waiting: Callable[[ObjectDiff], Hold | None] = lambda d: None,
              cascades: Mapping[str, Contents] | None = None, adopt_from: Collection[str] = (),
              namespaces: Collection[str] = (),
              namespaced: Callable[[str, str], bool | None] = lambda group, kind: None,
              held_before: Callable[[list[str]], Collection[str]] = lambda keys: ()) -> Plan:
    """``cascades``: for each Namespace and CRD that is an orphan, what it holds (listed from
    the cluster); one without an entry is not pruned. ``namespaces``: the only namespaces
    this instance acts in (empty: all). ``namespaced(group, kind)``: whether the cluster
    serves that kind namespaced (None: it does not serve it). ``held_before(keys)``: those of
    the prunes the guard held in an earlier pass and nobody confirmed since
    (``gitops.reconcile.guard``); they stay held whatever the ratio is now."""
    plan = Plan()
    mismatched = _scope_mismatches(diffs, desired.keys(), actual.keys(), namespaced)
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
        other = owner_of(actual.get(d.key))
        hold: Hold | None
        outside = _outside(d.key, namespaces)
        if d.key in mismatched:
            hold = mismatched[d.key]
        elif outside is not None:
            hold = Hold(f"out-of-scope: {outside} is not one of the namespaces this instance watches and acts in "
                        "(cluster.namespaces)", "OutOfScope", failed=True)
        elif _disabled(desired.get(d.key)) or _disabled(actual.get(d.key)):
            hold = Hold(f"annotated {DISABLE_ANNOTATION}: disabled")
        else:
            hold = waiting(d)
        if hold is None and op != "prune" and other is not None and other != instance and other not in adopt_from:
            hold = Hold(f"shared-resource: the live object carries instance {other!r}'s ownership label; that "
                        "instance applies it (add it to reconcile.adopt_from to take the object over)",
                        "SharedResource", failed=True)
        if hold is not None:
            plan.skipped.append(_hold(action, hold))
        else:
            (prunes if op == "prune" else applies).append(action)
    prunes = _judge_cascades(plan, prunes, cascades or {}, instance=instance, desired=desired.keys())
    owned = sum(1 for m in actual.values() if owned_by(m, instance)) + plan.cascaded
    deleted = len(prunes) + plan.cascaded
    if prunes and not allow_mass_prune and deleted > mass_prune_ratio * owned:
        cascade = f" (with {plan.cascaded} that pruned Namespaces and CRDs hold)" if plan.cascaded else ""
        guard = (f"mass-prune: {deleted} of {owned} owned objects would be deleted{cascade}, over "
                 f"{mass_prune_ratio:.0%}; run with --allow-mass-prune to confirm")
        plan.held = guard if plan.held is None else f"{guard}; {plan.held}"
        plan.skipped.extend(_hold(a, _GUARDED) for a in prunes)
        prunes = []
    elif prunes and not allow_mass_prune and (still := held_before([a.key for a in prunes])):
        n = len(still)
        guard = (f"mass-prune: {n} prune{'s' if n != 1 else ''} the guard held in an earlier pass "
                 f"{'are' if n != 1 else 'is'} held until a pass run with --allow-mass-prune confirms "
                 f"{'them' if n != 1 else 'it'}")
        plan.held = guard if plan.held is None else f"{guard}; {plan.held}"
        plan.skipped.extend(_hold(a, _GUARDED) for a in prunes
                            if a.key in still)
        prunes = [a for a in prunes if a.key not in still]
    plan.actions = sorted(applies, key=lambda a: kind_rank(a.key)) + sorted(
        prunes, key=lambda a: kind_rank(a.key), reverse=True)
    return plan
