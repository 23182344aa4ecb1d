"""Reading Kubernetes manifests out of files: YAML (one or many documents), JSON, and
``kind: List`` / ``…List`` objects, with the line of every document and of every error.

Pure: bytes in, documents or errors out. Content problems are returned as
``ManifestProblem`` values, never raised, because a source must record them and go on.

One reader: PyYAML's safe loader on libyaml (YAML 1.1, as Kubernetes reads it), with two
departures, both toward what Kubernetes' own reader does: a timestamp stays a string (a
date in a label is not turned into another type and back), and ``=`` is the string "="
(PyYAML reads it as a "value" tag it cannot construct).

What comes out is what the API server would be sent, or a problem with its line; never a
silent change:
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

__all__ = ["MAX_DEPTH", "Document", "ManifestProblem", "ParseResult", "load_yaml_documents", "parse_manifests"]

MAX_DEPTH = 100  # levels of nesting; a real manifest (a CRD's schema included) has far fewer
_TOO_DEEP = f"values are nested more than {MAX_DEPTH} levels deep"
_INT64 = (-(1 << 63), (1 << 63) - 1)

_BaseLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_RESOLVED: dict[str, str] = {}  # plain scalar -> its tag: manifests repeat most of their values


class _Loader(_BaseLoader):  # type: ignore[misc]
    """Safe YAML 1.1 without the timestamp and "value" (``=``) types."""

    def resolve(self, kind: type[yaml.Node], value: str, implicit: tuple[bool, bool]) -> str:
        """The tag of a node, as PyYAML's resolver gives it, remembered for plain scalars:
        with no path resolvers (this loader has none) their tag depends on the value alone.
        libyaml's parser asks for every scalar, and this was a third of composing."""
        if kind is yaml.ScalarNode and implicit[0]:
            tag = _RESOLVED.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)
                if len(_RESOLVED) < 100_000:
                    _RESOLVED[value] = tag
            return tag
        # what BaseResolver.resolve answers without path resolvers, without the call
        return _MAP if kind is yaml.MappingNode else _SEQ if kind is yaml.SequenceNode else _STR

    # libyaml's composer calls these around every node to track path resolvers, which this
    # loader has none of (asserted below): nothing to track
    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None


assert not _BaseLoader.yaml_path_resolvers, "path resolvers would make a scalar's tag depend on its place"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}

_INT, _FLOAT, _BOOL, _NULL = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
                              "tag:yaml.org,2002:null")
_MERGE = "tag:yaml.org,2002:merge"
_SCALARS = {_INT: "construct_yaml_int", _FLOAT: "construct_yaml_float", _BOOL: "construct_yaml_bool",
            _NULL: "construct_yaml_null"}


class _Unreadable(Exception):
    """A document that cannot be read faithfully: its problem code, message and line."""

    def __init__(self, code: str, message: str, node: yaml.Node) -> None:
        super().__init__(message)
        self.code, self.message, self.line = code, message, node.start_mark.line + 1


def _allowed_alias_ratio(decoded: int) -> float:
    """go-yaml's rule (the reader behind Kubernetes): up to 400,000 decoded values, 99% may
    come from aliases; from 4,000,000 on, 10%; in between, a straight line."""
    low, high = 400_000, 4_000_000
    if decoded <= low:
        return 0.99
    if decoded >= high:
        return 0.10
    return 0.99 - 0.89 * (decoded - low) / (high - low)


_ScalarNode, _SequenceNode, _MappingNode = yaml.ScalarNode, yaml.SequenceNode, yaml.MappingNode
_CONSTRUCTED: dict[tuple[str, str], Any] = {}  # (tag, plain scalar) -> its value: replicas: 3, again and again


