"""The ``reconcile:`` section of the config file: what the reconciler does, when, and as whom."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gitops.diff.health import HealthSettings

__all__ = ["DISABLE_ANNOTATION", "FORCE_ANNOTATION", "LeaseSettings", "ReconcileSettings", "SyncWindow",
           "annotated", "parse_duration"]

DISABLE_ANNOTATION = "gitops.dev/reconcile"
"""Annotate an object (in Git or in the cluster) with ``gitops.dev/reconcile: disabled`` and
the reconciler leaves it alone: it is neither applied nor pruned (its drift is still shown)."""
FORCE_ANNOTATION = "gitops.dev/force"
"""Annotate an object in Git with ``gitops.dev/force: enabled`` and an update the API server
refuses for an immutable field deletes it and creates it again (``gitops.reconcile.apply``)."""


def annotated(manifest: Mapping[str, Any] | None, annotation: str, value: str) -> bool:
    """Whether ``manifest`` carries ``annotation`` with ``value`` (in any case)."""
    annotations = ((manifest or {}).get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(annotation, "")).lower() == value

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?\Z")


def parse_duration(text: str) -> timedelta:
    """``1h30m``, ``45m``, ``90s``: the durations of sync windows (as Argo CD writes them)."""
    m = _DURATION.match(text.strip())
    if not text.strip() or m is None:
        raise ValueError(f"{text!r} is not a duration like 1h30m, 45m or 90s")
    h, mi, s = (int(g) if g else 0 for g in m.groups())
    return timedelta(hours=h, minutes=mi, seconds=s)


class SyncWindow(BaseModel):
    """A time when passes may apply (``allow``) or must not (``deny``): from each time the
    cron ``schedule`` fires, for ``duration``, in ``timezone``. Inside a deny window, or
    outside every allow window when there are some, a pass runs detect-only and records
    which window held it. Deny wins over allow, as in Argo CD."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="", description="shown in the log when the window holds a pass")
    kind: Literal["allow", "deny"]
    schedule: str = Field(description="five-field cron expression, e.g. '0 22 * * *'")
    duration: str = Field(description="how long the window stays open, e.g. 1h or 30m")
    timezone: str = Field(default="UTC", description="IANA time zone of the schedule")

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: str) -> str:
        if parse_duration(v) <= timedelta(0):
            raise ValueError("a window's duration must be positive")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        from gitops.reconcile.windows import cron_trigger  # it imports this module

        try:
            cron_trigger(v)
        except ValueError as e:
            raise ValueError(f"schedule {v!r}: {e}") from None
        return v

    @property
    def label(self) -> str:
        return self.name or f"{self.kind} {self.schedule} for {self.duration}"


class LeaseSettings(BaseModel):
    """Leader election: one ``gitops run`` of an instance applies at a time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="take a coordination.k8s.io/v1 Lease before applying")
    namespace: str | None = Field(default=None, description="namespace of the Lease (default: in a pod, the pod's "
                                                            "own namespace; elsewhere default)")
    name: str | None = Field(default=None, description="name of the Lease (default: gitops-<instance>)")
    duration: float = Field(default=15.0, gt=0, description="seconds a leader holds the lease without renewing")
    renew: float = Field(default=5.0, gt=0, description="seconds between renewals (and a standby's tries)")


class ReconcileSettings(BaseModel):
    """The ``reconcile:`` section of the config file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instance: str = Field(default="default", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=63,
                          description="this instance's name: the value of the ownership label gitops.dev/instance "
                                      "on what it applies, so two instances never prune each other's objects")
    field_manager: str = Field(default="gitops", description="field manager of the server-side applies")
    interval: float = Field(default=60.0, gt=0, description="seconds between scheduled passes")
    jitter: float = Field(default=0.1, ge=0, le=1, description="share of the interval passes may be moved by")
    debounce: float = Field(default=0.5, ge=0, description="seconds a commit or drift waits for others to "
                                                            "join it in one pass")
    mode: Literal["apply", "detect-only"] = Field(default="apply", description="apply (self-heal) or only record "
                                                                              "drift")
    suspend: bool = Field(default=False, description="record that each pass was skipped, and do nothing")
    health: HealthSettings = Field(default_factory=HealthSettings,
                                   description="how health is judged: rules for kinds the built-in ones do not fit")
    prune: bool = Field(default=False, description="delete owned objects that Git no longer has")
    mass_prune_ratio: float = Field(default=0.5, gt=0, le=1,
                                    description="hold a pass that would prune more than this share of the owned "
                                                "objects, until run with --allow-mass-prune")
    force_conflicts: bool = Field(default=True, description="take fields other managers own (self-heal); false: "
                                                            "report the conflict")
    retry_initial: float = Field(default=5.0, gt=0, description="first wait (s) before retrying a transient error")
    retry_max: float = Field(default=300.0, gt=0, description="longest wait (s) between retries")
    retry_limit: int = Field(default=5, ge=1, description="tries of an object the API server answers with HTTP 500 "
                                                          "(most often a schema problem) before it is terminal")
    loop_limit: int = Field(default=3, ge=1, description="times another manager may set an applied field back "
                                                         "before the object is marked conflict and left alone")
    loop_window: float = Field(default=120.0, gt=0, description="seconds after an apply within which a field set "
                                                                "back by another manager counts toward loop_limit")
    adopt_from: list[str] = Field(default_factory=list, description="instances whose objects this one may take over "
                                                                    "(otherwise a shared-resource error)")
    remove_last_applied: bool = Field(default=False, description="when adopting an object made by kubectl apply, "
                                                                 "also remove its last-applied annotation")
    crd_timeout: float = Field(default=30.0, gt=0, description="seconds to wait for a CRD to be established")
    recreate_immutable: bool = Field(default=False, description="delete and create again an object whose update "
                                     "the API server refuses because a field is immutable (a Job's template, a "
                                     "Deployment's selector), once the server accepts the new object; per object: "
                                     f"annotate it {FORCE_ANNOTATION}: enabled in Git")
    recreate_timeout: float = Field(default=60.0, gt=0, description="seconds to wait for the old object to be gone "
                                                                    "before it is created again")
    windows: list[SyncWindow] = Field(default_factory=list, description="sync windows")
    lease: LeaseSettings = Field(default_factory=LeaseSettings, description="leader election")
    metrics_address: str = Field(default="127.0.0.1:9464",
                                 description="host:port of /healthz, /readyz and /metrics (port 0: any free one; "
                                             "empty: none)")

    @property
    def lease_name(self) -> str:
        return self.lease.name or f"gitops-{self.instance}"
