"""The values a diff is made of: what differs in one field (``DiffItem``), how one object
stands (``ObjectDiff``), and the ownership label that says which objects an instance owns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["OWNERSHIP_LABEL", "DiffItem", "ObjectDiff", "Op", "Status"]

OWNERSHIP_LABEL = "gitops.dev/instance"
"""The label the reconciler puts on what it applies; its value is the instance's name."""

class Op(StrEnum):
    CHANGED = "changed"
    MISSING = "missing"
    EXTRA = "extra"


class Status(StrEnum):
    IN_SYNC = "in-sync"
    OUT_OF_SYNC = "out-of-sync"
    MISSING = "missing"
    ORPHAN = "orphan"


@dataclass(frozen=True)
class DiffItem:
    op: Op
    path: str  # e.g. spec.template.spec.containers[name=app].image
    desired: Any = None
    actual: Any = None


@dataclass(frozen=True)
class ObjectDiff:
    key: str
    status: Status
    items: tuple[DiffItem, ...] = ()
