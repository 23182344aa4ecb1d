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

**Keyed digests.** A plain SHA-256 of a short or guessable value can be found by trying
candidates offline. With a digest key (``Redaction.key``: the log's ``digest.key``, kept
outside the database with its signing key), each value becomes
``hmac-sha256:<key id>:<hex>``, an HMAC-SHA-256 under that key: equality and change stay
visible, guessing needs the key. Events store the scheme they used (``digest_scheme`` in
the payload); digests of two schemes (plain and keyed, or two keys) are never compared
with each other: they say nothing about whether the values are equal.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gitops.model.server_fields import LAST_APPLIED

__all__ = [
    "DIGEST_PREFIX",
    "NO_KEY",
    "PLAIN_SCHEME",
    "Redaction",
    "RedactionRule",
    "as_redaction",
    "digest",
    "digest_scheme",
    "is_digest",
    "redact",
    "scheme_field",
    "scheme_of",
    "unredacted_secret_fields",
]

DIGEST_PREFIX = "sha256:"
KEYED_PREFIX = "hmac-sha256:"
PLAIN_SCHEME = "sha256"
_DIGEST = re.compile(r"(?:sha256|hmac-sha256:([0-9a-f]{8})):[0-9a-f]{64}\Z")
_IDENTITY = frozenset({"apiVersion", "kind"})
_OWNED_BY = frozenset({"name", "namespace", "labels", "uid"})  # under metadata
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

    @field_validator("path")
    @classmethod
    def _not_identity(cls, path: str) -> str:
        """What names an object and whose it is stays in clear: a digested name, namespace or
        label would make every stored manifest differ from the live one, and the log keeps
        its rules for good (``log_redaction_rules``)."""
        head = re.sub(r"\[(\*|\d+)\]", "", path).split(".")
        if head[0] in _IDENTITY or head == ["metadata"] or (head[0] == "metadata" and head[1] in _OWNED_BY):
            raise ValueError(f"{path!r} names the object or its owner (apiVersion, kind, metadata.name, "
                             "namespace, labels, uid); it cannot be digested")
        return path


def key_id(key: bytes) -> str:
    """A digest key's public name: 8 hex digits that identify it, and say nothing of it."""
    return hashlib.sha256(b"gitops digest key\x00" + key).hexdigest()[:8]


@dataclass(frozen=True)
class Redaction:
    """What is digested (``rules``, besides every Secret's values) and with which key
    (None: plain SHA-256, as logs written before keys were)."""

    rules: tuple[RedactionRule, ...] = ()
    key: bytes | None = None

    @property
    def scheme(self) -> str:
        return PLAIN_SCHEME if self.key is None else f"{KEYED_PREFIX}{key_id(self.key)}"


NO_KEY = Redaction()  # Secrets only, plain digests


def as_redaction(value: Redaction | Sequence[RedactionRule]) -> Redaction:
    return value if isinstance(value, Redaction) else Redaction(tuple(value))


def digest(value: str | bytes, key: bytes | None = None) -> str:
    raw = value.encode() if isinstance(value, str) else value
    if key is None:
        return DIGEST_PREFIX + hashlib.sha256(raw).hexdigest()
    return f"{KEYED_PREFIX}{key_id(key)}:{hmac.new(key, raw, hashlib.sha256).hexdigest()}"


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.match(value) is not None


def digest_scheme(value: object) -> str | None:
    """The scheme of a digest (``sha256``, or ``hmac-sha256:<key id>``); None for a value
    that is not one."""
    if not isinstance(value, str):
        return None
    m = _DIGEST.match(value)
    if m is None:
        return None
    return PLAIN_SCHEME if m.group(1) is None else KEYED_PREFIX + m.group(1)


def _digest_data_value(value: object, key: bytes | None) -> str:
    if is_digest(value):
        return str(value)
    text = str(value)
    try:
        return digest(base64.b64decode(text, validate=True), key)
    except (binascii.Error, ValueError):
        return digest(text, key)


SECRET_KEPT_FIELDS = frozenset({"apiVersion", "kind", "type", "immutable", "metadata"})
_VALUE_MAPS = ("data", "stringData")


def _is_secret(manifest: dict[str, Any]) -> bool:
    return str(manifest.get("kind", "")).lower() == "secret"


def _digest_any(value: object, key: bytes | None) -> str:
    """One digest of any value (its canonical JSON; a string's own bytes)."""
    if is_digest(value):
        return str(value)
    if isinstance(value, str):
        return digest(value, key)
    return digest(json.dumps(value, sort_keys=True, default=repr), key)


def _redact_secret(manifest: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    """A Secret by allowlist: see the module's docstring."""
    out: dict[str, Any] = {}
    for field, value in manifest.items():
        if field in SECRET_KEPT_FIELDS:
            out[field] = copy.deepcopy(value)
        elif field in _VALUE_MAPS and isinstance(value, dict):
            out[field] = {k: (_digest_data_value(v, key) if field == "data" and isinstance(v, str)
                              else _digest_any(v, key))
                          for k, v in value.items()}
        else:
            out[field] = _digest_any(value, key)
    annotations = (out.get("metadata") or {}).get("annotations") if isinstance(out.get("metadata"), dict) else None
    if isinstance(annotations, dict) and LAST_APPLIED in annotations and not is_digest(annotations[LAST_APPLIED]):
        annotations[LAST_APPLIED] = _digest_any(annotations[LAST_APPLIED], key)
    return out


def _walk(node: Any, steps: list[tuple[str | None, str | None]], key: bytes | None) -> None:
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
            _walk(parent[k], rest, key)
        elif parent[k] is not None and not is_digest(parent[k]):
            v = parent[k]
            parent[k] = digest(v if isinstance(v, str) else repr(v), key)


def _steps(path: str) -> list[tuple[str | None, str | None]]:
    return [(m.group(1), m.group(2)) for m in _STEP.finditer(path)]


def redact(manifest: dict[str, Any], redaction: Redaction | Sequence[RedactionRule] = ()) -> dict[str, Any]:
    """A copy of ``manifest`` with secret values digested; the input is not changed.
    Objects with nothing to redact are returned as they are (no copy): ``redact(m, r) is
    not m`` says that it holds digests of ``r``'s scheme."""
    r = as_redaction(redaction)
    secret = _is_secret(manifest)
    applicable = [rule for rule in r.rules if rule.kind is None or rule.kind == manifest.get("kind")]
    if not secret and not applicable:
        return manifest
    out = _redact_secret(manifest, r.key) if secret else copy.deepcopy(manifest)
    for rule in applicable:
        _walk(out, _steps(rule.path), r.key)
    return out


def scheme_of(manifest: dict[str, Any], redaction: Redaction) -> str | None:
    """The digest scheme ``redact(manifest, redaction)`` used, if it digested anything there
    (a Secret, or a kind a rule names); None for an object kept as it is."""
    if _is_secret(manifest) or any(r.kind is None or r.kind == manifest.get("kind") for r in redaction.rules):
        return redaction.scheme
    return None


def scheme_field(manifest: dict[str, Any], redaction: Redaction) -> dict[str, str]:
    """The payload's ``digest_scheme`` field of a redacted ``manifest``: present when it
    holds digests under a key (absent, as on every event written before keys: plain)."""
    scheme = scheme_of(manifest, redaction)
    return {"digest_scheme": scheme} if scheme is not None and redaction.key is not None else {}


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
