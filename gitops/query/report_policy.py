"""Approval evidence for each change through Git, and the policy a report checks it against.

For each commit the report says: whether it carries a signature and which key it names
(recorded at ingest), whether that key is one of ``report.allowed_signers`` (key ids or
fingerprints, and the keys of an ``ssh-keygen -Y`` allowed-signers file), its review
trailers (``Reviewed-by:``, ``Approved-by:``, ``Co-authored-by:``) and, for a merge, who
authored what it merged. ``report.require`` (``signed``, ``reviewed``, ``none``) makes each
change that falls short an exception, listed and counted.

The signature is read, not verified (the log holds no keys): "the key it names is
allowed" is what is known, and the report says so. ``git verify-commit`` with the same
allowed-signers file verifies it against the repository.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gitops.events.payloads import GitCommitPayload
from gitops.model.errors import ConfigError

__all__ = ["Approval", "ReportSettings", "allowed_keys", "approval_of", "trailers"]

_TRAILER = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):\s*(.+?)\s*$")
_REVIEW = ("reviewed-by", "approved-by")


class ReportSettings(BaseModel):
    """The ``report:`` section of the config file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed_signers: list[str] = Field(default_factory=list, description="key ids (OpenPGP) or fingerprints "
                                                                         "(SHA256:... for SSH) whose signatures count")
    allowed_signers_file: str | None = Field(default=None, description="an ssh-keygen -Y allowed-signers file: its "
                                                                       "keys count too")
    require: Literal["none", "signed", "reviewed"] = Field(
        default="none", description="signed: a change needs a signature by an allowed key (any key, when none is "
                                    "listed); reviewed: a Reviewed-by or Approved-by trailer, or a merge")
    verify_projections: bool = Field(
        default=False, description="also compare the projection tables the report reads (the current state: which "
                                   "objects Git manages; the changes: each change's fields) with the log, as "
                                   "'gitops verify --projections' does (about 45 s for a million events)")


class Approval(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    signer_allowed: bool | None = Field(description="the key the signature names is allowed (not verified); null: "
                                                    "unsigned, or no allowed signers configured")
    reviewed_by: list[str] = Field(default_factory=list)
    approved_by: list[str] = Field(default_factory=list)
    co_authored_by: list[str] = Field(default_factory=list)
    merged_authors: list[str] = Field(default_factory=list, description="a merge: who authored what it merged")
    exception: str | None = Field(default=None, description="why the change does not meet report.require")


def trailers(message: str) -> list[tuple[str, str]]:
    """The trailers of a commit message: the ``Key: value`` lines of its last paragraph."""
    paragraphs = [p for p in re.split(r"\n\s*\n", message.strip()) if p.strip()]
    if len(paragraphs) < 2:
        return []
    lines = paragraphs[-1].splitlines()
    found = [_TRAILER.match(line) for line in lines]
    if not all(found):
        return []
    return [(m.group(1), m.group(2)) for m in found if m is not None]


def _fingerprint(blob: str) -> str | None:
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def allowed_keys(settings: ReportSettings) -> set[str]:
    """The allowed key ids and fingerprints, the file's keys included (lower-cased ids)."""
    keys = {k if k.startswith("SHA256:") else k.lower() for k in settings.allowed_signers}
    if settings.allowed_signers_file:
        path = Path(settings.allowed_signers_file).expanduser()
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"report.allowed_signers_file {path}: {e.strerror}") from None
        for n, line in enumerate(text.splitlines(), start=1):
            fields = line.split("#", 1)[0].split()
            blobs = [f for f in fields if f.startswith("AAAA")]  # principals [options] keytype base64-key
            if not fields:
                continue
            fp = _fingerprint(blobs[-1]) if blobs else None
            if fp is None:
                raise ConfigError(f"report.allowed_signers_file {path}, line {n}: no public key")
            keys.add(fp)
    return keys


def _allowed(key: str | None, keys: set[str]) -> bool:
    if key is None:
        return False
    if key.startswith("SHA256:"):
        return key in keys
    k = key.lower()  # an OpenPGP key id is the fingerprint's tail
    return any(k == a or a.endswith(k) or k.endswith(a) for a in keys if not a.startswith("SHA256:"))


def approval_of(p: GitCommitPayload, settings: ReportSettings, keys: set[str]) -> Approval:
    found = trailers(p.message)

    def values(name: str) -> list[str]:
        return [v for k, v in found if k.lower() == name]

    allowed = None if not p.signed or not keys else _allowed(p.signer_key, keys)
    reviewed = values("reviewed-by") or values("approved-by") or len(p.parents) > 1
    exception = None
    if settings.require == "signed" and not (p.signed and (allowed or not keys)):
        exception = "not signed" if not p.signed else f"signed by a key that is not allowed ({p.signer_key})"
    elif settings.require == "reviewed" and not reviewed:
        exception = "no Reviewed-by or Approved-by trailer, and not a merge"
    return Approval(signer_allowed=allowed, reviewed_by=values("reviewed-by"), approved_by=values("approved-by"),
                    co_authored_by=values("co-authored-by"),
                    merged_authors=[f"{a.name} <{a.email}>" for a in p.merged_authors], exception=exception)
