"""YAML output: PyYAML's safe dumper on libyaml's emitter, for documents of JSON's types
(``dump``) and for long lists written item by item (``dump_items``: a listing's rows, a
replay's objects). Used by ``gitops.cli.render``; a module of its own so that a command
that writes no YAML does not import PyYAML."""

from __future__ import annotations

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

__all__ = ["Dumper", "dump", "dump_items"]

_TAG = {t: f"tag:yaml.org,2002:{name}" for t, name in ((str, "str"), (int, "int"), (bool, "bool"), (list, "seq"),
                                                        (dict, "map"))}


class Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """libyaml's emitter where PyYAML has it (its wheels do): the pure-Python one took 97% of
    a 10,000-object replay. What is dumped went through JSON, so no object appears twice:
    looking for aliases is work for nothing. The output is the same YAML."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def represent_data(self, data: Any) -> Any:
        """The nodes SafeRepresenter makes of JSON's strings, integers, booleans, nulls, lists
        and objects, made without its lookup of a representer by type per value (a quarter
        of a 10,000-object replay's YAML time); anything else, and a dumper asked to choose
        flow styles or to sort keys itself, goes to SafeRepresenter."""
        kind, flow = type(data), self.default_flow_style
        if kind is str:
            return yaml.ScalarNode(_TAG[str], data, style=self.default_style)
        if flow is None or self.sort_keys:
            return super().represent_data(data)
        if kind is dict:
            node = self.represent_data
            return yaml.MappingNode(_TAG[dict], [(node(k), node(v)) for k, v in data.items()], flow_style=flow)
        if kind is list:
            return yaml.SequenceNode(_TAG[list], [self.represent_data(v) for v in data], flow_style=flow)
        if kind is bool:
            return yaml.ScalarNode(_TAG[bool], "true" if data else "false", style=self.default_style)
        if kind is int:
            return yaml.ScalarNode(_TAG[int], str(data), style=self.default_style)
        if data is None:
            return yaml.ScalarNode("tag:yaml.org,2002:null", "null", style=self.default_style)
        return super().represent_data(data)


def dump(doc: Any) -> str:
    """``doc``, made of JSON's types, as one YAML document."""
    return str(yaml.dump(doc, Dumper=Dumper, sort_keys=False, allow_unicode=False))


class _ItemWriter:
    """One YAML list written item by item on one emitter: the events a safe dumper's
    serializer makes of each item, made here from the JSON values directly. A dumper per
    item cost its making, and the serializer asks the resolver twice of every scalar;
    here a string is resolved once (memo), whatever the number of items: a 10,000-object
    replay's YAML in half the time. The text is the same (tests/test_render.py)."""

    def __init__(self, stream: TextIO, memo: int) -> None:
        self._dumper = Dumper(stream, default_flow_style=False, sort_keys=False, allow_unicode=False)
        self.emit = self._dumper.emit
        self._plain: dict[str, bool] = {}  # a string -> whether it may be written plain (it reads back as a string)
        self._memo = memo

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
            for k, v in x.items():
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
    w = _ItemWriter(stream, memo)
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
