"""Health: whether an object Git desires does its job, judged from its live status as
Argo CD and Flux judge it, not only whether it was applied.

Statuses: Healthy, Progressing, Degraded, Suspended, Missing (desired, not in the cluster),
Unknown (a status the rules cannot read). An object being deleted (``deletionTimestamp``:
finalizers hold it, a Namespace terminating) is Progressing whatever its kind, as Argo CD
says "pending deletion". The rules, by kind:

- Deployment: paused is Suspended; a generation the controller has not observed, or
  replicas not yet updated and available, is Progressing; the ``Progressing`` condition
  False with ``ProgressDeadlineExceeded`` (after ``progressDeadlineSeconds``) is Degraded;
  ``ReplicaFailure`` True is Degraded.
- StatefulSet, DaemonSet, ReplicaSet: the generation observed, then replicas ready,
  updated and available (a StatefulSet's revisions equal).
- Job: ``Failed`` True is Degraded, ``Complete`` True Healthy, suspended Suspended, else
  Progressing. CronJob: suspended Suspended, else Healthy.
- PersistentVolumeClaim: Bound Healthy, Lost Degraded, else Progressing.
- Pod: a container waiting for a reason that needs someone (``CrashLoopBackOff``,
  ``ImagePullBackOff``, ``ErrImagePull``, ``CreateContainerConfigError``, ...) or phase
  ``Failed`` is Degraded; ``Succeeded`` Healthy; ``Running`` with every container ready
  Healthy (a Pod that restarts never: Running is Progressing until it ends); ``Pending``
  and the rest Progressing.
- Service of type LoadBalancer, Ingress: an address in ``status.loadBalancer.ingress`` is
  Healthy, none yet Progressing (other Services are Healthy).
- CustomResourceDefinition: ``Established`` True Healthy, ``NamesAccepted`` False Degraded.
- APIService: ``Available`` True Healthy, False Degraded.
- HorizontalPodAutoscaler: ``AbleToScale`` or ``ScalingActive`` False is Degraded.
- Everything else, the kstatus conventions Flux uses: a generation not yet observed
  (``status.observedGeneration``) or ``Reconciling`` True is Progressing, ``Stalled`` True
  Degraded, ``Ready`` True Healthy and False Degraded (Progressing while its reason says it
  is progressing); an object with no conditions is Healthy.

A rule in the configuration (``health.rules``) replaces these for its kind: which
condition to read and what each of its statuses means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Health", "HealthRule", "HealthSettings", "Status", "assess"]


class Status(StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    SUSPENDED = "Suspended"
    MISSING = "Missing"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class Health:
    status: Status
    reason: str = ""
    message: str = ""


StatusName = Literal["Healthy", "Progressing", "Degraded", "Suspended", "Unknown"]


class HealthRule(BaseModel):
    """How to judge one kind: the status of one condition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(description="Kind.group (Kind for the core group), e.g. Certificate.cert-manager.io")
    condition: str = Field(description="the status.conditions type to read, e.g. Ready")
    when_true: StatusName = Field(default="Healthy", alias="true", description="health when it is True")
    when_false: StatusName = Field(default="Degraded", alias="false", description="health when it is False")
    when_unknown: StatusName = Field(default="Progressing", alias="unknown", description="when it is Unknown")
    when_absent: StatusName = Field(default="Progressing", alias="absent", description="when there is none yet")


class HealthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[HealthRule] = Field(default_factory=list, description="rules that replace the built-in ones for "
                                                                      "their kinds")


Manifest = Mapping[str, Any]
H, P, D, S = Status.HEALTHY, Status.PROGRESSING, Status.DEGRADED, Status.SUSPENDED


def _status(obj: Manifest) -> Mapping[str, Any]:
    s = obj.get("status")
    return s if isinstance(s, Mapping) else {}


def _conditions(obj: Manifest) -> dict[str, Mapping[str, Any]]:
    found = _status(obj).get("conditions")
    if not isinstance(found, list):
        return {}
    return {str(c.get("type")): c for c in found if isinstance(c, Mapping)}


def _is(cond: Mapping[str, Any] | None, value: str) -> bool:
    return cond is not None and str(cond.get("status")) == value


def _from(cond: Mapping[str, Any], status: Status) -> Health:
    return Health(status, str(cond.get("reason") or ""), str(cond.get("message") or ""))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _observed(obj: Manifest) -> Health | None:
    """Progressing while the controller has not observed the object's generation."""
    generation = _int((obj.get("metadata") or {}).get("generation"))
    observed = _status(obj).get("observedGeneration")
    if generation and isinstance(observed, int) and observed < generation:
        return Health(P, "ObservedGeneration", f"waiting for the controller to observe generation {generation} "
                                               f"(it has {observed})")
    return None


