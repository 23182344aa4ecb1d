"""What the user tells the diff to leave alone: fields (JSON pointers, per kind and name or
namespace glob) and field managers (an HPA's ``replicas``, a mutating webhook's
annotations). Set in the config file's ``diff:`` section."""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gitops.model.control_plane import CONTROLLER_MANAGERS

__all__ = ["CONTROLLER_MANAGERS", "DiffSettings", "IgnoreRule", "without_ignored"]


class IgnoreRule(BaseModel):
    """Leave out the fields at ``pointers`` (JSON pointers, RFC 6901: ``/spec/replicas``,
    ``/metadata/annotations/sidecar.istio.io~1status``) of the objects this rule matches:
    of ``kind`` (every kind when unset), whose name and namespace match the globs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str | None = Field(default=None, description="Kind, e.g. Deployment (every kind when unset)")
    name: str = Field(default="*", description="glob on metadata.name")
    namespace: str = Field(default="*", description="glob on metadata.namespace ('' for cluster-scoped)")
    pointers: list[str] = Field(min_length=1, description="JSON pointers of the fields to leave out")

    @field_validator("pointers")
    @classmethod
    def _pointers(cls, pointers: list[str]) -> list[str]:
        for p in pointers:
            if not p.startswith("/") or p == "/":
                raise ValueError(f"{p!r} is not a JSON pointer to a field (e.g. /spec/replicas)")
        return pointers

    def matches(self, manifest: dict[str, Any]) -> bool:
        meta = manifest.get("metadata") or {}
        return ((self.kind is None or self.kind == manifest.get("kind"))
                and fnmatch.fnmatchcase(str(meta.get("name", "")), self.name)
                and fnmatch.fnmatchcase(str(meta.get("namespace", "")), self.namespace))




class DiffSettings(BaseModel):
    """The ``diff:`` section of the config file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ignore: list[IgnoreRule] = Field(default_factory=list, description="fields the diff leaves out")
    ignore_managers: list[str] = Field(default_factory=lambda: list(CONTROLLER_MANAGERS),
                                       description="field managers whose fields are never 'extra' (default: the "
                                                   "control plane's own controllers; add e.g. an autoscaler's)")
    instance: str | None = Field(default=None, description="report objects labelled with this instance and not "
                                                           "in Git as orphans")


def _remove(node: Any, steps: list[str]) -> None:
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        if isinstance(node, dict):
            if step not in node:
                return
            if last:
                del node[step]
                return
            node = node[step]
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            if last:
                del node[int(step)]
                return
            node = node[int(step)]
        else:
            return


def without_ignored(manifest: dict[str, Any], rules: Sequence[IgnoreRule]) -> dict[str, Any]:
    """``manifest`` without the fields the matching rules point at (a copy when any match)."""
    matching = [r for r in rules if r.matches(manifest)]
    if not matching:
        return manifest
    out = copy.deepcopy(manifest)
    for rule in matching:
        for pointer in rule.pointers:
            _remove(out, [s.replace("~1", "/").replace("~0", "~") for s in pointer.split("/")[1:]])
    return out
