from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gitops.model import ResourceKey
from gitops.sources.manifests import parse_manifests
from gitops.sources.yaml_reader import MAX_DEPTH, Loader, Unreadable, load_yaml_documents


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


# ------------------------------------------------------------------ reading YAML as Kubernetes does


class Reference(yaml.SafeLoader):
    """PyYAML's pure-Python safe loader, untouched but for the same implicit resolvers
    (no timestamp, no '='): the reading ours must agree with."""


Reference.yaml_implicit_resolvers = Loader.yaml_implicit_resolvers


def pyyaml(text: str) -> list[Any]:
    """The reference: PyYAML's own safe constructor (timestamps kept as strings)."""
    return [d for d in yaml.load_all(text, Loader=Reference) if d is not None]


class NotFaithful(Exception):
    pass


def as_kubernetes(value: Any) -> Any:
    """PyYAML's reading turned as Kubernetes turns it into JSON: int and bool keys become
    strings; a value JSON cannot carry, or two keys that become one, cannot be read."""
    if isinstance(value, float) and not math.isfinite(value):
        raise NotFaithful
    if isinstance(value, list):
        return [as_kubernetes(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key = ("true" if k else "false") if isinstance(k, bool) else str(k) if isinstance(k, int) else k
            if not isinstance(key, str) or key in out:
                raise NotFaithful
            out[key] = as_kubernetes(v)
        return out
    return value


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False,
                    allow_infinity=False), st.text(max_size=20))
data = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                    max_leaves=20)


@settings(max_examples=300)
@given(st.lists(data, min_size=1, max_size=3), st.booleans())
def test_what_pyyaml_writes_reads_back_as_pyyaml_reads_it(docs: list[Any], flow: bool) -> None:
    text = yaml.safe_dump_all(docs, default_flow_style=flow)
    assert [v for v, _ in load_yaml_documents(text)] == pyyaml(text)


# Plain scalars whose YAML 1.1 meaning (PyYAML, Kubernetes) is easy to get wrong, and
# ordinary ones; written as they come, quoted, or in block style.
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
    try:
        expected = [as_kubernetes(d) for d in expected]
    except NotFaithful:  # .inf, .nan, two keys that Kubernetes would make one
        with pytest.raises(Unreadable):
            load_yaml_documents(text)
        return
    got = load_yaml_documents(text)
    assert [v for v, _ in got] == expected
    reference = [line for d in yaml.compose_all(text, Loader=Reference)
                 if d is not None and not (d.tag.endswith(":null")) for line in [d.start_mark.line + 1]]
    assert [line for _, line in got] == reference


# What charts, kubectl and people write.
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
def test_real_world_manifests_read_as_pyyaml_reads_them(name: str) -> None:
    text = REAL_WORLD[name]
    assert [v for v, _ in load_yaml_documents(text)] == pyyaml(text)


def cm(body: str) -> bytes:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n{body}".encode()


def test_keys_stay_distinct_strings_as_kubernetes_sends_them() -> None:
    res = parse_manifests("x.yaml", cm("data: {sep: =, on: x, 1: y, 'yes': z}\n"))
    assert res.problems == []
    assert res.documents[0].manifest["data"] == {"sep": "=", "true": "x", "1": "y", "yes": "z"}


@pytest.mark.parametrize(("body", "code", "line"), [
    ("data: {a: one, a: two}\n", "duplicate-field", 4),
    ("data:\n  a: one\n  b: two\n  a: three\n", "duplicate-field", 7),
    ("data: {on: x, 'true': y}\n", "duplicate-field", 4),  # two spellings of one key
    ("data: {1.5: x}\n", "yaml-unsupported", 4),
    ("data: {~: x}\n", "yaml-unsupported", 4),
    ("data: {[a]: x}\n", "yaml-unsupported", 4),
    ("data: {a: .inf}\n", "yaml-unsupported", 4),
    ("data: {a: 99999999999999999999}\n", "yaml-unsupported", 4),
    ("data: {a: !!binary aGVsbG8=}\n", "yaml-unsupported", 4),
    ("data: {a: !custom x}\n", "yaml-unsupported", 4),
])
def test_what_cannot_be_read_faithfully_is_a_problem_with_its_line(body: str, code: str, line: int) -> None:
    res = parse_manifests("x.yaml", cm(body))
    assert res.documents == []
    assert [(p.code, p.line) for p in res.problems] == [(code, line)]


def test_merge_keys_and_aliases_read_as_pyyaml_reads_them() -> None:
    text = "base: &b {x: 1, y: [1, 2]}\nuse: *b\nmerged:\n  <<: *b\n  x: 3\nmany:\n  <<: [*b, {z: 4}]\n"
    assert [v for v, _ in load_yaml_documents(text)] == pyyaml(text)
    value = load_yaml_documents(text)[0][0]
    assert value["use"] is not value["base"]  # expanded: a later change to one is not a change to both


