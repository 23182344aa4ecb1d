"""What to read from the cluster, and how."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gitops.model.control_plane import CONTROL_PLANE_USERS, CONTROLLER_MANAGERS

__all__ = ["DEFAULT_NOISY_KINDS", "ClusterSourceConfig", "kind_syntax_problem"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*\Z")
_GROUP = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")


def kind_syntax_problem(text: str) -> str | None:
    """Why ``text`` is not ``Kind[.group]`` (or a resource name as kubectl takes it, such as
    ``deployments.apps`` or ``deploy``), or None."""
    if text == "*":
        return None
    name, dot, group = text.partition(".")
    if not name:
        return f"kind {text!r} is empty before the group" if dot else "a kind may not be empty"
    if not _NAME.match(name):
        return f"kind {text!r}: {name!r} is not a kind (letters and digits, e.g. Deployment.apps or deploy)"
    if dot and not _GROUP.match(group):
        return f"kind {text!r}: {group!r} is not an API group (e.g. Deployment.apps, Ingress.networking.k8s.io)"
    return None

DEFAULT_NOISY_KINDS = [
    "Node", "Endpoints", "Event", "Lease.coordination.k8s.io", "EndpointSlice.discovery.k8s.io",
]


class ClusterSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kubeconfig: str | None = Field(default=None, description="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    context: str | None = Field(default=None, description="kubeconfig context (default: its current context)")
    kinds: list[str] = Field(
        default_factory=list,
        description="kinds to watch besides those in the desired state and Namespaces, as Kind[.group]; "
                    "'*' watches every listable kind",
    )
    noisy_kinds: list[str] = Field(default_factory=lambda: list(DEFAULT_NOISY_KINDS),
                                   description="kinds whose status-only updates are not recorded")
    audit_log: str | None = Field(default=None, description="the API server's audit log file, to name real users")
    audit_log_later: bool = Field(default=False, description="the audit log may not exist yet: read it once it "
                                                             "appears (its folder must exist)")
    field_manager: str = Field(default="gitops", description="the reconciler's field manager")
    control_plane_managers: list[str] = Field(
        default_factory=lambda: list(CONTROLLER_MANAGERS),
        description="field managers whose changes are the control plane's, not out-of-band (diff.ignore_managers "
                    "are added to them)")
    control_plane_users: list[str] = Field(
        default_factory=lambda: list(CONTROL_PLANE_USERS),
        description="audited users (globs) whose changes are the control plane's, not out-of-band")
    audit_wait: float = Field(default=0.5, ge=0, description="seconds a change waits for its audit record")
    watch_timeout: int = Field(default=300, gt=0, description="seconds before the server ends and we renew a watch")
    backoff_initial: float = Field(default=0.5, gt=0, description="first reconnect delay (seconds)")
    backoff_max: float = Field(default=30.0, gt=0, description="largest reconnect delay (seconds)")
    discovery_retry: float = Field(default=60.0, gt=0, description="seconds between discoveries while an API "
                                                                   "group does not answer")

    @field_validator("kinds")
    @classmethod
    def _kind_names(cls, kinds: list[str]) -> list[str]:
        for k in kinds:
            why = kind_syntax_problem(k)
            if why is not None:
                raise ValueError(why)
        return kinds
