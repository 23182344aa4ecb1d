"""Reading Kubernetes manifests out of files: YAML (one or many documents), JSON, and
``kind: List`` / ``…List`` objects, with the line of every document and of every error.

Pure: bytes in, documents or errors out. Content problems are returned as
``ManifestProblem`` values, never raised, because a source must record them and go on.

One reader (``gitops.sources.yaml_reader``): PyYAML's safe loader on libyaml (YAML 1.1,
as Kubernetes reads it), with two departures, both toward what Kubernetes' own reader
does: a timestamp stays a string (a date in a label is not turned into another type and
back), and ``=`` is the string "=" (PyYAML reads it as a "value" tag it cannot construct).

What comes out is what the API server would be sent, or a problem with its line. The one
change: a cluster-scoped object's ``metadata.namespace`` is left out, as kubectl and the API
server ignore it (kept, it would differ from the live object at every pass). Otherwise:
- mapping keys are strings; ``1`` and ``on`` become "1" and "true" as Kubernetes turns
  them, any other key (a float, a null, a list) is a problem;
- a key given twice in one mapping is a problem (Kubernetes' strict decoding refuses it);
- aliases are expanded, within go-yaml's alias ratio and the file size limit, so an
  alias bomb is a problem and not a process out of memory;
- nesting deeper than ``MAX_DEPTH``, an int outside 64 bits, ``.inf`` or ``.nan`` (none of
  which JSON or the API server can carry) are problems.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from gitops.model.errors import InvalidResourceKeyError
from gitops.model.keys import ResourceKey, canonical_group, key_of
from gitops.model.names import name_problem
from gitops.model.scope import Scope, builtin_scope
from gitops.sources.yaml_reader import INT64, MAX_DEPTH, TOO_DEEP, Unreadable, load_yaml_documents

__all__ = ["MAX_DEPTH", "Document", "ManifestProblem", "ParseResult", "load_yaml_documents", "parse_manifests"]


def _load_json(text: str) -> Any:
    """A JSON document, refused where Kubernetes' strict decoding refuses it (a key given
    twice) or where it cannot be carried (NaN, Infinity). Raises ValueError, or
    json.JSONDecodeError with the line."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise ValueError(f"the key {k!r} appears twice in one object")
            out[k] = v
        return out

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number JSON can carry")

    return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)


