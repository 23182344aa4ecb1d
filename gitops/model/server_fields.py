"""What the API server fills in an object, which neither a diff nor a replayed manifest
should carry: metadata it owns (uid, resourceVersion, generation, creationTimestamp,
managedFields, selfLink, deletion marks, ownerReferences to objects that may be gone),
``status``, and kubectl's last-applied annotation; and ``normalize``, the form in which two
versions of an object are compared (by the diff, and by the log's change projection)."""

from __future__ import annotations

from typing import Any

__all__ = ["LAST_APPLIED", "normalize", "without_server_fields"]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
                    "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences")


def without_server_fields(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` without what the API server fills in; the input is not changed. A new
    top level and metadata; below them the values are the input's own, shared, not copied
    (a deep copy was most of the cost of an in-sync reconcile pass): change them in place
    and the input changes too."""
    out = {k: v for k, v in manifest.items() if k != "status"}
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta = out["metadata"] = {k: v for k, v in meta.items() if k not in _SERVER_METADATA}
        annotations = meta.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            annotations = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
            if annotations:
                meta["annotations"] = annotations
            else:
                del meta["annotations"]
    return out


def normalize(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``manifest`` as a diff compares it: without server fields, a Secret's
    ``stringData`` folded into ``data`` (both hold digests of the decoded value, so the same
    value compares equal; ``stringData`` wins)."""
    out = without_server_fields(manifest)
    if str(out.get("kind", "")).lower() == "secret" and isinstance(out.get("stringData"), dict):
        data = out.get("data")
        out["data"] = {**(data if isinstance(data, dict) else {}), **out.pop("stringData")}  # stringData wins
    return out
