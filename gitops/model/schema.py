"""What the API server's own OpenAPI schema says about the fields a diff must read right.

Three facts decide whether a desired object and the live one differ, and none of them can
be guessed from a field's name:

- **list keys**: a list whose items are matched by some of their fields
  (``x-kubernetes-list-type: map`` with ``x-kubernetes-list-map-keys``, or the older
  ``x-kubernetes-patch-merge-key``): container ports by (containerPort, protocol),
  Service ports by (port, protocol), env by name. Two items with the same port and
  another protocol (DNS on 53/TCP and 53/UDP) are two items, not one changed item.
- **sets**: ``x-kubernetes-list-type: set``, compared without regard to order.
- **quantities**: ``resource.Quantity`` (or ``format: quantity``, or an int-or-string
  with a quantity pattern, as controller-gen writes a Quantity in a CRD), compared by
  value wherever they are: LimitRange ``default``/``max``, ``emptyDir.sizeLimit``, a
  custom resource's ``spec.memory``.

``KindSchemas.from_openapi`` reads the server's ``/openapi/v2`` document (built-in kinds
and every CRD's published schema) into a compact form, keeping only the parts that hold
one of these facts; ``to_json`` / ``from_json`` store it (the cluster source keeps it
beside its checkpoints, so the read side diffs with the same schema as the reconciler,
without a cluster). Where a server serves no schema, or a kind is not in it, the diff
falls back on its built-in table (``gitops.diff.compare``). A node of a known kind is
never None: None means "the schema does not know", an empty node "plain data here".

Compact form: ``types`` maps a definition name to a node; ``roots`` maps
``group/version/Kind`` to a definition. A node is a definition name (a reference) or a
dict with any of ``f`` (fields: name -> node), ``m`` (map values: node), ``l`` (list
items: node), ``k`` (list keys), ``s`` (a set), ``q`` (a quantity). Pure: dicts in and out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["KEY_DEFAULTS", "KindSchemas", "Node"]

Node = str | dict[str, Any]

KEY_DEFAULTS: dict[str, str] = {"protocol": "TCP"}
"""What the API server fills in for a list key that an item leaves out: a port's protocol."""

_PLAIN: dict[str, Any] = {}  # a known place that holds none of the facts: compared as plain data
_QUANTITY_REF = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_VERSION = 1


def _ref(schema: Mapping[str, Any]) -> str | None:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        return ref[len("#/definitions/"):]
    all_of = schema.get("allOf")  # OpenAPI's way to add a description to a reference
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
        return _ref(all_of[0])
    return None


def _is_quantity(schema: Mapping[str, Any]) -> bool:
    if _ref(schema) == _QUANTITY_REF or schema.get("format") == "quantity":
        return True
    pattern = str(schema.get("pattern") or "")
    return bool(schema.get("x-kubernetes-int-or-string")) and "[KMGTPE]i" in pattern


class _Reader:
    """One pass over an OpenAPI document's definitions into compact nodes."""

    def __init__(self, definitions: Mapping[str, Any]) -> None:
        self.definitions = definitions
        self.types: dict[str, Node | None] = {}

    def definition(self, name: str) -> None:
        if name in self.types:
            return
        self.types[name] = None  # in progress: a reference back to it is kept as a name
        schema = self.definitions.get(name)
        self.types[name] = self.node(schema) if isinstance(schema, dict) else None

    def node(self, schema: Mapping[str, Any]) -> Node | None:
        if _is_quantity(schema):
            return {"q": 1}
        ref = _ref(schema)
        if ref is not None:
            self.definition(ref)
            return ref
        out: dict[str, Any] = {}
        props = schema.get("properties")
        if isinstance(props, dict):
            fields = {k: n for k, v in props.items() if isinstance(v, dict) and (n := self.node(v)) is not None}
            if fields:
                out["f"] = fields
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and (n := self.node(extra)) is not None:
            out["m"] = n
        items = schema.get("items")
        if schema.get("type") == "array" or isinstance(items, dict):
            keys = schema.get("x-kubernetes-list-map-keys")
            merge_key = schema.get("x-kubernetes-patch-merge-key")
            if isinstance(keys, list) and keys and schema.get("x-kubernetes-list-type", "map") == "map":
                out["k"] = [str(k) for k in keys]
            elif isinstance(merge_key, str) and merge_key:
                out["k"] = [merge_key]
            elif schema.get("x-kubernetes-list-type") == "set":
                out["s"] = 1
            if isinstance(items, dict) and (n := self.node(items)) is not None:
                out["l"] = n
        return out or None


