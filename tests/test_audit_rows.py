"""The parts of an audit row computed from the log alone, on a real SQLite file: the fields a
change touched, the version it is compared with, and whether it was made out of band."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from gitops.query.audit import FieldChange, field_changes, flatten

T0 = datetime(2026, 3, 1, tzinfo=UTC)
GIT, OTHER_GIT, CLUSTER = "git:/r#main", "git:/other#main", "cluster:https://k"


def _oracle(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[tuple[str, Any, Any]]:
    """The definition: every leaf of both versions flattened, the paths whose values differ."""
    from gitops.diff import normalize

    a = flatten(normalize(old)) if old else {}
    b = flatten(normalize(new)) if new else {}
    missing = object()
    return [(p, a.get(p), b.get(p)) for p in sorted(set(a) | set(b)) if a.get(p, missing) != b.get(p, missing)]


def _value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.45:
        return rng.choice([1, 2, "1", "x", "y", True, None, 0.5, "", []])
    if roll < 0.55:
        return {}
    if roll < 0.8:
        return {rng.choice("abcde"): _value(rng, depth + 1) for _ in range(rng.randrange(1, 4))}
    items: list[Any] = []
    for _ in range(rng.randrange(0, 4)):
        item = _value(rng, depth + 1)
        if isinstance(item, dict) and rng.random() < 0.5:
            item["name"] = rng.choice(["web", "db", "web"])  # merge keys, duplicates too
        items.append(item)
    return items


def _mutate(rng: random.Random, value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict) and value and (depth == 0 or rng.random() < 0.8):
        out = dict(value)
        for _ in range(rng.randrange(1, 3)):
            k = rng.choice([*out, "new"])
            if rng.random() < 0.15:
                out.pop(k, None)
            else:
                out[k] = _mutate(rng, out.get(k), depth + 1)
        return out
    if isinstance(value, list) and value and rng.random() < 0.7:
        out_list = list(value)
        i = rng.randrange(len(out_list))
        out_list[i] = _mutate(rng, out_list[i], depth + 1)
        return out_list
    return _value(rng, depth)


def test_the_changed_fields_are_those_of_the_flattened_versions() -> None:
    """``field_changes`` skips equal parts without flattening them; it must name exactly what
    comparing every flattened leaf names, in the same order, with the same values."""
    rng = random.Random(2026)
    for _ in range(3000):
        old = {"apiVersion": "v1", "kind": rng.choice(["ConfigMap", "Deployment"]),
               "metadata": {"name": "a", "resourceVersion": str(rng.randrange(9)), "labels": {"app": "x"}},
               "spec": _value(rng, 0), "data": _value(rng, 1)}
        new = _mutate(rng, old)
        if rng.random() < 0.3 and isinstance(new.get("metadata"), dict):
            new["metadata"] = {**new["metadata"], "resourceVersion": "99", "uid": "u"}  # server fields: not changes
        got = [(c.path, c.old, c.new) for c in field_changes(old, new)]
        assert got == _oracle(old, new), (old, new)
        assert [(c.path, c.old, c.new) for c in field_changes(new, old)] == _oracle(new, old)
    assert field_changes(None, {"kind": "ConfigMap", "data": {"k": "1"}}) == [FieldChange("data.k", None, "1"),
                                                                            FieldChange("kind", None, "ConfigMap")]
