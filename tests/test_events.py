from __future__ import annotations

import json
import typing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from gitops.events import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    AnyEvent,
    DesiredAppliedPayload,
    GitCommit,
    GitCommitPayload,
    GitPerson,
    event_id,
    payload_json,
)
from gitops.events.schema import render_schema
from tests.helpers import applied

SCHEMA = Path(__file__).resolve().parent.parent / "schema" / "events.schema.json"


def test_every_event_type_is_in_the_union() -> None:
    classes = typing.get_args(typing.get_args(AnyEvent)[0])
    assert tuple(c.model_fields["type"].default for c in classes) == EVENT_TYPES  # gitops.events.names: in order
    assert len(EVENT_TYPES) == 24


def test_union_reads_a_stored_event_back_as_its_type() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    person = GitPerson(name="Ada", email="ada@example.com", time=t)
    ev = GitCommit(id=event_id("git.commit", "abc"), source="git", effective_at=t, revision="abc",
                   payload=GitCommitPayload(sha="abc", parents=[], author=person, committer=person,
                                            message="init", branch="main", repository="/r", origin="git:/r#main"))
    back = EVENT_ADAPTER.validate_json(ev.model_dump_json())
    assert isinstance(back, GitCommit)
    assert back == ev


def test_events_are_frozen() -> None:
    ev = applied(1)
    with pytest.raises(ValidationError):
        ev.actor = "someone-else"  # type: ignore[misc]


def test_unknown_type_and_extra_fields_are_refused() -> None:
    raw = json.loads(applied(1).model_dump_json())
    with pytest.raises(ValidationError):
        EVENT_ADAPTER.validate_python({**raw, "type": "desired.unknown"})
    with pytest.raises(ValidationError):
        EVENT_ADAPTER.validate_python({**raw, "surprise": 1})


def test_event_id_is_deterministic_and_separates_parts() -> None:
    assert event_id("git.commit", "abc") == event_id("git.commit", "abc")
    assert event_id("x", "ab", "c") != event_id("x", "a", "bc")
    assert event_id("git.commit", "abc") != event_id("desired.applied", "abc")


def test_a_payload_with_a_clear_secret_cannot_be_built() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"pw": "hunter2"}}
    with pytest.raises(ValidationError, match="must be redacted"):
        DesiredAppliedPayload(commit="c", path="p", document_index=0, manifest=secret)


def test_exported_schema_is_up_to_date() -> None:
    assert SCHEMA.exists(), "run `make schema`"
    assert SCHEMA.read_text() == render_schema(), "schema/events.schema.json is stale: run `make schema`"


def test_exported_config_schema_is_up_to_date() -> None:
    from gitops.service.config import config_json_schema

    path = SCHEMA.parent / "config.schema.json"
    assert path.exists(), "run `make schema`"
    assert path.read_text() == config_json_schema(), "schema/config.schema.json is stale: run `make schema`"


def test_the_exported_report_schema_is_current() -> None:
    from gitops.query.report import report_json_schema

    path = SCHEMA.parent / "report.schema.json"
    assert path.read_text() == report_json_schema(), "schema/report.schema.json is stale: run `make schema`"


def test_payload_json_stores_keys_that_are_not_strings() -> None:
    """YAML allows them (a ConfigMap's `data: {1: one}`); the payload is still stored, with
    the key as JSON can hold it."""
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {1: "one", None: "n"}}
    ev = applied(1, manifest=manifest)
    stored = json.loads(payload_json(ev))
    assert stored["manifest"]["data"] == {"1": "one", "null": "n"}
    assert stored["commit"] == "c0ffee" and stored["document_index"] == 0


def test_model_fields_are_what_pydantic_iterates() -> None:
    """payload_json reads fields through model_fields (the instance __dict__) for speed; this
    fails first if a pydantic release keeps them elsewhere."""
    from gitops.events.models import ClusterObservedPayload, GitCommitPayload, GitPerson, model_fields

    now = datetime(2026, 1, 1, tzinfo=UTC)
    person = GitPerson(name="A", email="a@example.com", time=now)
    samples = [
        applied(1).payload,
        GitCommitPayload(sha="a" * 40, parents=[], author=person, committer=person, message="m", branch="main",
                         repository="/r", origin="git:/r#main"),
        ClusterObservedPayload(manifest={"kind": "ConfigMap"}, resource_version="1", change="added",
                               candidates=["bob"]),
    ]
    for model in samples:
        assert model_fields(model) == dict(model)
        assert set(model_fields(model)) == set(type(model).model_fields)


def test_models_built_on_first_use_are_built_right_from_many_threads_at_once() -> None:
    """The event models build their validators when first used (``defer_build``), and a
    service's threads (watchers' writer, audit tailer, webhook, reconciler) may first use
    one at the same moment. In a fresh process, 8 threads each validate events of every
    type at once, from a barrier: each gets the event of its own type, validated (the
    model's own ``extra="forbid"`` refuses a field its parent class would have let by)."""
    import subprocess
    import sys

    probe = """
import threading
from datetime import UTC, datetime
from pydantic import ValidationError
from gitops.events import ClusterDeleted, DesiredRemoved, GitRewritten, EVENT_ADAPTER
t = datetime(2026, 1, 1, tzinfo=UTC)
cases = [(GitRewritten, {"branch": "m", "repository": "r", "origin": "o", "old_head": "a", "new_head": "b",
                          "merge_base": None}),
         (DesiredRemoved, {"commit": "c", "path": "p"}),
         (ClusterDeleted, {"resource_version": "1", "synthetic": True})]
barrier, bad = threading.Barrier(8), []
def work(i):
    barrier.wait()
    for cls, payload in cases[i % 3:] + cases[:i % 3]:
        body = {"id": "x", "source": "git", "effective_at": t, "payload": payload}
        via_union = EVENT_ADAPTER.validate_python({**body, "type": cls.model_fields["type"].default})
        direct = cls.model_validate(body)
        if type(via_union) is not cls or type(direct) is not cls or direct != via_union:
            bad.append((i, cls.__name__, type(direct).__name__))
        try:
            cls.model_validate({**body, "payload": {**payload, "nope": 1}})
            bad.append((i, cls.__name__, "took an unknown field"))
        except ValidationError:
            pass
threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for th in threads: th.start()
for th in threads: th.join()
print(bad)
"""
    for _ in range(3):
        ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        assert ran.stdout.strip() == "[]", ran.stdout + ran.stderr