def _prune(types: dict[str, Node | None]) -> dict[str, Node]:
    """Only the definitions (and fields) that lead to a fact; references to the others go."""
    useful: set[str] = set()

    def holds(node: Node | None) -> bool:
        if node is None:
            return False
        if isinstance(node, str):
            return node in useful
        if "q" in node or "k" in node or "s" in node:
            return True
        return any(holds(v) for v in (node.get("f") or {}).values()) or holds(node.get("m")) or holds(node.get("l"))

    changed = True
    while changed:  # a fixpoint: definitions refer to each other, and to themselves
        changed = False
        for name, node in types.items():
            if name not in useful and holds(node):
                useful.add(name)
                changed = True

    def keep(node: Node | None) -> Node | None:
        if node is None or not holds(node):
            return None
        if isinstance(node, str):
            return node
        out: dict[str, Any] = {k: v for k, v in node.items() if k in ("q", "k", "s")}
        fields = {k: n for k, v in (node.get("f") or {}).items() if (n := keep(v)) is not None}
        if fields:
            out["f"] = fields
        for part in ("m", "l"):
            if (n := keep(node.get(part))) is not None:
                out[part] = n
        return out

    return {name: kept for name in sorted(useful) if (kept := keep(types[name])) is not None}


class KindSchemas:
    """The compact schema of every kind a server serves (see the module docstring)."""

    def __init__(self, types: dict[str, Node], roots: dict[str, str]) -> None:
        self.types = types
        self.roots = roots
        self._by_kind: dict[tuple[str, str], str] = {}
        for gvk, name in sorted(roots.items()):
            group, _, rest = gvk.partition("/")
            self._by_kind.setdefault((group, rest.partition("/")[2]), name)

    @classmethod
    def from_openapi(cls, doc: Mapping[str, Any]) -> KindSchemas:
        definitions = doc.get("definitions")
        if not isinstance(definitions, dict):
            return cls({}, {})
        reader = _Reader(definitions)
        roots: dict[str, str] = {}
        for name, schema in definitions.items():
            gvks = schema.get("x-kubernetes-group-version-kind") if isinstance(schema, dict) else None
            for gvk in gvks if isinstance(gvks, list) else ():
                if isinstance(gvk, dict) and gvk.get("kind") and not str(gvk["kind"]).endswith("List"):
                    roots[f"{gvk.get('group', '')}/{gvk.get('version', '')}/{gvk['kind']}"] = name
                    reader.definition(name)
        return cls(_prune(reader.types), roots)

    def to_json(self) -> dict[str, Any]:
        return {"version": _VERSION, "types": self.types, "roots": self.roots}

    @classmethod
    def from_json(cls, value: object) -> KindSchemas | None:
        """The stored form read back; None when it is not one (another version, damaged)."""
        if not isinstance(value, dict) or value.get("version") != _VERSION:
            return None
        types, roots = value.get("types"), value.get("roots")
        if not isinstance(types, dict) or not isinstance(roots, dict):
            return None
        return cls(types, {str(k): str(v) for k, v in roots.items()})

    # ------------------------------------------------------------------ reading it

    def root(self, api_version: str, kind: str) -> Node | None:
        """The node of a kind's objects, in the version the manifest names if the server
        has it, else in any version it serves. None: the schema knows nothing of it."""
        group, _, version = api_version.rpartition("/")
        name = self.roots.get(f"{group}/{version}/{kind}") or self._by_kind.get((group, kind))
        return None if name is None else self.types.get(name, _PLAIN)

    def _resolve(self, node: Node | None) -> dict[str, Any] | None:
        if isinstance(node, str):
            found = self.types.get(node)
            return found if isinstance(found, dict) else _PLAIN
        return node

    def field(self, node: Node | None, name: str) -> Node | None:
        """The node of field ``name`` of an object, or of a map's values."""
        n = self._resolve(node)
        if n is None:
            return None
        fields = n.get("f") or {}
        found: Node = fields[name] if name in fields else n.get("m", _PLAIN)
        return found

    def item(self, node: Node | None) -> Node | None:
        n = self._resolve(node)
        return None if n is None else n.get("l", _PLAIN)

    def keys(self, node: Node | None) -> tuple[str, ...] | None:
        n = self._resolve(node)
        keys = None if n is None else n.get("k")
        return tuple(keys) if keys else None

    def is_set(self, node: Node | None) -> bool:
        n = self._resolve(node)
        return n is not None and "s" in n

    def is_quantity(self, node: Node | None) -> bool:
        n = self._resolve(node)
        return n is not None and "q" in n