def _replicas(obj: Manifest, default: int = 1) -> int:
    spec = obj.get("spec") or {}
    value = spec.get("replicas", default) if isinstance(spec, Mapping) else default
    return _int(value) if value is not None else default


def _deployment(obj: Manifest) -> Health:
    if (obj.get("spec") or {}).get("paused"):
        return Health(S, "Paused", "the rollout is paused")
    if (waiting := _observed(obj)) is not None:
        return waiting
    conds, st, want = _conditions(obj), _status(obj), _replicas(obj)
    progressing = conds.get("Progressing")
    if _is(progressing, "False") and (progressing or {}).get("reason") == "ProgressDeadlineExceeded":
        return _from(progressing or {}, D)
    if _is(conds.get("ReplicaFailure"), "True"):
        return _from(conds["ReplicaFailure"], D)
    updated, available = _int(st.get("updatedReplicas")), _int(st.get("availableReplicas"))
    if updated < want:
        return Health(P, "RollingOut", f"{updated} of {want} replicas updated")
    if _int(st.get("replicas")) > updated:
        return Health(P, "RollingOut", f"{_int(st.get('replicas')) - updated} old replicas pending termination")
    if available < want:
        return Health(P, "RollingOut", f"{available} of {want} updated replicas available")
    return Health(H)


def _statefulset(obj: Manifest) -> Health:
    if (waiting := _observed(obj)) is not None:
        return waiting
    st, want = _status(obj), _replicas(obj)
    ready = _int(st.get("readyReplicas"))
    if ready < want:
        return Health(P, "RollingOut", f"{ready} of {want} replicas ready")
    if st.get("updateRevision") and st.get("currentRevision") != st.get("updateRevision"):
        return Health(P, "RollingOut", "waiting for the update to reach every replica")
    return Health(H)


def _daemonset(obj: Manifest) -> Health:
    if (waiting := _observed(obj)) is not None:
        return waiting
    st = _status(obj)
    want = _int(st.get("desiredNumberScheduled"))
    updated, available = _int(st.get("updatedNumberScheduled")), _int(st.get("numberAvailable"))
    if updated < want:
        return Health(P, "RollingOut", f"{updated} of {want} nodes updated")
    if available < want:
        return Health(P, "RollingOut", f"{available} of {want} nodes available")
    return Health(H)


def _replicaset(obj: Manifest) -> Health:
    if (waiting := _observed(obj)) is not None:
        return waiting
    conds = _conditions(obj)
    if _is(conds.get("ReplicaFailure"), "True"):
        return _from(conds["ReplicaFailure"], D)
    available, want = _int(_status(obj).get("availableReplicas")), _replicas(obj)
    return Health(P, "Scaling", f"{available} of {want} replicas available") if available < want else Health(H)


def _job(obj: Manifest) -> Health:
    conds = _conditions(obj)
    if _is(conds.get("Failed"), "True"):
        return _from(conds["Failed"], D)
    if _is(conds.get("Complete"), "True"):
        return Health(H, "Complete", "the job completed")
    if (obj.get("spec") or {}).get("suspend"):
        return Health(S, "Suspended", "the job is suspended")
    return Health(P, "Running", "the job has not completed")


def _cronjob(obj: Manifest) -> Health:
    return Health(S, "Suspended", "the schedule is suspended") if (obj.get("spec") or {}).get("suspend") \
        else Health(H)


def _pvc(obj: Manifest) -> Health:
    phase = str(_status(obj).get("phase") or "")
    if phase == "Bound":
        return Health(H)
    if phase == "Lost":
        return Health(D, "Lost", "the claim lost its volume")
    return Health(P, phase or "Pending", "waiting for a volume")


_STUCK = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull",
                    "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


def _pod(obj: Manifest) -> Health:
    st = _status(obj)
    containers = [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]
    for c in containers:
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _STUCK:
            return Health(D, str(waiting["reason"]), f"container {c.get('name')}: {waiting.get('message') or ''}"
                          .rstrip(": "))
    phase = str(st.get("phase") or "")
    if phase == "Failed":
        return Health(D, str(st.get("reason") or "Failed"), str(st.get("message") or "the pod failed"))
    if phase == "Succeeded":
        return Health(H, "Succeeded", "the pod completed")
    if phase == "Running":
        if (obj.get("spec") or {}).get("restartPolicy", "Always") != "Always":
            return Health(P, "Running", "the pod runs until it completes")
        ready = [c for c in st.get("containerStatuses") or [] if c.get("ready")]
        if containers and len(ready) == len(st.get("containerStatuses") or []):
            return Health(H)
        return Health(P, "NotReady", f"{len(ready)} of {len(st.get('containerStatuses') or [])} containers ready")
    return Health(P, phase or "Pending", str(st.get("message") or "waiting for the pod to be scheduled and to start"))


