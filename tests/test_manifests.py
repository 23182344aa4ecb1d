from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gitops.model import ResourceKey
from gitops.sources.manifests import (
    _IMPLICIT,
    _load_fast,
    _load_with_pyyaml,
    _Loader,
    load_yaml_documents,
    parse_manifests,
)


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
    """The reference: PyYAML's own safe constructor (timestamps kept as strings)."""
    return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]


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
    "a: 1\r\n---\r\nb: 2\r\n",
    "0x1F\n",
    "- +017\n- {\"a\":017}\n- [1_000, x_1]\n",
    "[it's, yes, 'x']\n",
    "a: 'yes'\nb: \"on\"\nc: '017'\nd: |-\n  yes\n",
    "a: 99999999999999999999\nb: 1.5\n",
    "a: {b: 1, b: 2}\n",
])
def test_the_fast_path_agrees_on_yaml_11_and_unusual_shapes(text: str) -> None:
    assert [v for v, _ in load_yaml_documents(text)] == pyyaml(text)


# Plain scalars on which YAML 1.1 (PyYAML, Kubernetes) and 1.2 (yaml_rs) may disagree,
# and ordinary ones; written as they come, quoted, or in block style.
TRICKY = ["yes", "No", "ON", "off", "y", "n", "true", "True", "TRUE", "tRue", "false", "null", "Null", "NULL",
          "~", "", "0", "-0", "+5", "017", "08", "0o17", "0x1F", "0X1F", "0b101", "1_000", "12:30", "1:20:30",
          "1e3", "1E3", "1.5e3", "1.5e+3", "-.5", ".5", "1.", ".inf", "-.Inf", ".NaN", "2026-01-01",
          "2026-01-01T10:00:00Z", "=", "100m", "64Mi", "v1.2.3", "apps/v1", "svc-0001", "10.0.0.1",
          "a b", "0.5", "1", "42", "-17", "3000000000", "x_1", "on-call", "#not a comment"]
plain = st.sampled_from(TRICKY).filter(lambda t: t and not t.startswith("#"))
scalar_text = st.one_of(
    plain,
    st.sampled_from(TRICKY).map(lambda t: "'" + t.replace("'", "''") + "'"),
    st.sampled_from(TRICKY).map(lambda t: '"' + t + '"'),
)
keys = st.one_of(st.sampled_from(["name", "replicas", "image", "enabled", "port"]), plain)


@st.composite
def block(draw: st.DrawFn, depth: int = 0) -> list[str]:
    """The lines of a block mapping or sequence, indented by ``depth`` levels."""
    pad = "  " * depth
    lines: list[str] = []
    seq = draw(st.booleans())
    for i in range(draw(st.integers(1, 4))):
        lead = f"{pad}- " if seq else f"{pad}{draw(keys)}{i}: "
        if depth < 2 and draw(st.integers(0, 3)) == 0:
            lines.append(lead.rstrip())
            lines.extend(draw(block(depth + 1)))
        elif draw(st.integers(0, 8)) == 0:
            lines.append(lead + "|")
            lines.extend(f"{pad}  {draw(plain)}" for _ in range(2))
        else:
            lines.append(lead + draw(scalar_text))
    return lines


@settings(max_examples=400)
@given(st.lists(block(), min_size=1, max_size=3), st.sampled_from(["", "---\n"]), st.sampled_from(["", "# note\n"]))
def test_yaml_11_scalars_read_as_pyyaml_reads_them(docs: list[list[str]], first: str, comment: str) -> None:
    text = first + "---\n".join(comment + "\n".join(lines) + "\n" for lines in docs)
    try:
        expected = pyyaml(text)
    except yaml.YAMLError:
        with pytest.raises(yaml.YAMLError):
            load_yaml_documents(text)
        return
    got = load_yaml_documents(text)
    assert [v for v, _ in got] == expected
    reference = [line for d in yaml.compose_all(text, Loader=_Loader)
                 if d is not None and not (d.tag.endswith(":null")) for line in [d.start_mark.line + 1]]
    assert [line for _, line in got] == reference


def test_the_fast_path_takes_ordinary_manifests() -> None:
    """A plain Deployment is read by yaml_rs, not handed back to PyYAML."""
    text = ("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {app: web}\n"
            "spec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n      - name: web\n"
            "        image: registry.example/web:1.2.3\n        args: [--port, '8080']\n"
            "---\n# the service\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n")
    fast = _load_fast(text)
    assert fast is not None
    assert fast == [(pyyaml(text)[0], 1), (pyyaml(text)[1], 16)]


@pytest.mark.parametrize("value", [*TRICKY, "<<", "1:20", "0o_7", "-.5", "+.inf", "NULL", "Off"])
def test_the_combined_matchers_say_what_pyyaml_resolves(value: str) -> None:
    """The fast path's one-regex-per-first-character table agrees with PyYAML's resolver."""
    resolved = _Loader.resolve(_Loader, yaml.ScalarNode, value, (True, False))
    match = _IMPLICIT.get(value[:1])
    assert (match is not None and match(value) is not None) == (resolved != "tag:yaml.org,2002:str")


