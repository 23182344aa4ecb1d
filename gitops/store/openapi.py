"""The API server's schema (``model.schema.KindSchemas``) kept beside a cluster source's
checkpoints, so that every reader of the log diffs with the schema the reconciler used,
without asking a cluster: ``gitops diff`` and ``status`` read it, the cluster source and the
reconciler write it when the server's schema changes (a CRD came or went)."""

from __future__ import annotations

from gitops.events.models import content_digest
from gitops.model.schema import KindSchemas
from gitops.store.log import Checkpoint, EventLog

__all__ = ["load_schemas", "save_schemas", "schemas_checkpoint"]


def schemas_checkpoint(origin: str) -> str:
    return f"{origin}:openapi"


def save_schemas(log: EventLog, origin: str, schemas: KindSchemas) -> bool:
    """Keep ``schemas`` for ``origin``; False when the log already held the same."""
    value = schemas.to_json()
    digest = content_digest(value)
    name = schemas_checkpoint(origin)
    stored = log.checkpoint(name)
    if isinstance(stored, dict) and stored.get("digest") == digest:
        return False
    log.append([], checkpoint=Checkpoint(name, {"digest": digest, "schemas": value}))
    return True


def load_schemas(log: EventLog, origin: str | None = None) -> KindSchemas | None:
    """The schema kept for ``origin`` (a cluster source's), or with no origin the first one
    the log holds; None when there is none (the diff then uses its built-in table)."""
    if origin is not None:
        values = [log.checkpoint(schemas_checkpoint(origin))]
    else:
        values = [v for name, v in log.checkpoints("cluster:").items() if name.endswith(":openapi")]
    for value in values:
        if isinstance(value, dict):
            found = KindSchemas.from_json(value.get("schemas"))
            if found is not None:
                return found
    return None
