"""Label selectors as kubectl's ``-l`` takes them (the Kubernetes selector syntax).

Requirements are joined by commas and all must hold::

    app=web   app==web   tier!=cache   env in (prod, staging)   env notin (dev)   team   !legacy

``key`` alone: the label is set; ``!key``: it is not; ``!=`` and ``notin`` also hold for an
object without the label, as in Kubernetes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from gitops.model.errors import UsageError

__all__ = ["Selector", "parse_selector"]

Selector = Callable[[Mapping[str, str]], bool]

_KEY = r"(?:[a-z0-9A-Z.\-]+/)?[a-zA-Z0-9](?:[-a-zA-Z0-9_.]*[a-zA-Z0-9])?"
_VALUE = r"(?:[a-zA-Z0-9](?:[-a-zA-Z0-9_.]*[a-zA-Z0-9])?)?"
_SET = re.compile(rf"\s*({_KEY})\s+(in|notin)\s*\(([^)]*)\)\s*")
_EQ = re.compile(rf"\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*")
_EXISTS = re.compile(rf"\s*(!?)\s*({_KEY})\s*")


def _split(text: str) -> list[str]:
    """The requirements of ``text``: split at the commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _requirement(text: str, whole: str) -> Selector:
    if m := _SET.fullmatch(text):
        key, op = m.group(1), m.group(2)
        values = {v.strip() for v in m.group(3).split(",")}
        if not all(re.fullmatch(_VALUE, v) for v in values):
            raise UsageError(f"invalid label selector {whole!r}: bad value in {text.strip()!r}")
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _EQ.fullmatch(text):
        key, op, value = m.group(1), m.group(2), m.group(3)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _EXISTS.fullmatch(text):
        negated, key = m.group(1) == "!", m.group(2)
        return (lambda labels: key not in labels) if negated else (lambda labels: key in labels)
    raise UsageError(f"invalid label selector {whole!r}: cannot read {text.strip()!r} (expected key=value, "
                     "key!=value, key in (a,b), key notin (a,b), key or !key)")


def parse_selector(text: str) -> Selector:
    """The selector ``text`` means; a ``UsageError`` (exit 2) naming the part it cannot read."""
    if not text.strip():
        raise UsageError("the label selector is empty")
    requirements = [_requirement(part, text) for part in _split(text)]
    return lambda labels: all(r(labels) for r in requirements)
