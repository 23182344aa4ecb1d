"""Comparing a desired object with the live one, and a desired state with the live state.

The comparison is driven by the desired side, as ``kubectl apply`` and Argo CD's and Flux's
diffs are, so that a live cluster's defaults are never drift:

- a field Git does not set is not compared (the server may default it);
- lists whose items carry a merge key (containers, env, ports, volumes, volumeMounts, ...)
  are matched item by item on that key, with the same rule inside each item;
- quantities compare by value (``1000m`` is ``1``) and ints equal their string form.

What is caught: ``changed`` (a field Git sets has another value), ``missing`` (a field, or
the whole object, is absent), ``extra`` (a field another field manager added to an object
the reconciler applied, found through managedFields; some managers may be ignored) and, at
the level of the state, ``orphan`` (a live object carrying this instance's ownership label
that Git no longer has). A Secret's values never appear in an item: only that they differ.

The result is data (``ObjectDiff`` with ``DiffItem`` values); rendering is the CLI's job.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gitops.diff.ignore import IgnoreRule, without_ignored
from gitops.diff.normalize import normalize, same_scalar

__all__ = ["OWNERSHIP_LABEL", "DiffItem", "ObjectDiff", "Op", "Status", "diff_object", "diff_states", "take_over"]

OWNERSHIP_LABEL = "gitops.dev/instance"
"""The label the reconciler puts on what it applies; its value is the instance's name."""

# merge keys of common lists (the strategic-merge keys Kubernetes' API types declare)
_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",), "env": ("name",),
    "volumes": ("name",), "volumeMounts": ("mountPath",), "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",), "hostAliases": ("ip",), "ports": ("containerPort", "port"),
    "subsets": (), "rules": (), "tolerations": (), "args": (), "command": (),
}
_QUANTITY_PARENTS = frozenset({"limits", "requests", "capacity", "allocatable", "hard", "used", "storage"})


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


def _merge_key(field: str, items: Sequence[Any]) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in _MERGE_KEYS.get(field, ("name",)):
        if all(key in i for i in items):
            return key
    return None


def _compare(d: Any, a: Any, path: str, field: str, out: list[DiffItem], parent: str = "") -> None:
    """Compare desired ``d`` with actual ``a`` at ``path`` (``field`` is its last name,
    ``parent`` the one before), appending what differs to ``out``."""
    if d is None:
        return  # Git sets nothing here
    if isinstance(d, dict):
        if not isinstance(a, dict):
            out.append(DiffItem(Op.CHANGED if a is not None else Op.MISSING, path, d, a))
            return
        for k, v in d.items():
            sub = f"{path}.{k}" if path else k
            if k not in a:
                if v not in (None, {}, []):
                    out.append(DiffItem(Op.MISSING, sub, v, None))
                continue
            _compare(v, a[k], sub, k, out, field)
        return
    if isinstance(d, list):
        if not isinstance(a, list):
            out.append(DiffItem(Op.CHANGED if a is not None else Op.MISSING, path, d, a))
            return
        key = _merge_key(field, d)
        if key is not None and all(isinstance(i, dict) for i in a):
            live = {json.dumps(i.get(key)): i for i in a}
            for item in d:
                sub = f"{path}[{key}={item[key]}]"
                found = live.get(json.dumps(item[key]))
                if found is None:
                    out.append(DiffItem(Op.MISSING, sub, item, None))
                else:
                    _compare(item, found, sub, field, out)
            return
        if len(d) != len(a):
            out.append(DiffItem(Op.CHANGED, path, d, a))
            return
        for i, (x, y) in enumerate(zip(d, a, strict=True)):
            _compare(x, y, f"{path}[{i}]", field, out)
        return
    if not same_scalar(d, a, quantity=parent in _QUANTITY_PARENTS or field == "storage"):
        out.append(DiffItem(Op.CHANGED, path, d, a))


# ---------------------------------------------------------------------------- extra fields


def _segments(fields: dict[str, Any]) -> Iterator[list[str]]:
    """The leaf paths of a managedFields ``fieldsV1`` set, as its own keys (``f:spec``,
    ``k:{"name":"app"}``, ``v:"x"``, ``i:0``)."""
    for k, v in fields.items():
        if k == ".":
            continue
        children = {c: w for c, w in (v or {}).items() if c != "."}
        if not children:
            yield [k]
        else:
            for rest in _segments(children):
                yield [k, *rest]


def _walk(obj: Any, segments: list[str]) -> tuple[bool, Any, str]:
    """Follow managedFields segments through ``obj``: (found, value, readable path)."""
    path = ""
    for seg in segments:
        kind, _, raw = seg.partition(":")
        if kind == "f":
            if not isinstance(obj, dict) or raw not in obj:
                return False, None, f"{path}.{raw}" if path else raw
            obj, path = obj[raw], f"{path}.{raw}" if path else raw
        elif kind == "k":
            match = json.loads(raw)
            label = ",".join(f"{k}={v}" for k, v in match.items())
            if not isinstance(obj, list):
                return False, None, f"{path}[{label}]"
            hit = [i for i in obj if isinstance(i, dict) and all(same_scalar(v, i.get(k), quantity=False)
                                                                  for k, v in match.items())]
            if not hit:
                return False, None, f"{path}[{label}]"
            obj, path = hit[0], f"{path}[{label}]"
        elif kind == "v":
            value = json.loads(raw)
            if not isinstance(obj, list) or value not in obj:
                return False, None, f"{path}[{value}]"
            obj, path = value, f"{path}[{value}]"
        elif kind == "i":
            index = int(raw)
            if not isinstance(obj, list) or index >= len(obj):
                return False, None, f"{path}[{index}]"
            obj, path = obj[index], f"{path}[{index}]"
        else:
            return False, None, path
    return True, obj, path


