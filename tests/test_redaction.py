from __future__ import annotations

import base64
import copy
from pathlib import Path

from gitops.events import RedactionRule, digest, redact
from gitops.store import EventLog
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
