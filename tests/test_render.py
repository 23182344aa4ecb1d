"""Streaming a document item by item writes exactly what rendering it whole writes."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.cli.render import render_document, render_rows, stream_document

ITEMS = [{"key": "ConfigMap/shop/a", "seq": 3,
          "manifest": {"data": {"k": "=1", "n": "1", "on": "yes", "e": ""}, "metadata": {"labels": {"x": "y"}},
                       "list": [1, "2", None]}},
         {"key": "Deployment.apps/shop/web", "seq": 9, "author": "dana@example.com", "manifest": {"spec": {
             "replicas": 0, "template": {"spec": {"containers": [{"name": "web", "args": ["a\nb", "é"]}]}}}}}]


def _out(f: Any, *args: Any) -> str:
    buf = io.StringIO()
    with redirect_stdout(buf):
        f(*args)
    return buf.getvalue()


@pytest.mark.parametrize("output", ["json", "yaml"])
@pytest.mark.parametrize("lists", [
    {"desired": ITEMS, "actual": ITEMS[:1]}, {"desired": [], "actual": ITEMS}, {"desired": None, "actual": []},
    {"desired": ITEMS, "actual": None}])
def test_a_streamed_document_is_the_whole_document(output: str, lists: dict[str, Any]) -> None:
    head = {"at": "2026-12-01T10:00:00.000000Z", "axis": "valid", "commit": None}
    whole = {**head, **{k: v for k, v in lists.items() if v is not None}}
    streamed = _out(stream_document, head, {k: None if v is None else iter(v) for k, v in lists.items()}, output)
    assert streamed == _out(render_document, whole, output)
    assert (json.loads(streamed) if output == "json" else yaml.safe_load(streamed)) == whole


# values whose YAML form is easy to get wrong: strings YAML would read as other types, empty
# containers, nesting, text that needs quoting, numbers of every JSON kind
TRICKY = {"yes": "yes", "no": "off", "null": "null", "tilde": "~", "empty": "", "int": "0123", "exp": "1e3",
          "colon": "a: b", "hash": "# x", "lines": "a\nb\n", "unicode": "ünï", "space": " x ", "t": True,
          "f": False, "none": None, "zero": 0, "neg": -3, "big": 10**30, "float": 1.5, "inf": float("inf"),
          "list": [[1, 2], {"x": -3}, []], "map": {}, "nested": {"a": {"b": {"c": ["d"]}}}, "1": "key of digits"}


def test_yaml_is_what_pyyaml_writes() -> None:
    """A document as YAML (events made from the values, no node built) is, character for
    character, what PyYAML's own safe dumper writes on the same emitter (libyaml's where
    PyYAML has it) with the options the commands use."""
    from gitops.model.yaml_out import dump

    pyyaml = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    for doc in ([TRICKY], [*ITEMS, TRICKY], TRICKY, "plain", 3, None, [], {}, 1.5, "yes", ""):
        assert dump(doc) == yaml.dump(doc, Dumper=pyyaml, sort_keys=False, allow_unicode=False)
        # sorted, as 'gitops diff' writes each object (PyYAML's Python emitter took 14 of its 17 s for 9k
        # objects); an object is written as that emitter wrote it (a bare scalar ends with '...' there)
        assert dump(doc, sort_keys=True) == yaml.dump(doc, Dumper=pyyaml, sort_keys=True, allow_unicode=False)
        if isinstance(doc, dict):
            assert dump(doc, sort_keys=True) == yaml.safe_dump(doc, sort_keys=True, default_flow_style=False)
    assert list(yaml.safe_load(dump(TRICKY, sort_keys=True))) == sorted(TRICKY) != list(TRICKY)


def test_rows_as_yaml_are_one_list_as_pyyaml_writes_it() -> None:
    """``-o yaml`` of a listing writes its rows one at a time (libyaml's emitter: PyYAML's own
    took 1 ms a row), as one YAML list: character for character what PyYAML's safe dumper
    writes of the whole list, and none for no rows."""
    rows: list[dict[str, Any]] = [{"seq": 1, "detail": TRICKY, "when": "2026-01-01T00:00:00Z"}, *ITEMS,
                                  {"empty": [], "none": None}]
    streamed = _out(lambda: render_rows(iter(rows), columns=["seq"], output="yaml"))
    assert streamed == yaml.safe_dump(json.loads(json.dumps(rows)), sort_keys=False)
    assert yaml.safe_load(streamed) == json.loads(json.dumps(rows))
    assert _out(lambda: render_rows(iter([]), columns=["seq"], output="yaml")) == "[]\n"



@pytest.mark.parametrize("memo", [1, 3, 100_000])
def test_items_written_one_at_a_time_are_the_list_pyyaml_writes(memo: int) -> None:
    """``dump_items`` (one emitter for a whole list, each string resolved once while the memo
    holds it, and again once it was let go) writes what PyYAML's safe dumper writes of the
    list whole, floats and every tricky string included."""
    from gitops.model.yaml_out import dump_items

    again = json.loads(json.dumps(TRICKY))  # a copy: PyYAML would write one object met twice as an alias
    floats = [0.1, -2.5e-9, 1e300, float("-inf")]
    items: list[Any] = [TRICKY, *ITEMS, {"again": again, "floats": floats}, "x", 7, None, [], {}]
    buf = io.StringIO()
    assert dump_items(iter(items), buf, memo=memo) == len(items)
    assert buf.getvalue() == yaml.safe_dump(items, sort_keys=False)
    empty = io.StringIO()
    assert dump_items(iter([]), empty) == 0 and empty.getvalue() == yaml.safe_dump([]) == "[]\n"


def test_replayed_manifests_read_back_as_they_were(tmp_path: Path) -> None:
    """``replay --output-dir`` writes each object with libyaml's emitter: every value reads
    back as it was, the long non-ASCII text libyaml folds differently from PyYAML's own
    emitter included, and the fields the server fills in are left out."""
    from gitops.projections.export import applyable, write_manifests

    data = {k: v for k, v in TRICKY.items() if isinstance(v, str)} | {"long": "ünï € " * 40, "words": "word " * 40}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "data": data,
          "metadata": {"name": "x", "namespace": "a", "uid": "u-1", "resourceVersion": "7"}}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "a"}}
    written, skipped = write_manifests({"ConfigMap/a/x": cm, "Secret/a/s": secret}, tmp_path)
    assert skipped == ["Secret/a/s"] and len(written) == 1
    back = yaml.safe_load(written[0].read_text())
    assert back == applyable(cm) and back["data"] == data and "uid" not in back["metadata"]
