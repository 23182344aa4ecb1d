"""What the API server fills in an object, which neither a diff nor a replayed manifest
should carry: metadata it owns (uid, resourceVersion, generation, creationTimestamp,
managedFields, selfLink, deletion marks, ownerReferences to objects that may be gone),
``status``, and kubectl's last-applied annotation."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["LAST_APPLIED", "without_server_fields"]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
                    "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences")


def without_server_fields(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``manifest`` without what the API server fills in; the input is not changed."""
    out = copy.deepcopy(manifest)
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for field in _SERVER_METADATA:
            meta.pop(field, None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(LAST_APPLIED, None)
            if not annotations:
                del meta["annotations"]
    return out
