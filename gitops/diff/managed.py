"""managedFields: who owns which field of a live object, read and rewritten.

Server-side apply records, per field manager, the fields it set (``fieldsV1``). The diff
reads them for ``extra`` fields (what another manager added to an object the reconciler
applied, and Git does not set); the reconciler rewrites them before an apply (``take_over``)
so that the apply removes such fields, and so that adopting an object made by
``kubectl apply`` (client-side) converges in one pass, as ``kubectl apply --server-side``
migrates it. Pure: dicts in, dicts out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from gitops.diff.items import DiffItem, Op
from gitops.diff.normalize import normalize, same_scalar
from gitops.model.schema import KEY_DEFAULTS
from gitops.model.server_fields import LAST_APPLIED

__all__ = ["CLIENT_SIDE_APPLY", "extra_fields", "extra_segments", "managers_of", "take_over", "without_segments"]

CLIENT_SIDE_APPLY = frozenset({"kubectl-client-side-apply", "kubectl", "before-first-apply"})
"""The managers of kubectl's client-side apply (``kubectl`` is what kubectl before 1.18 called
every write, ``before-first-apply`` what the API server calls fields set before managedFields
existed): an adopting apply takes all their fields over."""
_LAST_APPLIED_SEGMENTS = ["f:metadata", "f:annotations", f"f:{LAST_APPLIED}"]


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
            hit = [i for i in obj if isinstance(i, dict) and all(
                same_scalar(v, i.get(k, KEY_DEFAULTS.get(k)), quantity=False) for k, v in match.items())]
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


def extra_segments(desired: dict[str, Any], live: dict[str, Any], *, field_manager: str,
                   ignore_managers: frozenset[str]) -> dict[str, tuple[list[str], Any]]:
    """Fields that managers other than the reconciler's (and the ignored ones) own in the
    live object and Git does not set, by readable path: their managedFields segments and
    live value. Only for objects the reconciler applied: elsewhere the creator's entry also
    holds the server's defaults, which are no drift."""
    entries = (live.get("metadata") or {}).get("managedFields") or []
    if not any(e.get("manager") == field_manager and e.get("operation") == "Apply" for e in entries):
        return {}
    out: dict[str, tuple[list[str], Any]] = {}
    for e in entries:
        if e.get("manager") in ignore_managers or e.get("manager") == field_manager or e.get("subresource"):
            continue
        for segments in _segments(e.get("fieldsV1") or {}):
            if segments[0] in ("f:status",) or segments[:2] == ["f:metadata", "f:managedFields"]:
                continue
            if segments[:3] == _LAST_APPLIED_SEGMENTS:
                continue  # kubectl's record of its own apply: kept, whoever owns it
            if _walk(desired, segments)[0]:
                continue
            found, value, path = _walk(live, segments)
            if found:
                out.setdefault(path, (segments, value))
    return out


def extra_fields(desired: dict[str, Any], live: dict[str, Any], *, field_manager: str,
                 ignore_managers: frozenset[str]) -> list[DiffItem]:
    """The ``extra`` items of a diff (``extra_segments``), sorted by path."""
    found = extra_segments(desired, live, field_manager=field_manager, ignore_managers=ignore_managers)
    return [DiffItem(Op.EXTRA, p, None, found[p][1]) for p in sorted(found)]


def without_segments(obj: Any, segments: list[str]) -> Any:
    """A copy of ``obj`` without the field that managedFields ``segments`` point at (the
    containers on the way copied, the rest shared)."""
    if not segments:
        return obj
    kind, _, raw = segments[0].partition(":")
    rest = segments[1:]
    if kind == "f" and isinstance(obj, dict) and raw in obj:
        if not rest:
            return {k: v for k, v in obj.items() if k != raw}
        return {**obj, raw: without_segments(obj[raw], rest)}
    if kind in ("k", "v", "i") and isinstance(obj, list):
        out = []
        for i, item in enumerate(obj):
            hit = (kind == "i" and i == int(raw)) or (kind == "v" and item == json.loads(raw)) or (
                kind == "k" and isinstance(item, dict) and all(
                    same_scalar(v, item.get(k, KEY_DEFAULTS.get(k)), quantity=False)
                    for k, v in json.loads(raw).items()))
            if not hit:
                out.append(item)
            elif rest:
                out.append(without_segments(item, rest))
        return out
    return obj