# What charts, kubectl and people write: these must take the fast path, and agree.
REAL_WORLD = {
"helm": '''---
# Source: chart/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: release-web
  labels:
    helm.sh/chart: web-0.1.0
    app.kubernetes.io/managed-by: Helm
  annotations:
    prometheus.io/scrape: "true"
    prometheus.io/port: "9090"
spec:
  type: ClusterIP
  ports:
    - port: 80
      targetPort: http
      protocol: TCP
      name: http
---
# Source: chart/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: release-web
spec:
  replicas: 1
  template:
    spec:
      containers:
        - name: web
          image: "nginx:1.16.0"
          imagePullPolicy: IfNotPresent
          command: ["sh", "-c", "echo hi && sleep 3600"]
          args:
            - --port=8080
            - --verbose
          env:
            - name: FEATURE_X
              value: "on"
            - name: CONFIG
              value: '{"a": 1, "b": [true, null]}'
          resources:
            limits:
              cpu: 500m
              memory: 128Mi
          livenessProbe:
            httpGet:
              path: /
              port: http
''',
"configmap-multiline": '''apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  nginx.conf: |
    server {
      listen 80;
      # a comment --- inside
    }
  script.sh: |-
    #!/bin/sh
    echo "yes" > /tmp/x
  folded: >
    a long
    folded text
''',
"crd": '''apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
''',
"cronjob": '''apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: c, image: busybox, args: [date]}]
''',
"windows": "apiVersion: v1\r\nkind: Namespace\r\nmetadata:\r\n  name: win\r\n",
}


@pytest.mark.parametrize("name", sorted(REAL_WORLD))
def test_real_world_manifests_take_the_fast_path_and_agree(name: str) -> None:
    text = REAL_WORLD[name]
    assert _load_fast(text) == _load_with_pyyaml(text)
    assert _load_fast(text) is not None


def test_a_float_sends_the_document_to_pyyaml() -> None:
    text = "apiVersion: v1\nkind: LimitRange\nmetadata: {name: lr}\nspec:\n  limits: [{default: {cpu: 0.5}}]\n"
    assert _load_fast(text) is None
    assert load_yaml_documents(text)[0][0]["spec"]["limits"][0]["default"]["cpu"] == 0.5


def test_what_yaml_rs_takes_but_pyyaml_refuses_is_still_an_error() -> None:
    """A NUL byte: yaml_rs reads the file as empty, PyYAML (and Kubernetes) refuse it."""
    res = parse_manifests("x.yaml", b"apiVersion: v1\nkind: ConfigMap\x00\n")
    assert [p.code for p in res.problems] == ["yaml-syntax"]


def test_what_yaml_rs_cannot_hand_over_is_left_to_pyyaml() -> None:
    """A lone surrogate escape: yaml_rs raises UnicodeEncodeError (not its own error), and
    the file is a syntax error with a line, not a crash of the source."""
    text = 'a: "\\ud800"\n'
    assert _load_fast(text) is None
    assert [(p.code, p.line) for p in parse_manifests("x.yaml", text.encode()).problems] == [("yaml-syntax", 1)]


YAMLISH = st.lists(st.sampled_from([*"ab: \n-|>+2#\"'{}[],.~01", "  ", "\n  ", "key: |", "key: >", "- |-", "- |+",
                                    "yes", "on", "017", "1e3", "true", "---\n", "x y", "\\"]),
                   max_size=40).map("".join)


@settings(max_examples=500)
@given(YAMLISH)
def test_the_fast_path_never_reads_what_pyyaml_would_not(text: str) -> None:
    """Any text: when the fast path answers, PyYAML reads the same; it never raises."""
    fast = _load_fast(text)
    if fast is not None:
        assert fast == _load_with_pyyaml(text)


SCALAR_TOKENS = st.text(alphabet="0123456789_+-.xobeEXOB:~aAfFnNtTlLrRuUsSyY", min_size=1, max_size=8)
QUOTED_PIECES = st.lists(st.sampled_from([*"ab \n\\\"'/0nrtxuN_LPe", "\\x41", "\\u00e9", "\\/", "\\t", "\n  ", "é"]),
                         max_size=25).map("".join)


@settings(max_examples=400)
@given(st.lists(SCALAR_TOKENS, min_size=1, max_size=4))
@example(["_0"])
@example(["__0000", "1_0", "-_1"])
def test_plain_scalars_mean_to_the_fast_path_what_they_mean_to_pyyaml(tokens: list[str]) -> None:
    """Number-, bool- and null-like tokens, plain, in block and flow context (this is how
    yaml_rs reading `_0` as the int 0 was found)."""
    text = "".join(f"k{i}: {t}\n" for i, t in enumerate(tokens)) + "l: [" + ", ".join(tokens) + "]\n"
    fast = _load_fast(text)
    if fast is not None:
        assert fast == _load_with_pyyaml(text)


@settings(max_examples=300)
@given(st.sampled_from(['"', "'", ""]), QUOTED_PIECES)
def test_quoted_and_folded_strings_read_alike(quote: str, body: str) -> None:
    text = f"k: {quote}{body}{quote}\nm: {{a: {quote}{body}{quote}}}\n"
    fast = _load_fast(text)
    if fast is not None:
        assert fast == _load_with_pyyaml(text)
