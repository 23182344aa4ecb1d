"""Secret redaction, applied before an event is built.

Secrets are redacted by allowlist, whatever their shape: only ``apiVersion``, ``kind``,
``type``, ``immutable`` and ``metadata`` are kept as they are. ``data`` and ``stringData``
mappings keep their keys, and each value becomes a digest ``sha256:<hex of the value's
bytes>``: for ``data`` the digest is of the base64-decoded bytes, so the same value given
as ``data`` or ``stringData`` has the same digest, and a change of value is still visible
as drift while the value is not. Every other field, and a ``data`` or ``stringData`` that
is not a mapping (a mis-indented manifest), becomes one digest of its canonical JSON. The
``kubectl.kubernetes.io/last-applied-configuration`` annotation, which holds the values
in clear, is digested whole. Any object whose kind is ``Secret`` is treated so, whatever
its apiVersion: a typo there must not put a value in clear. User-configured paths
(``RedactionRule``) are digested the same way on any kind.

A plain SHA-256 of a short or guessable value can be found by trying candidates; the
digest hides the value from readers of the log, it does not make a weak password strong.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gitops.model.server_fields import LAST_APPLIED

__all__ = [
    "DIGEST_PREFIX",
    "RedactionRule",
    "digest",
    "is_digest",
    "redact",
    "unredacted_secret_fields",
]

DIGEST_PREFIX = "sha256:"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
_STEP = re.compile(r"([^.\[\]]+)|\[(\*|\d+)\]")


class RedactionRule(BaseModel):
    """Digest the value(s) at ``path`` (dotted, with ``[*]`` or ``[n]`` for list items,
    e.g. ``spec.template.spec.containers[*].env[*].value``) in objects of ``kind``
    (every kind when unset)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(pattern=r"^[^.\[\]]+(\.[^.\[\]]+|\[(\*|\d+)\])*$",
                      description="dotted path, [*] or [n] for list items, e.g. spec.template.spec.containers[*].env[*]"
                                  ".value")
    kind: str | None = Field(default=None, description="only objects of this kind (default: every kind)")


def digest(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return DIGEST_PREFIX + hashlib.sha256(raw).hexdigest()


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.match(value) is not None


def _digest_data_value(value: object) -> str:
    if is_digest(value):
        return str(value)
    text = str(value)
    try:
        return digest(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return digest(text)


SECRET_KEPT_FIELDS = frozenset({"apiVersion", "kind", "type", "immutable", "metadata"})
_VALUE_MAPS = ("data", "stringData")


def _is_secret(manifest: dict[str, Any]) -> bool:
    return str(manifest.get("kind", "")).lower() == "secret"


def _digest_any(value: object) -> str:
    """One digest of any value (its canonical JSON; a string's own bytes)."""
    if is_digest(value):
        return str(value)
    if isinstance(value, str):
        return digest(value)
    return digest(json.dumps(value, sort_keys=True, default=repr))


def _redact_secret(manifest: dict[str, Any]) -> dict[str, Any]:
    """A Secret by allowlist: see the module's docstring."""
    out: dict[str, Any] = {}
    for field, value in manifest.items():
        if field in SECRET_KEPT_FIELDS:
            out[field] = copy.deepcopy(value)
        elif field in _VALUE_MAPS and isinstance(value, dict):
            out[field] = {k: (_digest_data_value(v) if field == "data" and isinstance(v, str) else _digest_any(v))
                          for k, v in value.items()}
        else:
            out[field] = _digest_any(value)
    annotations = (out.get("metadata") or {}).get("annotations") if isinstance(out.get("metadata"), dict) else None
    if isinstance(annotations, dict) and LAST_APPLIED in annotations and not is_digest(annotations[LAST_APPLIED]):
        annotations[LAST_APPLIED] = _digest_any(annotations[LAST_APPLIED])
    return out


def _walk(node: Any, steps: list[tuple[str | None, str | None]]) -> None:
    """Digest every value reached by ``steps`` under ``node``, in place."""
    if not steps:
        return
    (field, index), rest = steps[0], steps[1:]
    targets: list[tuple[Any, Any]] = []
    if field is not None and isinstance(node, dict) and field in node:
        targets = [(node, field)]
    elif index is not None and isinstance(node, list):
        idx = range(len(node)) if index == "*" else [int(index)] if int(index) < len(node) else []
        targets = [(node, i) for i in idx]
    for parent, k in targets:
        if rest:
            _walk(parent[k], rest)
        elif parent[k] is not None and not is_digest(parent[k]):
            v = parent[k]
            parent[k] = digest(v if isinstance(v, str) else repr(v))


def _steps(path: str) -> list[tuple[str | None, str | None]]:
    return [(m.group(1), m.group(2)) for m in _STEP.finditer(path)]


def redact(manifest: dict[str, Any], rules: Sequence[RedactionRule] = ()) -> dict[str, Any]:
    """A copy of ``manifest`` with secret values digested; the input is not changed.
    Objects with nothing to redact are returned as they are (no copy)."""
    secret = _is_secret(manifest)
    applicable = [r for r in rules if r.kind is None or r.kind == manifest.get("kind")]
    if not secret and not applicable:
        return manifest
    out = _redact_secret(manifest) if secret else copy.deepcopy(manifest)
    for rule in applicable:
        _walk(out, _steps(rule.path))
    return out


def unredacted_secret_fields(manifest: dict[str, Any]) -> list[str]:
    """The paths of a Secret that still hold a clear value; empty when safe to store."""
    if not _is_secret(manifest):
        return []
    bad: list[str] = []
    for field, value in manifest.items():
        if field in SECRET_KEPT_FIELDS or is_digest(value):
            continue
        if field in _VALUE_MAPS and isinstance(value, dict):
            bad.extend(f"{field}.{k}" for k, v in value.items() if not is_digest(v))
        else:
            bad.append(field)
    meta = manifest.get("metadata")
    annotations = (meta.get("annotations") or {}) if isinstance(meta, dict) else {}
    if isinstance(annotations, dict) and LAST_APPLIED in annotations and not is_digest(annotations[LAST_APPLIED]):
        bad.append(f"metadata.annotations[{LAST_APPLIED}]")
    return bad
