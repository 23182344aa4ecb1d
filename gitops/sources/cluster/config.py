"""What to read from the cluster, and how."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_NOISY_KINDS", "ClusterSourceConfig"]

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
    field_manager: str = Field(default="gitops", description="the reconciler's field manager")
    audit_wait: float = Field(default=0.5, ge=0, description="seconds a change waits for its audit record")
    watch_timeout: int = Field(default=300, gt=0, description="seconds before the server ends and we renew a watch")
    backoff_initial: float = Field(default=0.5, gt=0, description="first reconnect delay (seconds)")
    backoff_max: float = Field(default=30.0, gt=0, description="largest reconnect delay (seconds)")
