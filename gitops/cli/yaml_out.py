"""YAML output: PyYAML's safe dumper on libyaml's emitter, for documents of JSON's types
(``gitops.cli.render``; a module of its own so that a command that writes no YAML does not
import PyYAML)."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["Dumper", "dump"]

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
