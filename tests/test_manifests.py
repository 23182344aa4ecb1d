from __future__ import annotations

import pytest

from gitops.model import ResourceKey
from gitops.sources.manifests import parse_manifests


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