def managers_of(live: dict[str, Any], paths: Sequence[str], *, but: str = "") -> list[str]:
    """The field managers (other than ``but``) whose managedFields hold one of ``paths``
    (the diff's paths, or a parent of one): who set those fields."""
    out: set[str] = set()
    for e in (live.get("metadata") or {}).get("managedFields") or []:
        manager = str(e.get("manager", ""))
        if manager == but or manager in out:
            continue
        for segments in _segments(e.get("fieldsV1") or {}):
            found, _, path = _walk(live, segments)
            if found and any(p == path or p.startswith(path + ".") or p.startswith(path + "[") for p in paths):
                out.add(manager)
                break
    return sorted(out)


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
                segments == _LAST_APPLIED_SEGMENTS:
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
              ignore_managers: Sequence[str] = (), adopt: bool = False,
              keep_last_applied: bool = True) -> list[dict[str, Any]] | None:
    """The live object's managedFields with fields handed to ``field_manager``'s Apply
    entry, or None when nothing is to be handed over. Written back before the next apply,
    it lets that apply remove what it owns and no longer sends, as server-side apply does.

    - The fields other managers added and Git does not set (the ``extra`` items): how
      self-heal undoes ``kubectl set env`` or a ``kubectl edit`` that added a key (Flux
      does the same).
    - With ``adopt`` (the reconciler's first apply to an object someone else made, so it
      has no Apply entry of ours yet): also every field of kubectl's client-side apply
      (``CLIENT_SIDE_APPLY``), as ``kubectl apply --server-side`` migrates them: what Git
      sets is then ours without a conflict, what Git no longer sets goes, and what the
      server had defaulted is defaulted again, owned by nobody, so it is no drift. The
      last-applied annotation stays with kubectl unless ``keep_last_applied`` is False.
    """
    entries = (live.get("metadata") or {}).get("managedFields") or []
    ours = [e for e in entries if e.get("manager") == field_manager and e.get("operation") == "Apply"
            and not e.get("subresource")]
    if not ours and not adopt:
        return None
    d = normalize(desired)
    taken: dict[str, Any] = {}
    out: list[dict[str, Any]] = []
    for e in entries:
        if (ours and e is ours[0]) or e.get("manager") in ignore_managers or e.get("manager") == field_manager \
                or e.get("subresource"):
            out.append(e)
            continue
        if adopt and e.get("manager") in CLIENT_SIDE_APPLY and e.get("operation") == "Update":
            kept, moved = _split_all(e.get("fieldsV1") or {}, keep_last_applied=keep_last_applied)
        else:
            kept, moved = _split(e.get("fieldsV1") or {}, d, [])
        if moved:
            taken = _merge_fields(taken, moved)
        if set(kept) - {"."}:
            out.append({**e, "fieldsV1": kept})
    if not taken:
        return None
    if not ours:
        mine = {"manager": field_manager, "operation": "Apply", "apiVersion": live.get("apiVersion"),
                "fieldsType": "FieldsV1", "fieldsV1": taken}
        return [*out, mine]
    return [{**e, "fieldsV1": _merge_fields(e.get("fieldsV1") or {}, taken)} if e is ours[0] else e for e in out]


def _split_all(fields: dict[str, Any], *, keep_last_applied: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(kept, moved) for a manager whose every field is handed over: all but, when asked,
    the last-applied annotation (and the managedFields and status, which no apply owns)."""
    kept: dict[str, Any] = {}
    moved: dict[str, Any] = {}
    for k, v in fields.items():
        if k == "f:status":
            kept[k] = v
        elif k == "f:metadata" and isinstance(v, dict):
            meta_moved = {m: w for m, w in v.items() if m not in (".", "f:annotations", "f:managedFields")}
            annotations = v.get("f:annotations")
            if isinstance(annotations, dict):
                last = f"f:{LAST_APPLIED}"
                rest = {a: w for a, w in annotations.items() if a != "." and (a != last or not keep_last_applied)}
                if rest:
                    meta_moved["f:annotations"] = rest
                if keep_last_applied and last in annotations:
                    kept["f:metadata"] = {"f:annotations": {last: annotations[last]}}
            if meta_moved:
                moved[k] = meta_moved
        else:
            moved[k] = v
    return kept, moved
