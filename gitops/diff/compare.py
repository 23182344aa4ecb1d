"""Comparing a desired object with the live one, and a desired state with the live state.

The comparison is driven by the desired side, as ``kubectl apply`` and Argo CD's and Flux's
diffs are, so that a live cluster's defaults are never drift:

- a field Git does not set is not compared (the server may default it), and a field Git
  sets to its zero value (``""``, ``false``, ``0``, ``{}``, ``[]``) equals an absent one:
  the server drops those (``value: ""``, ``readOnly: false``, ``paused: false``);
- both sides are compared in the form the reconciler applies (``model.applied``: a port's
  protocol filled in, an aggregated ClusterRole's rules left to its controller);
- lists are matched the way the API server's schema says (``model.schema``): by their
  list-map keys (container ports by containerPort and protocol, so 53/TCP and 53/UDP are
  two ports), as sets, or by position; a key an item leaves out takes the server's
  default (``protocol: TCP``);
- quantities compare by value (``1000m`` is ``1``) wherever the schema says quantity, and
  ints equal their string form.

Without a schema for a kind (a server that serves none, a kind not in it) a built-in table
of the usual list keys and quantity fields stands in.

What is caught: ``changed`` (a field Git sets has another value), ``missing`` (a field, or
the whole object, is absent), ``extra`` (a field another field manager added to an object
the reconciler applied, found through managedFields: ``gitops.diff.managed``) and, at the
level of the state, ``orphan`` (a live object carrying this instance's ownership label
that Git no longer has). A Secret's values never appear in an item: only that they differ.

The result is data (``ObjectDiff`` with ``DiffItem`` values); rendering is the CLI's job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from gitops.diff.ignore import IgnoreRule, without_ignored
from gitops.diff.items import OWNERSHIP_LABEL, DiffItem, ObjectDiff, Op, Status
from gitops.diff.managed import extra_fields
from gitops.diff.normalize import normalize, same_scalar
from gitops.model.applied import as_applied
from gitops.model.schema import KEY_DEFAULTS, KindSchemas, Node

__all__ = ["OWNERSHIP_LABEL", "DiffItem", "ObjectDiff", "Op", "Status", "comparable", "diff_object", "diff_states",
           "is_zero", "list_keys"]

# The built-in table, for kinds no schema describes: the list keys Kubernetes' API types
# declare, tried in order (the first whose first field every desired item has), and the
# fields that hold quantities (by the name of their map, or their own name).
_FALLBACK_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "containers": (("name",),), "initContainers": (("name",),), "ephemeralContainers": (("name",),),
    "env": (("name",),), "volumes": (("name",),), "volumeMounts": (("mountPath",),),
    "volumeDevices": (("devicePath",),), "imagePullSecrets": (("name",),), "hostAliases": (("ip",),),
    "ports": (("containerPort", "protocol"), ("port", "protocol")),
    "subsets": (), "rules": (), "tolerations": (), "args": (), "command": (),
}
_QUANTITY_MAPS = frozenset({"limits", "requests", "capacity", "allocatable", "hard", "used", "default",
                            "defaultRequest", "max", "min", "maxLimitRequestRatio"})
_QUANTITY_FIELDS = frozenset({"storage", "sizeLimit"})


def is_zero(value: Any) -> bool:
    """Whether ``value`` is what the API server drops from an object: an empty string,
    false, zero, an empty map or list, null."""
    if value is None or value is False or value in ("", {}, []):
        return True
    return type(value) in (int, float) and value == 0


def list_keys(field: str, items: Sequence[Any], *, schemas: KindSchemas | None, node: Node | None
              ) -> tuple[str, ...] | None:
    """The fields that identify the items of list ``field`` (None: matched by position)."""
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    if node is not None and schemas is not None:
        return schemas.keys(node)
    for keys in _FALLBACK_KEYS.get(field, (("name",),)):
        if all(keys[0] in i for i in items):
            return keys
    return None


def _key_of(item: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    return json.dumps([item.get(k, KEY_DEFAULTS.get(k)) for k in keys])


def _label(item: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    return ",".join(f"{k}={item.get(k, KEY_DEFAULTS.get(k))}" for k in keys)


class _Comparison:
    def __init__(self, schemas: KindSchemas | None) -> None:
        self.schemas = schemas
        self.out: list[DiffItem] = []

    def _child(self, node: Node | None, name: str) -> Node | None:
        return None if node is None or self.schemas is None else self.schemas.field(node, name)

    def compare(self, d: Any, a: Any, path: str, field: str, parent: str, node: Node | None) -> None:
        """Compare desired ``d`` with actual ``a`` at ``path`` (``field`` is its last name,
        ``parent`` the one before, ``node`` its schema or None), appending what differs."""
        if d is None:
            return  # Git sets nothing here
        if a is None and is_zero(d):
            return  # a zero value the server keeps as null (a ClusterRole's rules: [])
        if isinstance(d, dict):
            if not isinstance(a, dict):
                self.out.append(DiffItem(Op.CHANGED if a is not None else Op.MISSING, path, d, a))
                return
            for k, v in d.items():
                sub = f"{path}.{k}" if path else k
                if k not in a:
                    if not is_zero(v):
                        self.out.append(DiffItem(Op.MISSING, sub, v, None))
                    continue
                self.compare(v, a[k], sub, k, field, self._child(node, k))
            return
        if isinstance(d, list):
            self._compare_list(d, a, path, field, node)
            return
        if node is not None and self.schemas is not None:
            quantity = self.schemas.is_quantity(node)
        else:
            quantity = parent in _QUANTITY_MAPS or field in _QUANTITY_FIELDS
        if not same_scalar(d, a, quantity=quantity):
            self.out.append(DiffItem(Op.CHANGED, path, d, a))

    def _compare_list(self, d: list[Any], a: Any, path: str, field: str, node: Node | None) -> None:
        if not isinstance(a, list):
            self.out.append(DiffItem(Op.CHANGED if a is not None else Op.MISSING, path, d, a))
            return
        item_node = None if node is None or self.schemas is None else self.schemas.item(node)
        keys = list_keys(field, d, schemas=self.schemas, node=node)
        if keys is not None and all(isinstance(i, dict) for i in a):
            live = {_key_of(i, keys): i for i in a}
            for item in d:
                sub = f"{path}[{_label(item, keys)}]"
                found = live.get(_key_of(item, keys))
                if found is None:
                    self.out.append(DiffItem(Op.MISSING, sub, item, None))
                else:
                    self.compare(item, found, sub, field, field, item_node)
            return
        if node is not None and self.schemas is not None and self.schemas.is_set(node):
            if sorted(json.dumps(x, sort_keys=True) for x in d) != sorted(json.dumps(x, sort_keys=True) for x in a):
                self.out.append(DiffItem(Op.CHANGED, path, d, a))
            return
        if len(d) != len(a):
            self.out.append(DiffItem(Op.CHANGED, path, d, a))
            return
        for i, (x, y) in enumerate(zip(d, a, strict=True)):
            self.compare(x, y, f"{path}[{i}]", field, field, item_node)


def _mask_secret(manifest: dict[str, Any], items: list[DiffItem]) -> list[DiffItem]:
    if str(manifest.get("kind", "")).lower() != "secret":
        return items
    return [DiffItem(i.op, i.path) if i.path.split(".")[0] in ("data", "stringData") or i.path in ("data",)
            else i for i in items]


def comparable(manifest: dict[str, Any], ignore: Sequence[IgnoreRule] = ()) -> dict[str, Any]:
    """A desired manifest in the form the diff compares it: the ignored fields left out, as
    the reconciler applies it, normalised."""
    return normalize(as_applied(without_ignored(manifest, ignore)))


def diff_object(desired: dict[str, Any], live: dict[str, Any] | None, *, field_manager: str = "gitops",
                ignore_managers: Sequence[str] = (), ignore: Sequence[IgnoreRule] = (),
                schemas: KindSchemas | None = None) -> list[DiffItem]:
    """What differs between one desired object and the live one (None: not in the cluster),
    leaving out the fields ``ignore`` points at and the fields of ``ignore_managers``;
    ``schemas`` (the server's) says how lists match and where quantities are."""
    if live is None:
        return [DiffItem(Op.MISSING, "", None, None)]
    d, a = comparable(desired, ignore), normalize(without_ignored(live, ignore))
    if "namespace" in (d.get("metadata") or {}) and "namespace" not in (a.get("metadata") or {}):
        # a live object without a namespace is cluster-scoped: the server ignored Git's (read before
        # the Git source left it out, or under a scope the cluster did not serve yet)
        d = {**d, "metadata": {k: v for k, v in d["metadata"].items() if k != "namespace"}}
    comparison = _Comparison(schemas)
    root = None if schemas is None else schemas.root(str(desired.get("apiVersion", "")), str(desired.get("kind", "")))
    comparison.compare(d, a, "", "", "", root)
    comparison.out.extend(extra_fields(d, without_ignored(live, ignore), field_manager=field_manager,
                                       ignore_managers=frozenset(ignore_managers)))
    return _mask_secret(desired, comparison.out)


def diff_states(desired: Mapping[str, dict[str, Any]], live: Mapping[str, dict[str, Any]], *,
                instance: str | None = None, field_manager: str = "gitops",
                ignore_managers: Sequence[str] = (), ignore: Sequence[IgnoreRule] = (),
                schemas: KindSchemas | None = None) -> list[ObjectDiff]:
    """Pair the two states by key and diff each pair; live objects that carry ``instance``'s
    ownership label and are not desired are orphans. Sorted by key."""
    out: list[ObjectDiff] = []
    for key in sorted(desired):
        items = diff_object(desired[key], live.get(key), field_manager=field_manager, ignore_managers=ignore_managers,
                            ignore=ignore, schemas=schemas)
        if key not in live:
            out.append(ObjectDiff(key, Status.MISSING, tuple(items)))
        else:
            out.append(ObjectDiff(key, Status.OUT_OF_SYNC if items else Status.IN_SYNC, tuple(items)))
    if instance is not None:
        for key in sorted(set(live) - set(desired)):
            labels = (live[key].get("metadata") or {}).get("labels") or {}
            if labels.get(OWNERSHIP_LABEL) == instance:
                out.append(ObjectDiff(key, Status.ORPHAN))
    return sorted(out, key=lambda o: o.key)
