"""Small builders of real events for tests (no mocks: these are the production models)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gitops.events import (
    DesiredApplied,
    DesiredAppliedPayload,
    EventSource,
    event_id,
    redact,
)
from gitops.model import format_key, key_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def deployment(name: str, namespace: str = "default", replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": f"registry.example/{name}:1.0"}]},
            },
        },
    }


def applied(i: int, *, manifest: dict[str, Any] | None = None, commit: str = "c0ffee",
            actor: str = "dev@example.com", at: datetime | None = None, origin: str = "") -> DesiredApplied:
    m = redact(manifest or deployment(f"app-{i}"))
    resource = format_key(key_of(m, default_namespace="default"))
    return DesiredApplied(
        id=event_id("desired.applied", commit, resource, str(i), origin),
        source=EventSource.GIT,
        resource=resource,
        actor=actor,
        effective_at=at or T0 + timedelta(seconds=i),
        revision=commit,
        payload=DesiredAppliedPayload(commit=commit, path="app.yaml", document_index=0, manifest=m, origin=origin),
    )
