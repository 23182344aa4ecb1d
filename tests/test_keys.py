from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitops.model import InvalidResourceKeyError, ResourceKey, format_key, key_of, parse_key

label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
groups = st.one_of(st.just(""), st.lists(label, min_size=1, max_size=4).map(".".join))
kinds = st.from_regex(r"[A-Z][A-Za-z0-9]{0,15}", fullmatch=True)
names = st.text(
    alphabet=st.characters(blacklist_characters="/", blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")),
    min_size=1, max_size=30,
).filter(lambda s: not any(c.isspace() for c in s))
keys = st.builds(ResourceKey, group=groups, kind=kinds, namespace=st.one_of(st.just(""), label), name=names)


@given(keys)
def test_format_then_parse_is_identity(key: ResourceKey) -> None:
    assert parse_key(format_key(key)) == key


@given(keys)
def test_parse_then_format_is_identity(key: ResourceKey) -> None:
    text = format_key(key)
    assert format_key(parse_key(text)) == text


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Deployment.apps/shop/web", ResourceKey("apps", "Deployment", "shop", "web")),
        ("ConfigMap/default/settings", ResourceKey("", "ConfigMap", "default", "settings")),
        ("Namespace/shop", ResourceKey("", "Namespace", "", "shop")),
        ("ClusterRole.rbac.authorization.k8s.io/system:view",
         ResourceKey("rbac.authorization.k8s.io", "ClusterRole", "", "system:view")),
    ],
)
def test_documented_examples(text: str, key: ResourceKey) -> None:
    assert parse_key(text) == key
    assert str(key) == text


@pytest.mark.parametrize(
    "text", ["", "Deployment", "Deployment.apps//web", "a/b/c/d", "9Kind/x", "Kind.UPPER/x", "Kind/ns/",
             "Kind/ns/a b"],
)
def test_bad_strings_are_refused_with_reason(text: str) -> None:
    with pytest.raises(InvalidResourceKeyError, match="invalid resource key"):
        parse_key(text)


def test_key_of_manifest_is_version_agnostic() -> None:
    v1 = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"}}
    v2 = {**v1, "apiVersion": "autoscaling/v2"}
    assert key_of(v1, default_namespace="prod") == key_of(v2, default_namespace="prod")
    assert key_of(v1, default_namespace="prod") == ResourceKey("autoscaling", "HorizontalPodAutoscaler", "prod", "h")
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod", "namespace": "ignored"}}
    assert key_of(ns, namespaced=False) == ResourceKey("", "Namespace", "", "prod")
