"""``gitops rollback`` on real repositories (local, and a remote bare one with --push), and a
running ``gitops run`` applying the rollback to the real control plane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gitops.events import GitCommit
from gitops.model.times import format_time
from gitops.store import EventLog
from tests.cluster_fixtures import Cluster, kubectl, wait_until
from tests.gitrepo import GitRepo, configmap


def gitops(db: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.fixture
def story(tmp_path: Path) -> tuple[GitRepo, list[str]]:
    repo = GitRepo(tmp_path / "repo")
    repo.write("apps/a.yaml", configmap("a", k="1"))
    repo.write("README.md", "one\n")
    shas = [repo.commit("a=1")]
    repo.write("apps/a.yaml", configmap("a", k="2"))
    repo.write("apps/b.yaml", configmap("b"))
    shas.append(repo.commit("a=2, b"))
    repo.write("apps/a.yaml", configmap("a", k="3"))
    repo.write("apps/sub/c.yaml", configmap("c"))
    repo.write("README.md", "three\n")
    shas.append(repo.commit("a=3, c"))
    return repo, shas


def _files(repo: GitRepo, rev: str, path: str = "apps") -> dict[str, str]:
    names = repo.git("ls-tree", "-r", "--name-only", rev, "--", path).split()
    return {n: repo.git("show", f"{rev}:{n}") for n in names}


def test_a_rollback_to_a_commit_restores_its_paths_in_one_new_commit(story: Any, tmp_path: Path) -> None:
    repo, shas = story
    db = tmp_path / "g.db"
    dry = gitops(db, "rollback", "--repo", str(repo.path), "--path", "apps", "--to", shas[0][:10], "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "D\tapps/b.yaml" in dry.stdout.replace("  D ", "D\t") and "removed ConfigMap/default/c" in dry.stdout
    assert repo.head() == shas[2]  # a dry run writes nothing
    res = gitops(db, "rollback", "--repo", str(repo.path), "--path", "apps", "--to", shas[0][:10],
                 "--author", "Rita Rollback <rita@example.com>")
    assert res.returncode == 0, res.stderr
    new = repo.head()
    assert repo.git("rev-parse", f"{new}^") == shas[2]  # a child of the head: history is not rewritten
    assert _files(repo, new) == _files(repo, shas[0])
    assert repo.git("show", f"{new}:README.md") == "three"  # outside the paths: untouched
    assert (repo.path / "apps" / "a.yaml").read_text() == (repo.path / "apps" / "a.yaml").read_text()
    assert not (repo.path / "apps" / "b.yaml").exists()  # the working tree came along
    message = repo.git("log", "-1", "--format=%B", new)
    assert f"Rollback-To: {shas[0]}" in message and message.startswith(f"Roll back apps to {shas[0][:12]}\n")
    assert repo.git("log", "-1", "--format=%an <%ae>", new) == "Rita Rollback <rita@example.com>"
    # ingested, the commit says what it rolled back to, and the desired state is the first one's again
    assert gitops(db, "ingest", "git", "--repo", str(repo.path), "--path", "apps").returncode == 0
    with EventLog(db) as log:
        commit = next(r.event for r in log.read(types=["git.commit"], commit_prefix=new))
        ops = [r.event.payload for r in log.read(types=["operator"])]
    assert isinstance(commit, GitCommit) and commit.payload.rollback_to == shas[0]
    assert [(p.command, p.arguments.get("commit")) for p in ops] == [("rollback", new)]  # type: ignore[union-attr]
    state = json.loads(gitops(db, "replay", "--at", "now", "--side", "desired", "-o", "json").stdout)
    assert {d["key"]: d["manifest"]["data"] for d in state["desired"]} == {"ConfigMap/default/a": {"k": "1"}}
    report = json.loads(gitops(db, "report", "--since", "2000-01-01", "--format", "json").stdout)
    assert [(r["commit"], r["author_email"], r["rollback_to"]) for r in report["rollbacks"]] == [
        (new, "rita@example.com", shas[0])]
    again = gitops(db, "rollback", "--repo", str(repo.path), "--path", "apps", "--to", shas[0][:10])
    assert (again.returncode, again.stdout.startswith("nothing to do")) == (0, True)


def test_a_rollback_to_a_time_takes_the_last_valid_commit_then(story: Any, tmp_path: Path) -> None:
    repo, shas = story
    db = tmp_path / "g.db"
    between = repo.commit_time(shas[1]).replace(second=30)  # after the second commit, before the third
    res = gitops(db, "rollback", "--repo", str(repo.path), "--path", "apps", "--to", format_time(between),
                 "--author", "R <r@example.com>")
    assert res.returncode == 0, res.stderr
    assert f"roll back to {shas[1][:12]}" in res.stdout and "in force at" in res.stdout
    assert _files(repo, repo.head()) == _files(repo, shas[1])


def test_refusals_are_one_line_and_exit_2(story: Any, tmp_path: Path) -> None:
    repo, shas = story
    db = tmp_path / "g.db"
    other = GitRepo(tmp_path / "other")
    other.write("x.yaml", configmap("x"))
    foreign = other.commit("elsewhere")
    repo.git("fetch", "-q", str(other.path), "main")  # the commit exists in the repository, not on main
    cases = [
        (["--to", "2001-01-01"], "before"),
        (["--to", "2999-01-01"], "future"),
        (["--to", foreign[:12]], "no commit"),
        (["--to", shas[0], "--author", "nobody"], "expected 'Name <email>'"),
    ]
    for args, words in cases:
        res = gitops(db, "rollback", "--repo", str(repo.path), "--path", "apps", *args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and words in res.stderr, (args, res.stderr)
    (repo.path / "apps" / "a.yaml").write_text("dirty: yes\n")
    res = gitops(db, "rollback", "--repo", str(repo.path), "--path", "apps", "--to", shas[0])
    assert res.returncode == 2 and "not committed" in res.stderr
    assert repo.head() == shas[2]


def test_a_rollback_of_the_whole_repository_says_so(story: Any, tmp_path: Path) -> None:
    repo, shas = story
    res = gitops(tmp_path / "g.db", "rollback", "--repo", str(repo.path), "--to", shas[1], "--author", "R <r@x.org>")
    assert res.returncode == 0, res.stderr
    message = repo.git("log", "-1", "--format=%B", repo.head())
    assert message.startswith(f"Roll back to {shas[1][:12]}\n\nRestores the repository as commit {shas[1]}"), message
    assert repo.git("show", f"{repo.head()}:README.md") == "one"  # every path, this time


def test_a_remote_rollback_is_pushed_without_force(story: Any, tmp_path: Path) -> None:
    repo, shas = story
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(bare)], check=True)
    db = tmp_path / "g.db"
    url = bare.as_uri()
    common = ["--repo", url, "--branch", "main", "--path", "apps"]
    res = gitops(db, "rollback", *common, "--to", shas[0], "--author", "R <r@example.com>", "--push")
    assert res.returncode == 0, res.stderr
    head = subprocess.run(["git", "-C", str(bare), "rev-parse", "main"], capture_output=True, text=True).stdout.strip()
    assert subprocess.run(["git", "-C", str(bare), "rev-parse", f"{head}^"], capture_output=True,
                          text=True).stdout.strip() == shas[2]
    assert f"Rollback-To: {shas[0]}" in subprocess.run(["git", "-C", str(bare), "log", "-1", "--format=%B", head],
                                                         capture_output=True, text=True).stdout


def test_a_rollback_across_a_kustomize_change_restores_the_sources(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("app/kustomization.yaml", "resources: [cm.yaml]\nnamePrefix: v1-\n")
    repo.write("app/cm.yaml", configmap("cm"))
    first = repo.commit("v1")
    repo.write("app/kustomization.yaml", "resources: [cm.yaml]\nnamePrefix: v2-\n")
    repo.commit("v2")
    db = tmp_path / "g.db"
    res = gitops(db, "rollback", "--repo", str(repo.path), "--to", first, "--author", "R <r@example.com>")
    assert res.returncode == 0, res.stderr
    assert repo.git("show", "HEAD:app/kustomization.yaml") == "resources: [cm.yaml]\nnamePrefix: v1-"
    gitops(db, "ingest", "git", "--repo", str(repo.path))
    state = json.loads(gitops(db, "replay", "--at", "now", "--side", "desired", "-o", "json").stdout)
    assert [d["key"] for d in state["desired"]] == ["ConfigMap/default/v1-cm"]


@pytest.mark.cluster
def test_a_running_service_applies_a_rollback(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    from tests.test_run import _config, gitops_run

    repo = GitRepo(tmp_path / "repo")
    shas = []
    for k in ("1", "2", "3"):
        repo.write("a.yaml", configmap("a", namespace, k=k))
        shas.append(repo.commit(f"a={k}"))
    db = tmp_path / "g.db"

    def data() -> Any:
        res = kubectl(cluster, "admin", "-n", namespace, "get", "configmap", "a", "-o", "json", check=False)
        return json.loads(res.stdout)["data"] if res.returncode == 0 else None

    with gitops_run(db, _config(tmp_path, cluster, namespace, repo), tmp_path):
        wait_until(lambda: data() == {"k": "3"}, what="the head applied")
        res = gitops(db, "rollback", "--repo", str(repo.path), "--to", shas[0], "--author", "R <r@example.com>")
        assert res.returncode == 0, res.stderr
        wait_until(lambda: data() == {"k": "1"}, what="the rollback applied by the running service")


def test_a_branch_that_moved_after_the_plan_is_never_overwritten(story: Any, tmp_path: Path) -> None:
    """Someone commits between the plan and the rollback's commit: the branch is not moved
    over their commit (locally: compare-and-swap; remotely: a push that is not forced)."""
    from gitops.model.errors import GitSourceError
    from gitops.reconcile.rollback import apply_rollback, plan_rollback
    from gitops.sources.git import GitIngest, GitSourceConfig

    repo, shas = story
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(bare)], check=True)
    for location, push in ((str(repo.path), False), (bare.as_uri(), True)):
        with EventLog(tmp_path / f"{push}.db") as log:
            source = GitIngest(log, GitSourceConfig(repo=location, branch="main", paths=["apps"]))
            try:
                source.run()
                plan = plan_rollback(log, source, shas[0])
                if push:  # another clone pushes first
                    subprocess.run(["git", "clone", "-q", str(bare), str(tmp_path / "other")], check=True)
                    other = GitRepo(tmp_path / "other")
                    other.write("apps/a.yaml", configmap("a", k="theirs"))
                    theirs = other.commit("their change")
                    other.git("push", "-q", "origin", "HEAD:main")
                else:
                    repo.write("apps/a.yaml", configmap("a", k="theirs"))
                    theirs = repo.commit("their change")
                with pytest.raises(GitSourceError, match="moved meanwhile" if not push else "cannot push"):
                    apply_rollback(source, plan, author=("R", "r@example.com"), push=push)
            finally:
                source.close()
        git_dir = bare if push else repo.path
        head = subprocess.run(["git", "-C", str(git_dir), "rev-parse", "main"], capture_output=True,
                              text=True).stdout.strip()
        assert head == theirs, location
        assert "k: theirs" in subprocess.run(["git", "-C", str(git_dir), "show", "main:apps/a.yaml"],
                                             capture_output=True, text=True).stdout
