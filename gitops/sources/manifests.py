"""Reading Kubernetes manifests out of files: YAML (one or many documents), JSON, and
``kind: List`` / ``…List`` objects, with the line of every document and of every error.

Pure: bytes in, documents or errors out. Content problems are returned as
``ManifestProblem`` values, never raised, because a source must record them and go on.

YAML is read as Kubernetes reads it, except that timestamps stay strings (so a date in a
label or an annotation is not turned into another type and back).
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
import yaml_rs

from gitops.model.errors import InvalidResourceKeyError
from gitops.model.keys import ResourceKey, key_of
from gitops.model.scope import Scope, builtin_scope

__all__ = ["Document", "ManifestProblem", "ParseResult", "load_yaml_documents", "parse_manifests"]

_BaseLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# libyaml's parser, the one CSafeLoader uses; without it (PyYAML built without libyaml)
# there is no fast path
_CParser: Any = getattr(importlib.import_module("yaml._yaml"), "CParser", None) if yaml.__with_libyaml__ else None


class _Loader(_BaseLoader):  # type: ignore[misc]
    """Safe YAML without the timestamp type."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_PLAIN_SCALARS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
                            "tag:yaml.org,2002:null"})


class _Unusual(Exception):
    """A document the fast path leaves to PyYAML's own constructor."""


def _build(loader: Any, node: yaml.Node, memo: dict[int, Any]) -> Any:
    """A composed node as Python data, for the shapes manifests have: mappings with string
    keys, sequences, and plain scalars (whose values PyYAML's constructor still makes, so
    YAML 1.1 ints, floats, booleans and nulls mean what they mean to PyYAML). Anything
    else (merge keys, non-string keys, explicit tags) raises ``_Unusual``.

    Why: PyYAML's generic constructor took half of the time of reading a manifest; this
    walk does the same for these shapes in a fraction of it (see bench_git_ingest)."""
    tag = node.tag
    if tag == _STR and isinstance(node, yaml.ScalarNode):
        return node.value
    if tag == _MAP and isinstance(node, yaml.MappingNode):
        if id(node) in memo:
            return memo[id(node)]  # an alias: the same object, as PyYAML gives
        out: dict[str, Any] = {}
        memo[id(node)] = out
        for k, v in node.value:
            if k.tag != _STR or not isinstance(k, yaml.ScalarNode):
                raise _Unusual
            out[k.value] = _build(loader, v, memo)
        return out
    if tag == _SEQ and isinstance(node, yaml.SequenceNode):
        if id(node) in memo:
            return memo[id(node)]
        items: list[Any] = []
        memo[id(node)] = items
        items.extend(_build(loader, v, memo) for v in node.value)
        return items
    if tag in _PLAIN_SCALARS and isinstance(node, yaml.ScalarNode):
        return loader.construct_object(node)
    raise _Unusual