class _Builder:
    """Composed YAML nodes to the JSON-shaped data the API server would receive.

    Why not PyYAML's constructor: it keeps non-string keys, merges ``1`` and ``true`` into
    one key, lets a duplicate key win silently and shares aliased objects; and this walk,
    with its plain-string fast path, costs about as much as the constructor it replaces
    (see scripts/bench_git_ingest.py)."""

    def __init__(self, loader: Any, max_size: int) -> None:
        self.loader = loader
        self.max_size = max_size
        self.decoded = 0  # values built, aliases expanded
        self.from_aliases = 0  # of which reached through an alias
        self.size = 0  # characters built through aliases (without aliases, the text bounds it)
        self.seen: set[int] = set()  # collections already built once: met again, they are aliases

    def build(self, node: yaml.Node) -> Any:
        return self._value(node, 0, False)

    def _expanded(self, node: yaml.Node, size: int) -> None:
        """Count a value reached through an alias, and stop a document that expands too far."""
        self.from_aliases += 1
        self.size += size + 1
        if (self.from_aliases > 100 and self.decoded > 1000
                and self.from_aliases / self.decoded > _allowed_alias_ratio(self.decoded)):
            raise _Unreadable("yaml-aliases", "the document expands through aliases far beyond its text "
                              "(an alias bomb?)", node)
        if self.size > self.max_size:
            raise _Unreadable("too-large", f"the document expands through aliases to over {self.max_size} "
                              "characters, the file size limit", node)

    def _value(self, node: yaml.Node, depth: int, in_alias: bool) -> Any:
        self.decoded += 1
        if node.__class__ is _ScalarNode:
            if in_alias:
                self._expanded(node, len(node.value))
            if node.tag == _STR:
                return node.value
            return self._scalar(node)
        if depth >= MAX_DEPTH:
            raise _Unreadable("too-deep", _TOO_DEEP, node)
        if id(node) in self.seen:
            in_alias = True
        else:
            self.seen.add(id(node))
        if in_alias:
            self._expanded(node, 0)
        tag = node.tag
        if tag == _MAP and node.__class__ is _MappingNode:
            return self._mapping(node, depth + 1, in_alias)
        if tag == _SEQ and node.__class__ is _SequenceNode:
            items = []
            for v in node.value:
                if v.tag == _STR and v.__class__ is _ScalarNode and not in_alias:  # a plain string: no call
                    self.decoded += 1
                    items.append(v.value)
                else:
                    items.append(self._value(v, depth + 1, in_alias))
            return items
        raise _Unreadable("yaml-unsupported", f"the tag {tag} is not read by Kubernetes", node)

    def _scalar(self, node: yaml.Node) -> Any:
        known = _CONSTRUCTED.get((node.tag, node.value), _CONSTRUCTED)
        if known is not _CONSTRUCTED:
            return known
        method = _SCALARS.get(node.tag)
        if method is None:
            raise _Unreadable("yaml-unsupported", f"the tag {node.tag} is not read by Kubernetes", node)
        value = getattr(self.loader, method)(node)
        if type(value) is int and not _INT64[0] <= value <= _INT64[1]:
            raise _Unreadable("yaml-unsupported", f"the integer {node.value} does not fit in 64 bits", node)
        if type(value) is float and not math.isfinite(value):
            raise _Unreadable("yaml-unsupported", f"{node.value} is not a number JSON can carry", node)
        if len(_CONSTRUCTED) < 10_000:
            _CONSTRUCTED[node.tag, node.value] = value  # an int, float, bool or None: immutable
        return value

    def _mapping(self, node: yaml.MappingNode, depth: int, in_alias: bool) -> dict[str, Any]:
        """``depth`` is that of the mapping's values."""
        out: dict[str, Any] = {}
        merged: dict[str, Any] | None = None  # from merge keys (<<): the mapping's own keys win, wherever they stand
        for k, v in node.value:
            if k.tag == _STR and k.__class__ is _ScalarNode:  # nearly every key: a plain string
                self.decoded += 1
                key = k.value
                if in_alias:
                    self._expanded(k, len(key))
            elif k.tag == _MERGE:
                merged = {} if merged is None else merged
                for source in v.value if v.__class__ is _SequenceNode else [v]:
                    value = self._value(source, depth, in_alias)
                    if not isinstance(value, dict):
                        raise _Unreadable("yaml-unsupported", "a merge key (<<) takes a mapping or a list of "
                                          "mappings", source)
                    for mk, mv in value.items():
                        merged.setdefault(mk, mv)  # the first source that names a key wins, as in YAML 1.1
                continue
            else:
                key = self._key(k, depth, in_alias)
            if key in out:
                raise _Unreadable("duplicate-field", f"the key {key!r} appears twice in one mapping", k)
            if v.tag == _STR and v.__class__ is _ScalarNode and not in_alias:  # a plain string: no call
                self.decoded += 1
                out[key] = v.value
            else:
                out[key] = self._value(v, depth, in_alias)
        if merged:
            for mk, mv in merged.items():
                out.setdefault(mk, mv)
        return out

    def _key(self, node: yaml.Node, depth: int, in_alias: bool) -> str:
        """A mapping key other than a plain string, as Kubernetes' YAML-to-JSON step writes it."""
        if node.__class__ is not _ScalarNode:
            raise _Unreadable("yaml-unsupported", "a mapping key must be a string, not a list or a mapping", node)
        value = self._value(node, depth, in_alias)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int)):
            return str(value)
        raise _Unreadable("yaml-unsupported", f"the key {node.value!r} is a {type(value).__name__}, "
                          "which Kubernetes does not take as a key", node)


def load_yaml_documents(text: str, *, max_size: int = 1 << 20) -> list[tuple[Any, int]]:
    """Every non-empty document of a YAML stream with the 1-based line it starts on.
    Raises ``yaml.YAMLError`` for bad syntax and ``_Unreadable`` for content that cannot
    be read faithfully (see the module's docstring)."""
    loader = _Loader(text)
    out: list[tuple[Any, int]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            value = _Builder(loader, max_size).build(node)
            if value is not None:
                out.append((value, node.start_mark.line + 1))
    finally:
        loader.dispose()
    return out


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
            return ManifestProblem("too-deep", _TOO_DEEP)
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
        elif isinstance(v, int) and not isinstance(v, bool) and not _INT64[0] <= v <= _INT64[1]:
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
            return ParseResult([], [ManifestProblem("too-deep", _TOO_DEEP)])
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
        except _Unreadable as e:
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
                documents.append(Document(checked.key, obj, len(documents), obj_line))
    return ParseResult(documents, problems)