def _load_balanced(obj: Manifest) -> Health:
    lb = _status(obj).get("loadBalancer")
    ingress = lb.get("ingress") if isinstance(lb, Mapping) else None
    return Health(H) if ingress else Health(P, "Pending", "waiting for a load balancer address")


def _service(obj: Manifest) -> Health:
    return _load_balanced(obj) if (obj.get("spec") or {}).get("type") == "LoadBalancer" else Health(H)


def _crd(obj: Manifest) -> Health:
    conds = _conditions(obj)
    if _is(conds.get("NamesAccepted"), "False"):
        return _from(conds["NamesAccepted"], D)
    if _is(conds.get("Established"), "True"):
        return Health(H)
    return Health(P, "NotEstablished", "waiting for the API server to serve it")


def _apiservice(obj: Manifest) -> Health:
    available = _conditions(obj).get("Available")
    if _is(available, "True"):
        return Health(H)
    if _is(available, "False"):
        return _from(available or {}, D)
    return Health(P, "Pending", "waiting for its Available condition")


def _hpa(obj: Manifest) -> Health:
    conds = _conditions(obj)
    for name in ("AbleToScale", "ScalingActive"):
        c = conds.get(name)
        if _is(c, "False") and (c or {}).get("reason") != "ScalingDisabled":
            return _from(c or {}, D)
    return Health(H)


_PROGRESSING_REASONS = frozenset({"Progressing", "Reconciling", "DependencyNotReady", "Pending", "InProgress"})


def _kstatus(obj: Manifest) -> Health:
    if (waiting := _observed(obj)) is not None:
        return waiting
    conds = _conditions(obj)
    if _is(conds.get("Stalled"), "True"):
        return _from(conds["Stalled"], D)
    if _is(conds.get("Reconciling"), "True"):
        return _from(conds["Reconciling"], P)
    ready = conds.get("Ready")
    if _is(ready, "True"):
        return Health(H)
    if _is(ready, "False"):
        return _from(ready or {}, P if (ready or {}).get("reason") in _PROGRESSING_REASONS else D)
    if ready is not None:  # Unknown
        return _from(ready, P)
    return Health(H)


_RULES: dict[str, Callable[[Manifest], Health]] = {
    "Deployment.apps": _deployment, "StatefulSet.apps": _statefulset, "DaemonSet.apps": _daemonset,
    "ReplicaSet.apps": _replicaset, "Job.batch": _job, "CronJob.batch": _cronjob,
    "PersistentVolumeClaim": _pvc, "Pod": _pod, "Service": _service, "Ingress.networking.k8s.io": _load_balanced,
    "CustomResourceDefinition.apiextensions.k8s.io": _crd, "APIService.apiregistration.k8s.io": _apiservice,
    "HorizontalPodAutoscaler.autoscaling": _hpa,
}


def _configured(rule: HealthRule, obj: Manifest) -> Health:
    cond = _conditions(obj).get(rule.condition)
    if cond is None:
        return Health(Status(rule.when_absent), "NoCondition", f"no {rule.condition} condition yet")
    value = str(cond.get("status"))
    name = rule.when_true if value == "True" else rule.when_false if value == "False" else rule.when_unknown
    return _from(cond, Status(name))


def assess(head: str, live: Manifest | None, rules: Sequence[HealthRule] = ()) -> Health:
    """The health of an object of kind ``head`` (``Kind.group``, as keys begin) whose live
    manifest is ``live`` (None: it is not in the cluster)."""
    if live is None:
        return Health(Status.MISSING, "NotFound", "desired, and not in the cluster")
    if (live.get("metadata") or {}).get("deletionTimestamp"):
        return Health(Status.PROGRESSING, "PendingDeletion", "being deleted (finalizers hold it)")
    for rule in rules:
        if rule.kind == head:
            return _configured(rule, live)
    try:
        return _RULES.get(head, _kstatus)(live)
    except (AttributeError, TypeError, ValueError) as e:  # a status of a shape no rule expects
        return Health(Status.UNKNOWN, "Unreadable", f"its status cannot be read: {e}")