def _json_problem(value: Any) -> ManifestProblem | None:
    """What in parsed JSON Kubernetes could not take: nesting too deep, an int over 64 bits."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if depth >= MAX_DEPTH and isinstance(v, (dict, list)):
            return ManifestProblem("too-deep", TOO_DEEP)
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
        elif isinstance(v, int) and not isinstance(v, bool) and not INT64[0] <= v <= INT64[1]:
            return ManifestProblem("json-unsupported", f"the integer {v} does not fit in 64 bits")
        elif isinstance(v, float) and not math.isfinite(v):
            return ManifestProblem("json-unsupported", "a number too large for JSON to carry")
    return None


@dataclass(frozen=True)
class Document:
    """One Kubernetes object found in a file."""

    key: ResourceKey
    manifest: dict[str, Any]
    index: int  # position of the object in the file, counting list items
    line: int  # 1-based line where its document starts


@dataclass(frozen=True)
class ManifestProblem:
    """Why (part of) a file cannot be desired state."""

    code: str  # yaml-syntax, json-syntax, not-an-object, missing-field, invalid-name, duplicate-field, ...
    message: str
    line: int | None = None


@dataclass(frozen=True)
class ParseResult:
    documents: list[Document]
    problems: list[ManifestProblem]


def _objects(data: Any, line: int) -> tuple[list[tuple[dict[str, Any], int]], list[ManifestProblem]]:
    """Flatten one parsed document into objects (a List yields its items)."""
    if data is None:
        return [], []
    if not isinstance(data, dict):
        return [], [ManifestProblem("not-an-object", f"document is a {type(data).__name__}, not a mapping", line)]
    kind = data.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(data.get("items"), list):
        out: list[tuple[dict[str, Any], int]] = []
        problems: list[ManifestProblem] = []
        for i, item in enumerate(data["items"]):
            if not isinstance(item, dict):
                problems.append(ManifestProblem("not-an-object", f"item {i} of the {kind} is not a mapping", line))
            else:
                out.append((item, line))
        return out, problems
    return [(data, line)], []


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "a mapping",
            type(None): "empty"}.get(type(value), type(value).__name__)


def _check(obj: dict[str, Any], line: int, scope: Scope, default_namespace: str) -> Document | ManifestProblem:
    for field in ("apiVersion", "kind"):
        value = obj.get(field)
        if field not in obj:
            return ManifestProblem("missing-field", f"object has no {field}", line)
        if not isinstance(value, str) or not value:
            return ManifestProblem("invalid-field", f"{field} is {_type_name(value)}, not a non-empty string", line)
    kind: str = obj["kind"]
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return ManifestProblem("missing-field" if meta is None else "invalid-field",
                               f"{kind} has no metadata" if meta is None else f"{kind}'s metadata is "
                               f"{_type_name(meta)}, not a mapping", line)
    name = meta.get("name")
    if name is None or name == "":
        if meta.get("generateName"):
            return ManifestProblem("missing-field", "object has generateName but no metadata.name; "
                                   "GitOps needs a stable name", line)
        return ManifestProblem("missing-field", f"{kind} has no metadata.name", line)
    if not isinstance(name, str):
        return ManifestProblem("invalid-field", f"{kind}'s metadata.name is {_type_name(name)} ({name!r}), "
                               "not a string: quote it", line)
    namespace = meta.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        return ManifestProblem("invalid-field", f"{kind} {name}: metadata.namespace is {_type_name(namespace)} "
                               f"({namespace!r}), not a string: quote it", line)
    api_version: str = obj["apiVersion"]
    group = canonical_group(api_version.rpartition("/")[0] if "/" in api_version else "", kind)
    namespaced = scope(group, kind)
    try:
        key = key_of(obj, namespaced=namespaced, default_namespace=default_namespace)
    except InvalidResourceKeyError as e:
        return ManifestProblem("invalid-key", str(e), line)
    why = name_problem(key.group, key.kind, key.name, key.namespace)
    if why is not None:
        return ManifestProblem("invalid-name", why, line)
    if not namespaced and "namespace" in meta:  # the API server drops it: so does the desired state
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "namespace"}}
    return Document(key, obj, 0, line)


def parse_manifests(
    path: str,
    data: bytes,
    *,
    scope: Scope = builtin_scope,
    default_namespace: str = "default",
    max_bytes: int = 1 << 20,
) -> ParseResult:
    """Parse a file's bytes into Kubernetes objects and the problems found in it."""
    if len(data) > max_bytes:
        return ParseResult([], [ManifestProblem("too-large", f"file is {len(data)} bytes, over the limit of "
                                                f"{max_bytes}")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        return ParseResult([], [ManifestProblem("encoding", f"not UTF-8 (byte {e.start})", line)])
    raw: list[tuple[Any, int]] = []
    if path.endswith(".json"):
        try:
            value = _load_json(text)
        except json.JSONDecodeError as e:
            return ParseResult([], [ManifestProblem("json-syntax", e.msg, e.lineno)])
        except ValueError as e:
            return ParseResult([], [ManifestProblem("json-unsupported", str(e))])
        except RecursionError:
            return ParseResult([], [ManifestProblem("too-deep", TOO_DEEP)])
        problem = _json_problem(value)
        if problem is not None:
            return ParseResult([], [problem])
        raw.append((value, 1))
    else:
        try:
            raw = load_yaml_documents(text, max_size=max_bytes)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
            why = getattr(e, "problem", None) or str(e)
            return ParseResult([], [ManifestProblem("yaml-syntax", str(why),
                                                    mark.line + 1 if mark is not None else None)])
        except Unreadable as e:
            return ParseResult([], [ManifestProblem(e.code, e.message, e.line)])
    documents: list[Document] = []
    problems: list[ManifestProblem] = []
    for value, line in raw:
        objects, found = _objects(value, line)
        problems.extend(found)
        for obj, obj_line in objects:
            checked = _check(obj, obj_line, scope, default_namespace)
            if isinstance(checked, ManifestProblem):
                problems.append(checked)
            else:
                documents.append(Document(checked.key, checked.manifest, len(documents), obj_line))
    return ParseResult(documents, problems)