def _extra(desired: dict[str, Any], live: dict[str, Any], *, field_manager: str,
           ignore_managers: frozenset[str]) -> list[DiffItem]:
    """Fields that managers other than the reconciler's (and the ignored ones) own in the
    live object and Git does not set. Only for objects the reconciler applied: elsewhere
    the creator's entry also holds the server's defaults, which are no drift."""
    entries = (live.get("metadata") or {}).get("managedFields") or []
    if not any(e.get("manager") == field_manager and e.get("operation") == "Apply" for e in entries):
        return []
    out: dict[str, DiffItem] = {}
    for e in entries:
        if e.get("manager") in ignore_managers or e.get("manager") == field_manager or e.get("subresource"):
            continue
        for segments in _segments(e.get("fieldsV1") or {}):
            if segments[0] in ("f:status",) or segments[:2] == ["f:metadata", "f:managedFields"]:
                continue
            in_git, _, path = _walk(desired, segments)
            if in_git or path.startswith("metadata.annotations.kubectl.kubernetes.io/last-applied-configuration"):
                continue
            found, value, path = _walk(live, segments)
            if found:
                out.setdefault(path, DiffItem(Op.EXTRA, path, None, value))
    return [out[p] for p in sorted(out)]


def _split(fields: dict[str, Any], desired: Any, prefix: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(kept, moved): the parts of a fieldsV1 set Git sets too, and the subtrees it does not."""
    kept: dict[str, Any] = {}
    moved: dict[str, Any] = {}
    for k, v in fields.items():
        if k == ".":
            kept[k] = v
            continue
        segments = [*prefix, k]
        if segments[0] == "f:status" or segments[:2] == ["f:metadata", "f:managedFields"] or \
                segments == ["f:metadata", "f:annotations", "f:kubectl.kubernetes.io/last-applied-configuration"]:
            kept[k] = v
            continue
        if not _walk(desired, segments)[0]:
            moved[k] = v
        elif v:
            inner_kept, inner_moved = _split(v, desired, segments)
            if inner_kept:
                kept[k] = inner_kept
            if inner_moved:
                moved[k] = inner_moved
        else:
            kept[k] = v
    return kept, moved


def _merge_fields(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge_fields(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def take_over(desired: dict[str, Any], live: dict[str, Any], *, field_manager: str = "gitops",
              ignore_managers: Sequence[str] = ()) -> list[dict[str, Any]] | None:
    """The live object's managedFields with the fields other managers added and Git does
    not set (the ``extra`` items) handed to ``field_manager``'s Apply entry, or None when
    there are none. Written back before the next apply, it lets that apply remove them, as
    server-side apply removes the fields an applier owns and no longer sends: how self-heal
    undoes ``kubectl set env`` or a ``kubectl edit`` that added a key (Flux does the same)."""
    entries = (live.get("metadata") or {}).get("managedFields") or []
    ours = [e for e in entries if e.get("manager") == field_manager and e.get("operation") == "Apply"
            and not e.get("subresource")]
    if not ours:
        return None
    d = normalize(desired)
    taken: dict[str, Any] = {}
    out: list[dict[str, Any]] = []
    for e in entries:
        if e is ours[0] or e.get("manager") in ignore_managers or e.get("manager") == field_manager \
                or e.get("subresource"):
            out.append(e)
            continue
        kept, moved = _split(e.get("fieldsV1") or {}, d, [])
        if moved:
            taken = _merge_fields(taken, moved)
        if set(kept) - {"."}:
            out.append({**e, "fieldsV1": kept})
    if not taken:
        return None
    mine = ours[0]
    return [{**mine, "fieldsV1": _merge_fields(mine.get("fieldsV1") or {}, taken)} if e is mine else e for e in out]


# ---------------------------------------------------------------------------- objects and states


def _mask_secret(manifest: dict[str, Any], items: list[DiffItem]) -> list[DiffItem]:
    if str(manifest.get("kind", "")).lower() != "secret":
        return items
    return [DiffItem(i.op, i.path) if i.path.split(".")[0] in ("data", "stringData") or i.path in ("data",)
            else i for i in items]


def diff_object(desired: dict[str, Any], live: dict[str, Any] | None, *, field_manager: str = "gitops",
                ignore_managers: Sequence[str] = (), ignore: Sequence[IgnoreRule] = ()) -> list[DiffItem]:
    """What differs between one desired object and the live one (None: not in the cluster),
    leaving out the fields ``ignore`` points at and the fields of ``ignore_managers``."""
    if live is None:
        return [DiffItem(Op.MISSING, "", None, None)]
    d, a = normalize(without_ignored(desired, ignore)), normalize(without_ignored(live, ignore))
    out: list[DiffItem] = []
    _compare(d, a, "", "", out)
    out.extend(_extra(d, without_ignored(live, ignore), field_manager=field_manager,
                      ignore_managers=frozenset(ignore_managers)))
    return _mask_secret(desired, out)


def diff_states(desired: Mapping[str, dict[str, Any]], live: Mapping[str, dict[str, Any]], *,
                instance: str | None = None, field_manager: str = "gitops",
                ignore_managers: Sequence[str] = (), ignore: Sequence[IgnoreRule] = ()) -> list[ObjectDiff]:
    """Pair the two states by key and diff each pair; live objects that carry ``instance``'s
    ownership label and are not desired are orphans. Sorted by key."""
    out: list[ObjectDiff] = []
    for key in sorted(desired):
        items = diff_object(desired[key], live.get(key), field_manager=field_manager, ignore_managers=ignore_managers,
                            ignore=ignore)
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
