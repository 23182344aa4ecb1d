"""One object's diff as two whole objects, for the text ``kubectl diff`` users read.

A line-by-line diff of Git's manifest against the live object would show every field the
server defaulted as a difference. ``kubectl diff`` compares the live object with what it
would become (a server-side dry run); without a server, the same is built here from the
live object: Git's values laid over it the way the comparison matches them (lists by their
keys, quantities and zero values as equal), and the fields other managers added that the
reconciler would remove taken out. Where the two sides are equal their text is equal, so
only what differs, in its context, shows. Both are normalised (no server fields); a
Secret's values appear only as ``(secret)``, with which side's value it is where they
differ. Pure: dicts in, dicts out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gitops.diff.compare import _Comparison, _key_of, comparable, is_zero, list_keys
from gitops.diff.ignore import IgnoreRule, without_ignored
from gitops.diff.managed import extra_segments, without_segments
from gitops.diff.normalize import normalize
from gitops.model.schema import KindSchemas, Node

__all__ = ["diff_view"]


class _Overlay:
    def __init__(self, schemas: KindSchemas | None) -> None:
        self.schemas = schemas

    def _child(self, node: Node | None, name: str) -> Node | None:
        return None if node is None or self.schemas is None else self.schemas.field(node, name)

    def _same(self, d: Any, a: Any, field: str, parent: str, node: Node | None) -> bool:
        c = _Comparison(self.schemas)
        c.compare(d, a, "", field, parent, node)
        return not c.out

    def over(self, d: Any, a: Any, field: str, parent: str, node: Node | None) -> Any:
        """``a`` (live) as it would be with ``d`` (Git's) applied."""
        if d is None:
            return a
        if isinstance(d, dict):
            if not isinstance(a, dict):
                return d
            out = dict(a)
            for k, v in d.items():
                if k in a:
                    out[k] = self.over(v, a[k], k, field, self._child(node, k))
                elif not is_zero(v):
                    out[k] = v
            return out
        if isinstance(d, list):
            return self._list(d, a, field, node)
        return a if self._same(d, a, field, parent, node) else d

    def _list(self, d: list[Any], a: Any, field: str, node: Node | None) -> Any:
        if not isinstance(a, list):
            return d
        item_node = None if node is None or self.schemas is None else self.schemas.item(node)
        keys = list_keys(field, d, schemas=self.schemas, node=node)
        if keys is not None and all(isinstance(i, dict) for i in a):
            wanted = {_key_of(i, keys): i for i in d}
            out = [self.over(wanted.pop(_key_of(i, keys)), i, field, field, item_node)
                   if _key_of(i, keys) in wanted else i for i in a]
            return out + [i for i in d if _key_of(i, keys) in wanted]
        if self._same(d, a, field, field, node):
            return a
        if len(d) == len(a):
            return [self.over(x, y, field, field, item_node) for x, y in zip(d, a, strict=True)]
        return d


def _mask(obj: dict[str, Any] | None, other: dict[str, Any] | None, side: str) -> dict[str, Any] | None:
    if obj is None or str(obj.get("kind", "")).lower() != "secret" or not isinstance(obj.get("data"), dict):
        return obj
    found = (other or {}).get("data")
    theirs: dict[str, Any] = found if isinstance(found, dict) else {}
    data = {k: "(secret)" if other is not None and theirs.get(k) == v else f"(secret: {side}'s value)"
            for k, v in obj["data"].items()}
    return {**obj, "data": data}


def diff_view(desired: dict[str, Any] | None, live: dict[str, Any] | None, *, field_manager: str = "gitops",
              ignore_managers: Sequence[str] = (), ignore: Sequence[IgnoreRule] = (),
              schemas: KindSchemas | None = None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the live object as Git would have it, the live object), normalised; None for the
    side that has no object (Git's whole manifest against nothing, nothing against an orphan)."""
    right = None if live is None else normalize(without_ignored(live, ignore))
    if desired is None:
        return None, _mask(right, None, "the cluster")
    d = comparable(desired, ignore)
    if live is None or right is None:
        return _mask(d, None, "Git"), None
    root = None if schemas is None else schemas.root(str(desired.get("apiVersion", "")), str(desired.get("kind", "")))
    left = _Overlay(schemas).over(d, right, "", "", root)
    for segments, _ in extra_segments(d, without_ignored(live, ignore), field_manager=field_manager,
                                      ignore_managers=frozenset(ignore_managers)).values():
        left = without_segments(left, segments)
    return _mask(left, right, "Git"), _mask(right, left, "the cluster")
