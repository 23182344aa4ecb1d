"""YAML output: PyYAML's safe dumper on libyaml's emitter, for documents of JSON's types
(``dump``) and for long lists written item by item (``dump_items``: a listing's rows, a
replay's objects). Used by the commands' output (``gitops.cli.render``), ``gitops diff``,
and the manifests a replay writes (``gitops.projections.export``); a module of its own so
that a command that writes no YAML does not import PyYAML.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any, TextIO

import yaml
from yaml.events import (
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)

__all__ = ["dump", "dump_items"]

_TAG = {t: f"tag:yaml.org,2002:{name}" for t, name in ((str, "str"), (int, "int"), (bool, "bool"), (list, "seq"),
                                                        (dict, "map"))}


_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
"""libyaml's emitter where PyYAML has it (its wheels do): the pure-Python one took 97% of a
10,000-object replay."""


def dump(doc: Any, *, sort_keys: bool = False) -> str:
    """``doc``, made of JSON's types, as one YAML document: what PyYAML's safe dumper writes
    (with ``sort_keys``: each mapping's keys in order, as ``safe_dump(sort_keys=True)``)."""
    out = io.StringIO()
    w = _Writer(out, sort_keys=sort_keys)
    w.emit(StreamStartEvent())
    w.emit(DocumentStartEvent(explicit=False))
    w.value(doc)
    w.emit(DocumentEndEvent(explicit=False))
    w.emit(StreamEndEvent())
    return out.getvalue()


class _Writer:
    """JSON values written on one emitter as the events a safe dumper's serializer makes of
    them, made here from the values directly: no node is built, no representer looked up
    by type, and a string is resolved once (memo) instead of twice per scalar, however many
    values a list holds. A list written item by item on one emitter, rather than a dumper
    and a document per item: a 10,000-object replay's YAML in half the time. The text is
    PyYAML's (tests/test_render.py)."""

    def __init__(self, stream: TextIO, memo: int = 100_000, *, sort_keys: bool = False) -> None:
        self._dumper = _Dumper(stream, default_flow_style=False, sort_keys=False, allow_unicode=False)
        self.emit = self._dumper.emit
        self._plain: dict[str, bool] = {}  # a string -> whether it may be written plain (it reads back as a string)
        self._memo = memo
        self._sort = sort_keys

    def _scalar(self, node: yaml.ScalarNode) -> None:
        """A scalar as the serializer writes it: implicit where its text reads back as its tag."""
        resolve = self._dumper.resolve
        implicit = (resolve(yaml.ScalarNode, node.value, (True, False)) == node.tag,
                    resolve(yaml.ScalarNode, node.value, (False, True)) == node.tag)
        self.emit(ScalarEvent(None, node.tag, implicit, node.value, style=node.style))

    def value(self, x: Any) -> None:
        kind = type(x)
        if kind is str:
            plain = self._plain.get(x)
            if plain is None:
                if len(self._plain) >= self._memo:
                    self._plain.clear()
                plain = self._plain[x] = self._dumper.resolve(yaml.ScalarNode, x, (True, False)) == _TAG[str]
            self.emit(ScalarEvent(None, _TAG[str], (plain, True), x))
        elif kind is dict:
            self.emit(MappingStartEvent(None, _TAG[dict], True, flow_style=False))
            for k, v in sorted(x.items()) if self._sort else x.items():
                self.value(k)
                self.value(v)
            self.emit(MappingEndEvent())
        elif kind is list:
            self.emit(SequenceStartEvent(None, _TAG[list], True, flow_style=False))
            for v in x:
                self.value(v)
            self.emit(SequenceEndEvent())
        elif kind is bool or kind is int or x is None:  # their text always reads back as their own tag
            text = ("true" if x else "false") if kind is bool else "null" if x is None else str(x)
            tag = "tag:yaml.org,2002:null" if x is None else _TAG[kind]
            self.emit(ScalarEvent(None, tag, (True, False), text))
        else:  # a float (and anything else SafeRepresenter writes as a scalar)
            node = self._dumper.represent_data(x)
            if not isinstance(node, yaml.ScalarNode):
                raise TypeError(f"not a value of JSON: {type(x).__name__}")
            self._scalar(node)


def dump_items(items: Iterable[Any], stream: TextIO, *, memo: int = 100_000) -> int:
    """``items`` (JSON's types) as one YAML list on ``stream``, written as they come: what
    ``dump(list(items))`` writes, without holding the list; returns how many there were.
    ``memo``: how many distinct strings' resolution is remembered at most."""
    w = _Writer(stream, memo)
    w.emit(StreamStartEvent())
    w.emit(DocumentStartEvent(explicit=False))
    w.emit(SequenceStartEvent(None, _TAG[list], True, flow_style=False))
    n = 0
    for item in items:
        w.value(item)
        n += 1
    w.emit(SequenceEndEvent())
    w.emit(DocumentEndEvent(explicit=False))
    w.emit(StreamEndEvent())
    return n