def bomb(levels: int) -> bytes:
    lines = "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, levels + 1))
    return cm("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + lines)


@pytest.mark.parametrize("levels", [6, 9])
def test_an_alias_bomb_is_a_problem_not_a_crash(levels: int) -> None:
    res = parse_manifests("x.yaml", bomb(levels))
    assert res.documents == [] and [p.code for p in res.problems] == ["yaml-aliases"]


def test_an_expansion_past_the_size_limit_is_a_problem() -> None:
    anchor = "a: &a [" + ", ".join(["xxxxxxxxxx"] * 50) + "]\n"
    uses = "".join(f"u{i}: *a\n" for i in range(40))  # 40 x 50 x 11 characters: over 16 KiB
    assert parse_manifests("x.yaml", cm(anchor + uses)).documents  # within the default limit
    res = parse_manifests("x.yaml", cm(anchor + uses), max_bytes=16 << 10)
    assert [p.code for p in res.problems] == ["too-large"]


def test_a_few_aliases_are_fine() -> None:
    res = parse_manifests("x.yaml", cm("labels: &l {app: web}\nspec: {selector: *l, template: {labels: *l}}\n"))
    assert res.problems == [] and res.documents[0].manifest["spec"]["selector"] == {"app": "web"}


@pytest.mark.parametrize(("path", "depth"), [("x.yaml", MAX_DEPTH - 1), ("x.json", MAX_DEPTH - 1)])
def test_nesting_up_to_the_limit_is_read(path: str, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    text = (f'{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "x"}}, "a": {nested}}}'
            if path.endswith(".json") else cm(f"a: {nested}\n").decode())
    assert parse_manifests(path, text.encode()).problems == []


@pytest.mark.parametrize(("path", "depth"), [("x.yaml", MAX_DEPTH), ("x.yaml", 300), ("x.yaml", 5000),
                                             ("x.json", MAX_DEPTH), ("x.json", 300), ("x.json", 50000)])
def test_nesting_past_the_limit_is_a_problem(path: str, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    text = (f'{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "x"}}, "a": {nested}}}'
            if path.endswith(".json") else cm(f"a: {nested}\n").decode())
    res = parse_manifests(path, text.encode())
    assert res.documents == [] and len(res.problems) == 1
    assert res.problems[0].code in ("too-deep", "yaml-syntax")  # libyaml stops at 1000 levels itself


@pytest.mark.parametrize(("text", "message"), [
    (b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "name": "y"}}', "appears twice"),
    (b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "a": NaN}', "NaN"),
    (b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "a": 1e999}', "too large"),
    (b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "a": 99999999999999999999}', "64 bits"),
])
def test_json_that_kubernetes_refuses_is_a_problem(text: bytes, message: str) -> None:
    res = parse_manifests("x.json", text)
    assert res.documents == [] and [p.code for p in res.problems] == ["json-unsupported"]
    assert message in res.problems[0].message


@pytest.mark.parametrize(("manifest", "message"), [
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 123}\n", "metadata.name is a number (123), not a string"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: 7}\n", "metadata.namespace is a number"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [x]}\n", "metadata.name is a list"),
    ("apiVersion: 1\nkind: ConfigMap\nmetadata: {name: x}\n", "apiVersion is a number"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: [x]\n", "metadata is a list"),
])
def test_fields_of_the_wrong_type_say_so(manifest: str, message: str) -> None:
    res = parse_manifests("x.yaml", manifest.encode())
    assert [p.code for p in res.problems] == ["invalid-field"]
    assert message in res.problems[0].message


@pytest.mark.parametrize(("kind", "name", "namespace", "ok"), [
    ("ConfigMap", "web-app.v2", "shop", True),
    ("ConfigMap", "Web", "shop", False),  # upper case
    ("ConfigMap", "web_app", "shop", False),
    ("ConfigMap", "x" * 254, "shop", False),
    ("ConfigMap", "web", "Shop", False),
    ("ConfigMap", "web", "shop.eu", False),  # a namespace is a label: no dots
    ("ConfigMap", "web", "1", True),
    ("Service", "1web", "shop", False),  # DNS-1035: starts with a letter
    ("Service", "web.v2", "shop", False),
    ("Namespace", "shop", None, True),
    ("Namespace", "shop.eu", None, False),
    ("ClusterRole", "system:controller:web", None, True),  # RBAC names are path segments
    ("ClusterRole", "a/b", None, False),
])
def test_names_kubernetes_would_refuse_are_problems(kind: str, name: str, namespace: str | None, ok: bool) -> None:
    api = "rbac.authorization.k8s.io/v1" if kind == "ClusterRole" else "v1"
    meta: dict[str, str] = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    res = parse_manifests("x.yaml", yaml.safe_dump({"apiVersion": api, "kind": kind, "metadata": meta}).encode())
    assert (res.problems == []) == ok, res.problems
    if not ok:
        assert res.problems[0].code in ("invalid-name", "invalid-key")


def test_a_deprecated_group_gives_the_current_groups_key() -> None:
    res = parse_manifests("x.yaml", b"apiVersion: extensions/v1beta1\nkind: PodSecurityPolicy\n"
                                    b"metadata: {name: p}\n")
    assert str(res.documents[0].key) == "PodSecurityPolicy.policy/p"  # and cluster-scoped, as policy's is
