"""What changed from one version of an object to the next: field paths with old and new
values, as an audit row shows them and the log's change projection stores them.

A path names a leaf as ``spec.template.spec.containers[name=web].image``: list items by
their merge key when they have one, else by position. Both versions are compared
normalised (``server_fields.normalize``: server-filled fields left out); a Secret's values
appear only as "(changed)". Pure: dicts in, values out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from gitops.model.server_fields import normalize

__all__ = ["CREATED", "DELETED", "SECRET_MASK", "SECRET_VALUE", "FieldChange", "field_changes", "flatten", "leaf_diff",
           "secret_path"]

SECRET_MASK = "(changed)"  # a Secret's value in a change: that it changed, never what to
SECRET_VALUE = "(secret)"  # a Secret's value where one is shown (blame): only that it is there
WHOLE = "(the object)"
_MISSING = object()
_MERGE_KEYS = ("name", "mountPath", "containerPort", "port", "ip", "devicePath")


class FieldChange(NamedTuple):
    """One changed field; ``old`` None: it was added, ``new`` None: it was removed. The path
    "" stands for the whole object (``CREATED``, ``DELETED``)."""

    path: str
    old: Any
    new: Any


CREATED = FieldChange("", None, WHOLE)
DELETED = FieldChange("", WHOLE, None)


def _item_label(item: dict[str, Any]) -> str | None:
    for k in _MERGE_KEYS:
        if k in item and isinstance(item[k], (str, int)):
            return f"{k}={item[k]}"
    return None


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf paths of ``obj`` to values: the definition of a field's path."""
    out: dict[str, Any] = {}
    _flatten_into(obj, prefix, out)
    return out


def _flatten_into(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        if not obj and prefix:
            out[prefix] = {}
        for k, v in obj.items():
            _flatten_into(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(obj, list):
        if not obj and prefix:
            out[prefix] = []
        for i, v in enumerate(obj):
            label = _item_label(v) if isinstance(v, dict) else None
            _flatten_into(v, f"{prefix}[{label if label is not None else i}]", out)
    else:
        out[prefix] = obj


def leaf_diff(old: Any, new: Any, prefix: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """The leaves of ``old`` and of ``new`` (as ``flatten`` names them) below the parts where
    the two differ: a path absent from both is the same on both sides. Equal subtrees are
    skipped by one comparison instead of being flattened (a change touches few fields of an
    object); the items of two lists are paired by the name ``flatten`` gives them (merge
    key or position), so one changed container of a list costs only its changed fields."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _leaf_diff_into(old, new, prefix, a, b)
    return a, b


def _items(items: list[Any], prefix: str) -> dict[str, Any] | None:
    """A list's items by the path ``flatten`` gives each, or None when two share one."""
    out: dict[str, Any] = {}
    for i, v in enumerate(items):
        label = _item_label(v) if isinstance(v, dict) else None
        out[f"{prefix}[{label if label is not None else i}]"] = v
    return out if len(out) == len(items) else None


def _leaf_diff_into(old: Any, new: Any, prefix: str, a: dict[str, Any], b: dict[str, Any]) -> None:
    if isinstance(old, dict) and isinstance(new, dict) and old and new:
        _pairs(old, new, (lambda k: f"{prefix}.{k}") if prefix else str, a, b)
        return
    if isinstance(old, list) and isinstance(new, list) and old and new:
        by_old, by_new = _items(old, prefix), _items(new, prefix)
        if by_old is not None and by_new is not None:
            _pairs(by_old, by_new, str, a, b)
            return
    _flatten_into(old, prefix, a)
    _flatten_into(new, prefix, b)


def _pairs(old: dict[Any, Any], new: dict[Any, Any], path: Callable[[Any], str], a: dict[str, Any],
           b: dict[str, Any]) -> None:
    """The leaves below each key of ``old`` or ``new`` where the two differ, the key's path
    named by ``path``: a key of one side only is flattened on its side, one of both is
    compared, and a value equal on both (most of them: a change touches few fields) is passed
    over at the cost of that one comparison."""
    shared = 0
    for k, vb in new.items():
        va = old.get(k, _MISSING)
        if va is _MISSING:
            _flatten_into(vb, path(k), b)
            continue
        shared += 1
        if va is not vb and va != vb:
            _leaf_diff_into(va, vb, path(k), a, b)
    if shared < len(old):  # keys only the old one has
        for k, va in old.items():
            if k not in new:
                _flatten_into(va, path(k), a)


def secret_path(manifest: dict[str, Any] | None, path: str) -> bool:
    """Whether ``path`` holds a Secret's value in ``manifest``."""
    return bool(manifest) and str((manifest or {}).get("kind", "")).lower() == "secret" and \
        path.split(".", maxsplit=1)[0] in ("data", "stringData")


def field_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[FieldChange]:
    """What differs from ``old`` to ``new`` (either may be None: created, removed), by path."""
    a, b = leaf_diff(normalize(old) if old else {}, normalize(new) if new else {})
    out = []
    for path in sorted(set(a) | set(b)):
        if a.get(path, _MISSING) == b.get(path, _MISSING):
            continue
        if secret_path(new or old, path):
            out.append(FieldChange(path, SECRET_MASK if path in a else None, SECRET_MASK if path in b else None))
        else:
            out.append(FieldChange(path, a.get(path), b.get(path)))
    return out
