from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gitops.model import ResourceKey
from gitops.sources.manifests import _Loader, load_yaml_documents, parse_manifests


def test_multi_document_yaml_with_lines() -> None:
    text = b"""apiVersion: v1
kind: ConfigMap
metadata:
  name: a
  labels: {released: 2026-01-01}
---
# a comment
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
---
"""
    res = parse_manifests("x.yaml", text)
    assert res.problems == []
    assert [(d.key, d.index, d.line) for d in res.documents] == [
        (ResourceKey("", "ConfigMap", "default", "a"), 0, 1),
        (ResourceKey("apps", "Deployment", "shop", "web"), 1, 8),
    ]
    assert res.documents[0].manifest["metadata"]["labels"]["released"] == "2026-01-01"


def test_json_and_lists() -> None:
    res = parse_manifests("x.json", b'{"apiVersion": "v1", "kind": "ConfigMapList", "items": ['
                                    b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},'
                                    b'{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}]}')
    assert res.problems == []
    assert [str(d.key) for d in res.documents] == ["ConfigMap/default/a", "Namespace/n"]
    res = parse_manifests("x.yaml", b"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n"
                                    b"  metadata: {name: s, namespace: x}\n")
    assert [str(d.key) for d in res.documents] == ["Secret/x/s"]


@pytest.mark.parametrize(
    ("path", "data", "code", "line"),
    [
        ("x.yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a\n", "yaml-syntax", 4),
        ("x.json", b'{\n "apiVersion": \n}', "json-syntax", 3),
        ("x.yaml", b"kind: ConfigMap\nmetadata: {name: a}\n", "missing-field", 1),
        ("x.yaml", b"---\napiVersion: v1\nmetadata: {name: a}\n", "missing-field", 2),
        ("x.yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: x}\n", "missing-field", 1),
        ("x.yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a/b}\n", "invalid-key", 1),
        ("x.yaml", b"- just\n- a list\n", "not-an-object", 1),
        ("x.yaml", b"apiVersion: v1\nkind: ConfigMap\n\xff\xfe\n", "encoding", 3),
    ],
)
def test_problems_carry_a_code_and_a_line(path: str, data: bytes, code: str, line: int) -> None:
    res = parse_manifests(path, data)
    assert res.documents == []
    assert [(p.code, p.line) for p in res.problems] == [(code, line)]


def test_oversized_files_are_refused_unread() -> None:
    res = parse_manifests("x.yaml", b"a: b\n" * 100, max_bytes=64)
    assert [p.code for p in res.problems] == ["too-large"]


def test_cluster_scoped_kinds_have_no_namespace() -> None:
    res = parse_manifests("x.yaml", b"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n"
                                    b"metadata: {name: r, namespace: ignored}\n")
    assert str(res.documents[0].key) == "ClusterRole.rbac.authorization.k8s.io/r"
    custom = parse_manifests("x.yaml", b"apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
                             scope=lambda group, kind: kind != "Widget")
    assert str(custom.documents[0].key) == "Widget.example.com/w"


# ------------------------------------------------------------------ the fast YAML path


def pyyaml(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=_Loader))


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
data = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                    max_leaves=20)


@settings(max_examples=300)
@given(st.lists(data, min_size=1, max_size=3), st.booleans())
def test_the_fast_path_reads_what_pyyaml_reads(docs: list[Any], flow: bool) -> None:
    text = yaml.safe_dump_all(docs, default_flow_style=flow)
    assert [v for v, _ in load_yaml_documents(text)] == pyyaml(text)


@pytest.mark.parametrize("text", [
    "a: yes\nb: off\nc: 0o17\nd: 017\ne: 0x1F\nf: 1_000\ng: .inf\nh: ~\ni: 2026-01-01\nj: 1:20\n",
    "base: &b {x: 1, y: [1, 2]}\nuse: *b\nmerged:\n  <<: *b\n  z: 3\n",
    "1: int key\ntrue: bool key\n",
    "tagged: !!str 123\nbin: !!binary aGVsbG8=\n",
    "s: |\n  multi\n  line\nt: >\n  folded\n  text\n",
    "---\n---\nk: v\n...\n---\n- a\n- b\n",
])
def test_the_fast_path_agrees_on_yaml_11_and_unusual_shapes(text: str) -> None:
    assert [v for v, _ in load_yaml_documents(text)] == pyyaml(text)
