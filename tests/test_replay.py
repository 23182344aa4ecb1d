"""Replaying the past from the log alone: real Git histories into a real SQLite log, and
(marked cluster) the real control plane's changes, then the state asked for at moments
between them."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pykube
import pytest
import yaml

from gitops.model import UsageError
from gitops.model.times import format_time
from gitops.projections import actual_at, desired_at, resolve_at
from gitops.sources.git import GitIngest, GitSourceConfig
from gitops.store import EventLog
from tests.cluster_fixtures import Cluster, grant, kubectl, wait_until
from tests.gitrepo import GitRepo, configmap
from tests.test_cluster_source import history, running, source_config


def gitops(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def story(tmp_path: Path) -> tuple[GitRepo, Path, list[str]]:
    """Four commits a minute apart: a and b; a changed; a broken file (invalid); b removed
    and the broken file fixed."""
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", k="1"))
    repo.write("b.yaml", configmap("b"))
    shas = [repo.commit("a and b")]
    repo.write("a.yaml", configmap("a", k="2"))
    shas.append(repo.commit("a changed", author="Bo Other <bo@example.com>"))
    repo.write("broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n")
    repo.write("a.yaml", configmap("a", k="3"))
    shas.append(repo.commit("broken"))
    repo.remove("b.yaml")
    repo.remove("broken.yaml")
    shas.append(repo.commit("b removed, fixed"))
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
    return repo, db, shas


def data(state: dict[str, Any]) -> dict[str, Any]:
    return {k: e.manifest["data"]["k"] for k, e in state.items()}


def test_the_desired_state_at_a_time_or_a_commit(story: tuple[GitRepo, Path, list[str]]) -> None:
    repo, db, shas = story
    times = [repo.commit_time(s) for s in shas]
    with EventLog(db) as log:
        def at(text: str) -> dict[str, Any]:
            return data(desired_at(log, resolve_at(log, text)))

        assert at(format_time(times[0])) == {"ConfigMap/default/a": "1", "ConfigMap/default/b": "v"}
        assert at(format_time(times[1] - timedelta(seconds=1))) == {"ConfigMap/default/a": "1",
                                                                   "ConfigMap/default/b": "v"}
        assert at(format_time(times[1])) == {"ConfigMap/default/a": "2", "ConfigMap/default/b": "v"}
        # the broken commit is not desired: the last valid one stays in force, at its time and as a sha
        assert at(format_time(times[2] + timedelta(seconds=30))) == at(shas[1][:10]) == at(shas[2]) == \
            {"ConfigMap/default/a": "2", "ConfigMap/default/b": "v"}
        assert at(shas[3][:7]) == at(shas[3][:7].upper()) == {"ConfigMap/default/a": "3"}  # as git reads a sha
        entry = desired_at(log, resolve_at(log, shas[1]))["ConfigMap/default/a"]
        assert (entry.commit, entry.author, entry.path) == (shas[1], "bo@example.com", "a.yaml")


@pytest.mark.parametrize(("at", "message"), [
    ("2999-01-01", "is in the future"),
    ("2000-01-01", "is before the log begins"),
    ("deadbeef", "no commit 'deadbeef' in the log"),
    ("DEADBEEF", "no commit 'deadbeef' in the log"),
    ("a" * 64, f"no commit '{'a' * 64}' in the log"),  # a SHA-256 repository's sha is read as one, not as a time
    ("next tuesday", "invalid time"),
    ("36500d", "is before the log begins"),  # a duration, though it is hex: read as a time, not as a sha
])
def test_a_moment_the_log_cannot_answer_for_is_one_line_and_exit_2(story: tuple[GitRepo, Path, list[str]],
                                                                  at: str, message: str) -> None:
    _, db, _ = story
    res = gitops("replay", "--at", at, db=db)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and res.stderr.count("\n") == 1
    with EventLog(db) as log, pytest.raises(UsageError):
        resolve_at(log, at)


def test_replay_prints_each_side_with_where_it_came_from(story: tuple[GitRepo, Path, list[str]]) -> None:
    _, db, shas = story
    res = gitops("replay", "--at", shas[0][:8], "--side", "desired", "-o", "json", db=db)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["commit"] == shas[0] and "actual" not in doc
    assert datetime.fromisoformat(doc["at"]) and doc["axis"] == "valid"  # RFC 3339, nothing after it
    assert [(r["key"], r["commit"], r["manifest"]["data"]) for r in doc["desired"]] == [
        ("ConfigMap/default/a", shas[0], {"k": "1"}), ("ConfigMap/default/b", shas[0], {"k": "v"})]
    res = gitops("replay", "--at", shas[3], "--resource", "ConfigMap/default/a", db=db)
    assert res.returncode == 0, res.stderr
    doc = yaml.safe_load(res.stdout)
    assert [r["key"] for r in doc["desired"]] == ["ConfigMap/default/a"] and doc["actual"] == []
    assert gitops("replay", "--at", shas[3], "--resource", "not a key", db=db).returncode == 2




@pytest.mark.cluster
def test_the_actual_state_between_watch_events_and_a_replay_applied_again(
        cluster: Cluster, admin_api: Any, namespace: str, db_path: Path, tmp_path: Path) -> None:
    with running(db_path, source_config(cluster, audit=False)):
        pykube.ConfigMap(admin_api, configmap("one", namespace)).create()
        wait_until(lambda: len(history(db_path, namespace)) == 1, what="the first object")
        cm = pykube.ConfigMap(admin_api, configmap("two", namespace))
        cm.create()
        wait_until(lambda: len(history(db_path, namespace)) == 2, what="the second object")
        cm.obj["data"] = {"k": "changed"}
        cm.update()
        wait_until(lambda: len(history(db_path, namespace)) == 3, what="the change")
    with EventLog(db_path) as log:
        seen = [r for r in log.read(types=["cluster.observed"]) if (r.event.resource or "").startswith(
            f"ConfigMap/{namespace}/")]
        mine = f"ConfigMap/{namespace}/"

        def state(i: int) -> dict[str, Any]:  # just before the i-th change of this test took effect
            moment = resolve_at(log, format_time(seen[i].event.effective_at - timedelta(microseconds=1)))
            return {k: e.manifest.get("data") for k, e in actual_at(log, moment).items() if k.startswith(mine)}

        assert state(1) == {f"{mine}one": {"k": "v"}}
        assert state(2) == {f"{mine}one": {"k": "v"}, f"{mine}two": {"k": "v"}}
    before_change = format_time(seen[2].event.effective_at - timedelta(microseconds=1))
    out = tmp_path / "replayed"
    res = gitops("replay", "--at", before_change, "--side", "actual", "--resource", f"{mine}two",
                 "--output-dir", str(out), db=db_path)
    assert res.returncode == 0, res.stderr
    pykube.ConfigMap(admin_api, configmap("two", namespace)).delete()  # gone from the cluster ...
    kubectl(cluster, "admin", "apply", "-f", str(out), "-R")  # ... and back as it was then
    again = pykube.ConfigMap.objects(admin_api, namespace=namespace).get(name="two")
    assert again.obj["data"] == {"k": "v"}


@pytest.mark.cluster
def test_status_and_diff_now_and_before_alices_edit(cluster: Cluster, admin_api: Any, namespace: str,
                                                   tmp_path: Path) -> None:
    grant(cluster, namespace, "alice")
    repo = GitRepo(tmp_path / "repo")
    repo.write("cm.yaml", configmap("settings", namespace, mode="production"))
    repo.commit("settings")
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
    key = f"ConfigMap/{namespace}/settings"
    with running(db, source_config(cluster, audit=False)):
        kubectl(cluster, "admin", "apply", "-f", str(repo.path / "cm.yaml"))  # as Git says
        wait_until(lambda: len(history(db, namespace)) == 1, what="the applied object")
        res = gitops("diff", "--resource", key, db=db)
        assert (res.returncode, res.stdout) == (0, ""), res.stderr
        with EventLog(db) as log:
            in_sync = format_time(list(log.read(types=["cluster.observed"], resource=key))[-1].event.effective_at)
        kubectl(cluster, "alice", "-n", namespace, "patch", "configmap", "settings", "--type=merge",
                "-p", '{"data": {"mode": "debug"}}')
        wait_until(lambda: len(history(db, namespace)) == 2, what="alice's edit")
    res = gitops("diff", db=db)
    assert res.returncode == 1
    assert f"--- desired {key}" in res.stdout and "-  mode: production\n+  mode: debug" in res.stdout
    res = gitops("diff", "--at", in_sync, "-o", "json", db=db)  # the past, from the log alone
    assert (res.returncode, json.loads(res.stdout)["objects"]) == (0, [])
    res = gitops("status", "-o", "json", db=db)
    assert json.loads(res.stdout)["counts"] == {"in-sync": 0, "out-of-sync": 1, "missing": 0, "orphan": 0}
    assert gitops("status", "--at", "yesterday-ish", db=db).returncode == 2


@pytest.mark.cluster
def test_drift_episodes_say_who_drifted_and_how_it_ended(cluster: Cluster, admin_api: Any, namespace: str,
                                                         tmp_path: Path) -> None:
    from gitops.query import drift_episodes
    from tests.test_cluster_contract import server_side_apply

    grant(cluster, namespace, "alice", "bob")
    repo = GitRepo(tmp_path / "repo")
    desired = configmap("settings", namespace, mode="production")
    repo.write("cm.yaml", desired)
    repo.commit("settings")
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
    key = f"ConfigMap/{namespace}/settings"

    def seen(n: int) -> None:
        wait_until(lambda: len(history(db, namespace)) == n, what=f"change {n}")

    def patch(user: str, mode: str) -> None:
        kubectl(cluster, user, "-n", namespace, "patch", "configmap", "settings", "--type=merge",
                "-p", json.dumps({"data": {"mode": mode}}))

    with running(db, source_config(cluster)):
        server_side_apply(admin_api, desired, "gitops")  # in sync, as the reconciler would make it
        seen(1)
        patch("alice", "debug")  # drift, by alice ...
        seen(2)
        patch("bob", "production")  # ... put back by bob
        seen(3)
        kubectl(cluster, "alice", "-n", namespace, "delete", "configmap", "settings")  # drift: gone
        seen(4)
        server_side_apply(admin_api, desired, "gitops")  # the reconciler makes it again
        seen(5)
    with EventLog(db) as log:
        episodes = [e for e in drift_episodes(log.read()) if e.resource == key]
    assert [(e.opened_by, e.fields, e.how, e.closed_by) for e in episodes] == [
        ("alice", ["data.mode"], "reverted", "bob"),
        ("alice", ["(the whole object)"], "reconciled", "gitops"),
    ]
    assert all(e.duration is not None and e.duration.total_seconds() >= 0 for e in episodes)
