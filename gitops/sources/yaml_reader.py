"""The YAML reader of manifests (``gitops.sources.manifests``): PyYAML's safe loader on
libyaml (YAML 1.1, as Kubernetes reads it) with two departures, both toward what
Kubernetes' own reader does: a timestamp stays a string, and ``=`` is the string "=".
Composed nodes are built into JSON-shaped data by a walk of our own (``_Builder``) that
refuses what the API server could not be sent faithfully: a key that is not a string (``1``
and ``on`` become "1" and "true", as Kubernetes turns them), a key given twice, an alias
bomb (go-yaml's alias ratio, and the file size limit), nesting deeper than ``MAX_DEPTH``,
an int outside 64 bits, ``.inf`` and ``.nan``. Pure: text in, values or ``Unreadable``
out."""

from __future__ import annotations

import math
from typing import Any

import yaml

__all__ = ["INT64", "MAX_DEPTH", "TOO_DEEP", "Loader", "Unreadable", "load_yaml_documents"]

MAX_DEPTH = 100  # levels of nesting; a real manifest (a CRD's schema included) has far fewer
TOO_DEEP = f"values are nested more than {MAX_DEPTH} levels deep"
INT64 = (-(1 << 63), (1 << 63) - 1)

_BaseLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_RESOLVED: dict[str, str] = {}  # plain scalar -> its tag: manifests repeat most of their values


class Loader(_BaseLoader):  # type: ignore[misc]
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
Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}

_INT, _FLOAT, _BOOL, _NULL = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
                              "tag:yaml.org,2002:null")
_MERGE = "tag:yaml.org,2002:merge"
_SCALARS = {_INT: "construct_yaml_int", _FLOAT: "construct_yaml_float", _BOOL: "construct_yaml_bool",
            _NULL: "construct_yaml_null"}


class Unreadable(Exception):
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
            raise Unreadable("yaml-aliases", "the document expands through aliases far beyond its text "
                              "(an alias bomb?)", node)
        if self.size > self.max_size:
            raise Unreadable("too-large", f"the document expands through aliases to over {self.max_size} "
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
            raise Unreadable("too-deep", TOO_DEEP, node)
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
        raise Unreadable("yaml-unsupported", f"the tag {tag} is not read by Kubernetes", node)

    def _scalar(self, node: yaml.Node) -> Any:
        known = _CONSTRUCTED.get((node.tag, node.value), _CONSTRUCTED)
        if known is not _CONSTRUCTED:
            return known
        method = _SCALARS.get(node.tag)
        if method is None:
            raise Unreadable("yaml-unsupported", f"the tag {node.tag} is not read by Kubernetes", node)
        value = getattr(self.loader, method)(node)
        if type(value) is int and not INT64[0] <= value <= INT64[1]:
            raise Unreadable("yaml-unsupported", f"the integer {node.value} does not fit in 64 bits", node)
        if type(value) is float and not math.isfinite(value):
            raise Unreadable("yaml-unsupported", f"{node.value} is not a number JSON can carry", node)
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
                        raise Unreadable("yaml-unsupported", "a merge key (<<) takes a mapping or a list of "
                                          "mappings", source)
                    for mk, mv in value.items():
                        merged.setdefault(mk, mv)  # the first source that names a key wins, as in YAML 1.1
                continue
            else:
                key = self._key(k, depth, in_alias)
            if key in out:
                raise Unreadable("duplicate-field", f"the key {key!r} appears twice in one mapping", k)
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
            raise Unreadable("yaml-unsupported", "a mapping key must be a string, not a list or a mapping", node)
        value = self._value(node, depth, in_alias)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int)):
            return str(value)
        raise Unreadable("yaml-unsupported", f"the key {node.value!r} is a {type(value).__name__}, "
                          "which Kubernetes does not take as a key", node)


def load_yaml_documents(text: str, *, max_size: int = 1 << 20) -> list[tuple[Any, int]]:
    """Every non-empty document of a YAML stream with the 1-based line it starts on.
    Raises ``yaml.YAMLError`` for bad syntax and ``Unreadable`` for content that cannot
    be read faithfully (see the module's docstring)."""
    loader = Loader(text)
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