def _load_with_pyyaml(text: str) -> list[tuple[Any, int]]:
    loader = _Loader(text)
    out: list[tuple[Any, int]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            try:
                value = _build(loader, node, {})
            except _Unusual:
                value = loader.construct_document(node)
            loader.constructed_objects = {}
            if value is not None:
                out.append((value, node.start_mark.line + 1))
    finally:
        loader.dispose()
    return out


# ---------------------------------------------------------------------------- the fast path
#
# yaml_rs (a Rust YAML 1.2 parser) reads a manifest about ten times faster than PyYAML's
# C parser. YAML 1.2 and 1.1 differ only in how some plain scalars resolve (yes/no/on/off,
# 017, 0o17, 1e3, 1:30, ...) and in a few rarely used features. So a document goes
# through yaml_rs only when it is plain enough, and its result is kept only when no value
# in it could mean something else to PyYAML; otherwise PyYAML reads it, as before.
# yaml_rs is also more lenient than libyaml, so libyaml's own parser checks the syntax
# first (without building anything). tests/test_manifests.py checks the two paths
# against each other, on chosen cases and on fuzzed text.

# characters that start node properties (tags, anchors, aliases), directives and
# reserved indicators, and what may precede one where a node starts
_PROPERTY_CHARS = re.compile(r"[!&*%@`]")
_NODE_START = frozenset("\n[{,:?-")
# ints that 1.1 and 1.2 (or yaml_rs) may read differently: leading zeros, 0o/0x/0b, "_"
# (each starts with a literal, so that the regex engine can skip to it)
_LEADING_ZERO = re.compile(r"0(?:(?<=[\s\[{,:]0)|(?<=[\s\[{,:][-+]0))[0-9A-Za-z_]")
_TOKEN_START = frozenset(" \t\n[{,:?-")
_BEFORE_PLAIN = frozenset(" \t\n[{,")
_AFTER_PLAIN = frozenset(" \t\r\n,]}:")
# characters PyYAML refuses (yaml_rs takes some, a NUL for one): PyYAML must say so
_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE
_MARKER = re.compile(r"^(?:---|\.\.\.)(?=[ \t\r\n]|\Z)(.*)$", re.MULTILINE)
_CONTENT = re.compile(r"^[ \t]*[^\s#]", re.MULTILINE)
# what PyYAML would make of a plain scalar other than a string: its matchers, by first character
_IMPLICIT: dict[str, Callable[[str], object]] = {
    first: re.compile("|".join(f"(?{'x' if rx.flags & re.VERBOSE else ''}:{rx.pattern})" for tag, rx in (
        *resolvers, *_Loader.yaml_implicit_resolvers.get(None, ())) if tag != _STR)).match
    for first, resolvers in _Loader.yaml_implicit_resolvers.items() if first is not None
}


def _plain_somewhere(text: str, value: str) -> bool:
    """Whether ``value`` occurs in ``text`` as a token of its own, as a plain scalar would
    (a quoted one is preceded by its quote)."""
    i, n = text.find(value), len(value)
    while i >= 0:
        if (i == 0 or text[i - 1] in _BEFORE_PLAIN) and (i + n == len(text) or text[i + n] in _AFTER_PLAIN):
            return True
        i = text.find(value, i + 1)
    return False


_ORDINARY: set[str] = set()  # strings no implicit resolver matches: manifests repeat most of theirs


def _special(strings: list[str]) -> list[str]:
    """The strings PyYAML would read as something else than a string if written plain."""
    special = []
    table = _IMPLICIT
    for v in set(strings).difference(_ORDINARY):
        if v and (match := table.get(v[0])) is not None and match(v):  # "" is never a plain scalar
            special.append(v)
        elif len(_ORDINARY) < 100_000:
            _ORDINARY.add(v)
    return special


def _agrees_with_pyyaml(value: Any, text: str) -> bool:
    """Whether PyYAML reads ``text`` as ``value`` (what yaml_rs made of it). Strings that
    PyYAML would resolve otherwise pass only when no plain token in ``text`` spells them.
    Block scalars that end the text or hold only blanks do not pass: yaml_rs ends them
    with a line break PyYAML leaves out."""
    has_int = False
    strings: list[str] = []
    stack = [value]
    pop, push, add = stack.pop, stack.append, strings.append
    while stack:  # gather the strings (keys too) and check the other scalars
        v = pop()
        t = type(v)
        if t is dict:
            for k, x in v.items():
                if type(k) is not str:
                    return False
                add(k)
                push(x)
        elif t is list:
            stack.extend(v)
        elif t is str:
            add(v)
        elif t is int:
            has_int = True
        elif t is not bool and v is not None:
            return False  # floats: too many spellings differ between 1.1 and 1.2
    if ("|" in text or ">" in text) and (not text.endswith("\n") or any(v and not v.strip() for v in strings)):
        return False
    special = _special(strings)
    if has_int and _risky_int(text):
        return False
    # a quoted occurrence does not match: the token must follow a space or a flow indicator
    return not any(_plain_somewhere(text, v) for v in special)


def _unusual_syntax(text: str) -> bool:
    """A tag, anchor, alias, directive or reserved indicator where a node may start (a
    false alarm only costs the slow path)."""
    for m in _PROPERTY_CHARS.finditer(text):
        q = m.start()
        while q and text[q - 1] in " \t":
            q -= 1
        if q == 0 or text[q - 1] in _NODE_START:
            return True
    return False


def _risky_int(text: str) -> bool:
    """A token that may be an int spelled with leading zeros, 0o/0x/0b, or underscores
    (yaml_rs reads ``_0`` and ``1_0`` as ints; PyYAML reads only the second)."""
    if _LEADING_ZERO.search(text) or text.lstrip("+-").startswith("0"):
        return True
    i = text.find("_")
    while i >= 0:
        if (i and text[i - 1].isdigit()) or text[i + 1 : i + 2].isdigit():
            q = i
            while q and (text[q - 1].isdigit() or text[q - 1] == "_"):
                q -= 1
            if q and text[q - 1] in "+-":
                q -= 1
            if q == 0 or text[q - 1] in _TOKEN_START:
                return True
        i = text.find("_", i + 1)
    return False


def _load_fast(text: str) -> list[tuple[Any, int]] | None:
    """The documents of ``text`` read by yaml_rs, or None when PyYAML must read it."""
    if _CParser is None:
        return None
    if ("<<" in text or "\t" in text or text.startswith("\ufeff") or _NON_PRINTABLE.search(text)
            or _unusual_syntax(text)
            or ("\r" in text and "\r" in text.replace("\r\n", ""))
            or any(c in text for c in "\x85\u2028\u2029")):
        return None
    parts: list[tuple[int, str]] = []  # (offset, text) of each document
    start = 0
    for m in _MARKER.finditer(text) if "---" in text or "..." in text else ():
        rest = m.group(1).strip()
        if m.group(0).startswith(".") or (rest and not rest.startswith("#")):
            return None  # document end markers, content on the "---" line: PyYAML's job
        parts.append((start, text[start : m.start()]))
        start = m.end()
    parts.append((start, text[start:]))
    out: list[tuple[Any, int]] = []
    for offset, part in parts:
        first = _CONTENT.search(part)
        if first is None:
            continue  # comments and blank lines only
        try:
            _CParser(part).raw_parse()  # libyaml's syntax check, without building anything
            value = yaml_rs.loads(part, parse_datetime=False)
        except Exception:  # noqa: BLE001 - a YAMLError, or e.g. a lone surrogate yaml_rs cannot hand over
            return None  # PyYAML reads it, or says what is wrong, and where
        if value is None:
            continue
        if type(value) is not dict and type(value) is not list:
            return None  # a bare scalar is no manifest: PyYAML words the problem
        if not _agrees_with_pyyaml(value, part):
            return None
        out.append((value, text.count("\n", 0, offset + first.start()) + 1))
    return out


def load_yaml_documents(text: str) -> list[tuple[Any, int]]:
    """Every non-empty document of a YAML stream with the 1-based line it starts on;
    raises ``yaml.YAMLError``. Same values as PyYAML's safe loader (timestamps kept as
    strings)."""
    fast = _load_fast(text)
    return fast if fast is not None else _load_with_pyyaml(text)


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

    code: str  # yaml-syntax, json-syntax, not-an-object, missing-field, invalid-key, encoding, too-large, ...
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


def _check(obj: dict[str, Any], line: int, scope: Scope, default_namespace: str) -> Document | ManifestProblem:
    for field in ("apiVersion", "kind"):
        if not isinstance(obj.get(field), str) or not obj[field]:
            return ManifestProblem("missing-field", f"object has no {field}", line)
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        if isinstance(meta, dict) and meta.get("generateName"):
            return ManifestProblem("missing-field", "object has generateName but no metadata.name; "
                                   "GitOps needs a stable name", line)
        return ManifestProblem("missing-field", f"{obj['kind']} has no metadata.name", line)
    api_version: str = obj["apiVersion"]
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    try:
        key = key_of(obj, namespaced=scope(group, obj["kind"]), default_namespace=default_namespace)
    except InvalidResourceKeyError as e:
        return ManifestProblem("invalid-key", str(e), line)
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
            raw.append((json.loads(text), 1))
        except json.JSONDecodeError as e:
            return ParseResult([], [ManifestProblem("json-syntax", e.msg, e.lineno)])
    else:
        try:
            raw = load_yaml_documents(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
            problem = getattr(e, "problem", None) or str(e)
            return ParseResult([], [ManifestProblem("yaml-syntax", str(problem),
                                                    mark.line + 1 if mark is not None else None)])
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
