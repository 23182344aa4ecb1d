from __future__ import annotations

import base64
import copy
from pathlib import Path

import pytest
from pydantic import ValidationError

from gitops.events import DesiredApplied, RedactionRule, digest, redact, unredacted_secret_fields
from gitops.sources.git import GitIngest, GitSourceConfig
from gitops.store import EventLog
from tests.gitrepo import GitRepo
from tests.helpers import applied

CLEAR = "s3cr3t-Value-that-must-never-be-stored"
OTHER = "another-clear-password-42"


def secret() -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "db",
            "namespace": "shop",
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration":
                    f'{{"stringData":{{"other":"{OTHER}"}}}}',
            },
        },
        "type": "Opaque",
        "data": {"password": base64.b64encode(CLEAR.encode()).decode()},
        "stringData": {"other": OTHER},
    }


def test_secret_values_become_per_key_digests() -> None:
    original = secret()
    kept = copy.deepcopy(original)
    out = redact(original)
    assert original == kept, "redact must not change its input"
    assert out["data"] == {"password": digest(CLEAR)}
    assert out["stringData"] == {"other": digest(OTHER)}
    # the same value as data or as stringData has the same digest: drift stays comparable
    assert redact({**secret(), "data": {}, "stringData": {"password": CLEAR}})["stringData"]["password"] \
        == out["data"]["password"]
    assert redact(out) == out, "redaction is idempotent"


def test_configured_paths_are_digested_on_any_kind() -> None:
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"template": {"spec": {"containers": [
               {"name": "a", "env": [{"name": "TOKEN", "value": CLEAR}, {"name": "X", "value": "1"}]},
           ]}}}}
    rules = [RedactionRule(kind="Deployment", path="spec.template.spec.containers[*].env[0].value")]
    out = redact(dep, rules)
    env = out["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["value"] == digest(CLEAR)
    assert env[1]["value"] == "1"
    assert redact(dep, [RedactionRule(kind="ConfigMap", path="spec")]) is dep


def test_no_byte_of_a_secret_value_reaches_the_database_file(db_path: Path) -> None:
    needles = [CLEAR.encode(), OTHER.encode(), base64.b64encode(CLEAR.encode()),
               base64.b64encode(OTHER.encode())]

    def scan() -> None:
        files = [p for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)]
        assert db_path in files
        for f in files:
            data = f.read_bytes()
            for needle in needles:
                assert needle not in data, f"{needle!r} found in {f.name}"

    with EventLog(db_path) as log:
        log.append([applied(1, manifest=secret())])
        assert log.count() == 1
        scan()  # the database and its write-ahead log while open
    scan()  # and the file once closed


MIS_SHAPED = {
    # stringData: with nothing under it, and the value mis-indented to the top level
    "top-level": "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\npassword: hunter2-clear\n",
    "scalar": "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: hunter2-clear\n",
    "list": "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\ndata: [hunter2-clear]\n",
    "nested": "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {a: {b: hunter2-clear}}\n",
    "typo-in-apiVersion": "apiVersion: v1beta\nkind: Secret\nmetadata: {name: db}\nstringData: {a: hunter2-clear}\n",
    "unknown-field": "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nspec: {token: hunter2-clear}\n",
}


@pytest.mark.parametrize("name", sorted(MIS_SHAPED))
def test_a_mis_shaped_secret_keeps_no_value_in_clear(name: str, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("secret.yaml", MIS_SHAPED[name])
    repo.commit("a secret, badly written")
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
        stored = [r.event for r in log.read(types=["desired.applied"])]
        assert len(stored) == 1 and isinstance(stored[0], DesiredApplied)
        manifest = stored[0].payload.manifest
        assert set(manifest) - {"apiVersion", "kind", "metadata", "type", "immutable"}  # something was digested
        assert "hunter2" not in repr(manifest)
    for f in tmp_path.iterdir():
        if f.name.startswith(db.name):
            assert b"hunter2" not in f.read_bytes()


def test_secrets_are_redacted_by_allowlist() -> None:
    out = redact({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "immutable": True,
                  "metadata": {"name": "s", "labels": {"app": "x"}},
                  "data": {"a": base64.b64encode(b"one").decode()}, "stringData": "two", "extra": {"k": 3}})
    assert out["type"] == "Opaque" and out["immutable"] is True and out["metadata"]["labels"] == {"app": "x"}
    assert out["data"] == {"a": digest("one")}
    assert out["stringData"] == digest("two")
    assert out["extra"].startswith("sha256:")
    assert unredacted_secret_fields(out) == []
    assert redact(out) == out
    assert unredacted_secret_fields({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                                     "stringData": "two", "spec": {"x": 1}}) == ["stringData", "spec"]


def test_keyed_digests_keep_equality_and_change_visible_and_hide_the_value() -> None:
    import hashlib

    from gitops.events.redaction import Redaction, digest_scheme, is_digest, key_id

    key, other_key = bytes(range(32)), bytes(range(1, 33))
    keyed = redact(secret(), Redaction(key=key))
    plain_digest = digest(CLEAR)
    value = keyed["data"]["password"]
    assert is_digest(value) and value.startswith(f"hmac-sha256:{key_id(key)}:")
    assert digest_scheme(value) == f"hmac-sha256:{key_id(key)}" and digest_scheme(plain_digest) == "sha256"
    assert hashlib.sha256(CLEAR.encode()).hexdigest() not in str(keyed)  # a guess cannot be tested without the key
    assert unredacted_secret_fields(keyed) == []
    assert redact(secret(), Redaction(key=key)) == keyed  # the same value, the same digest: change stays visible
    changed = secret()
    changed["data"] = {"password": base64.b64encode(b"new").decode()}
    assert redact(changed, Redaction(key=key))["data"]["password"] != value
    assert redact(secret(), Redaction(key=other_key))["data"]["password"] != value  # another log, another key
    assert redact(secret(), Redaction(key=key))["stringData"]["other"] == digest(OTHER, key)
    # the value under data (base64) and under stringData has one digest, keyed as plain
    as_string = secret()
    as_string["stringData"] = {"password": CLEAR}
    assert redact(as_string, Redaction(key=key))["stringData"]["password"] == value


@pytest.mark.parametrize("path", ["apiVersion", "kind", "metadata", "metadata.name", "metadata.namespace",
                                  "metadata.labels", "metadata.labels.app", "metadata.uid"])
def test_a_rule_cannot_digest_what_names_an_object_or_its_owner(path: str) -> None:
    """A log keeps its rules for good: one digesting a name or the ownership label would make
    every stored manifest differ from the live one, and prune nothing as its own."""
    with pytest.raises(ValidationError, match="cannot be digested"):
        RedactionRule(path=path)


def test_a_rule_may_digest_an_annotation_or_a_template_s_labels() -> None:
    for path in ("metadata.annotations.token", "spec.template.metadata.labels.secret", "data.password"):
        assert RedactionRule(path=path).path == path
