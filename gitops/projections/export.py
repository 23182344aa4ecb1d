"""A replayed state as files that ``kubectl apply -f DIR -R`` takes as they are.

What the server fills in is dropped (uid, resourceVersion, generation, creationTimestamp,
managedFields, selfLink, ownerReferences to objects that may no longer exist, status, the
last-applied annotation, a Service's cluster IPs). Secrets are left out: the log holds
digests of their values, never the values, so they cannot be recreated from it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gitops.model.server_fields import without_server_fields
from gitops.model.yaml_out import dump

__all__ = ["applyable", "write_manifests"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def applyable(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``manifest`` without what the API server fills in."""
    out = without_server_fields(manifest)
    spec = out.get("spec")
    if out.get("kind") == "Service" and isinstance(spec, dict):
        out["spec"] = {k: v for k, v in spec.items() if k not in ("clusterIP", "clusterIPs")}
    return out


def write_manifests(objects: Mapping[str, dict[str, Any]], directory: Path) -> tuple[list[Path], list[str]]:
    """Write each object (by ResourceKey) to its own YAML file in ``directory``; returns the
    files written and the keys left out (Secrets)."""
    directory.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for key in sorted(objects):
        manifest = objects[key]
        if str(manifest.get("kind", "")).lower() == "secret":
            skipped.append(key)
            continue
        path = directory / (_UNSAFE.sub("_", key.replace("/", "__")) + ".yaml")
        path.write_text(dump(applyable(manifest)))  # libyaml's emitter: PyYAML's own took 1 ms an object
        written.append(path)
    return written, skipped
