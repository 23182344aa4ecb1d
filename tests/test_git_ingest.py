"""The Git source against real repositories made in temp dirs, into a real SQLite file."""

from __future__ import annotations

import base64
import gc
import getpass
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gitops.events import DesiredApplied, GitCommit, GitReconfigured, GitRewritten, RedactionRule, SourceErrorEvent
from gitops.model import ConfigError, DatabaseLockedError, GitSourceError
from gitops.model.scope import builtin_scope
from gitops.projections.fold import fold_desired
from gitops.sources.git import GitIngest, GitSourceConfig
from gitops.store import Checkpoint, EventLog
from tests.gitrepo import GitRepo, configmap, dump


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "repo")


def ingest(log: EventLog, repo: GitRepo | str, **config: Any) -> GitIngest:
    location = repo if isinstance(repo, str) else str(repo.path)
    return GitIngest(log, GitSourceConfig(repo=location, **config))


def events(log: EventLog, since: int = 0) -> list[tuple[str, str | None, str | None]]:
    """(type, resource, short sha) of every event after ``since``."""
    return [(r.event.type, r.event.resource, (r.event.revision or "")[:7] or None) for r in log.read(since_seq=since)]


def desired(log: EventLog) -> dict[str, dict[str, Any]]:
    """The desired state the log holds: a fold of desired.* events."""
    state: dict[str, dict[str, Any]] = {}
    for r in log.read(types=("desired.applied", "desired.removed")):
        assert r.event.resource is not None
        if isinstance(r.event, DesiredApplied):
            state[r.event.resource] = r.event.payload.manifest
        else:
            state.pop(r.event.resource)
    return state


def test_linear_history_oldest_first_with_who_and_why(log: EventLog, repo: GitRepo) -> None:
    repo.write("apps/a.yaml", configmap("a"))
    c1 = repo.commit("add a", author="Ann Author <ann@example.com>")
    repo.write("apps/a.yaml", configmap("a", k="changed"))
    repo.write("apps/b.yaml", configmap("b", namespace="shop"))
    c2 = repo.commit("change a, add b", author="Bob Builder <bob@example.com>")
    repo.remove("apps/a.yaml")
    c3 = repo.commit("remove a")
    summary = ingest(log, repo).run()
    assert (summary.commits, summary.applied, summary.removed, summary.errors) == (3, 3, 1, 0)
    assert events(log) == [
        ("git.commit", None, c1[:7]),
        ("desired.applied", "ConfigMap/default/a", c1[:7]),
        ("git.commit", None, c2[:7]),
        ("desired.applied", "ConfigMap/default/a", c2[:7]),
        ("desired.applied", "ConfigMap/shop/b", c2[:7]),
        ("git.commit", None, c3[:7]),
        ("desired.removed", "ConfigMap/default/a", c3[:7]),
    ]
    first = next(log.read(types=["git.commit"]))
    assert isinstance(first.event, GitCommit)
    p = first.event.payload
    assert (p.sha, p.parents, p.message.strip(), p.valid, p.signed) == (c1, [], "add a", True, False)
    assert (p.author.name, p.author.email, p.committer.email) == ("Ann Author", "ann@example.com", "cid@example.com")
    assert first.event.actor == "ann@example.com"
    assert first.event.effective_at == repo.commit_time(c1)  # back-fill: valid time is the commit time
    assert p.observed_at is None
    change = [r.event for r in log.read(types=["desired.applied"])][1]
    assert isinstance(change, DesiredApplied)
    assert change.actor == "bob@example.com"
    assert (change.payload.path, change.payload.document_index, change.payload.commit) == ("apps/a.yaml", 0, c2)
    assert change.payload.manifest["data"] == {"k": "changed"}
    assert desired(log) == {"ConfigMap/shop/b": configmap("b", namespace="shop")}


def test_running_twice_appends_nothing_and_new_commits_are_picked_up(log: EventLog, repo: GitRepo) -> None:
    repo.write("a.yaml", configmap("a"))
    repo.commit("one")
    g = ingest(log, repo)
    g.run()
    n = log.count()
    assert g.run().commits == 0
    assert ingest(log, repo).run().commits == 0  # a new process, from the checkpoint
    assert log.count() == n
    repo.write("a.yaml", configmap("a", k="2"))
    sha = repo.commit("two")
    observed = datetime(2026, 11, 1, tzinfo=UTC)
    assert ingest(log, repo).run(observed_at=observed).applied == 1
    live = list(log.read(since_seq=n))
    assert [r.event.type for r in live] == ["git.commit", "desired.applied"]
    assert all(r.event.effective_at == observed for r in live)  # live: when the head was seen to move
    commit = live[0].event
    assert isinstance(commit, GitCommit)
    assert commit.payload.observed_at == observed
    assert commit.payload.committer.time == repo.commit_time(sha)  # and the commit time is kept


def test_merges_are_followed_on_the_first_parent_only(log: EventLog, repo: GitRepo) -> None:
    repo.write("a.yaml", configmap("a"))
    base = repo.commit("base")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("f.yaml", configmap("f"))
    feature1 = repo.commit("feature 1")
    repo.write("f.yaml", configmap("f", k="2"))
    repo.commit("feature 2")
    repo.git("checkout", "-q", "main")
    repo.write("m.yaml", configmap("m"))
    main = repo.commit("main work")
    repo.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    merge = repo.head()
    ingest(log, repo).run()
    commits = [r.event.revision for r in log.read(types=["git.commit"])]
    assert commits == [base, main, merge]
    assert feature1 not in commits
    # the merge brings f in its final form, as a change against the first parent
    assert events(log)[-2:] == [("git.commit", None, merge[:7]), ("desired.applied", "ConfigMap/default/f", merge[:7])]
    assert desired(log)["ConfigMap/default/f"]["data"] == {"k": "2"}


def test_renames_and_objects_moved_between_files_are_not_changes(log: EventLog, repo: GitRepo) -> None:
    repo.write("a.yaml", dump(configmap("a"), configmap("b")))
    repo.commit("two objects in one file")
    (repo.path / "moved").mkdir()
    repo.git("mv", "a.yaml", "moved/renamed.yml")
    renamed = repo.commit("rename the file")
    repo.write("moved/renamed.yml", dump(configmap("a")))
    repo.write("other.json", '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, '
                             '"data": {"k": "v"}}')
    moved = repo.commit("move b to another file, as JSON")
    ingest(log, repo).run()
    assert [e for e in events(log) if e[2] in (renamed[:7], moved[:7])] == [
        ("git.commit", None, renamed[:7]),
        ("git.commit", None, moved[:7]),
    ]


def test_excluded_and_out_of_scope_files_are_ignored(log: EventLog, repo: GitRepo) -> None:
    repo.write("deploy/a.yaml", configmap("a"))
    repo.write("deploy/kustomization.yaml", "resources: [a.yaml]\n")
    repo.write("docs/b.yaml", configmap("b"))
    repo.write("deploy/readme.md", "not yaml")
    repo.commit("mixed content")
    ingest(log, repo, paths=["deploy"], exclude=["kustomization.yaml"]).run()
    assert desired(log) == {"ConfigMap/default/a": configmap("a")}


def test_paths_are_relative_to_the_root_and_may_not_climb_out(log: EventLog, repo: GitRepo) -> None:
    config = GitSourceConfig(repo=".", paths=["/deploy/./prod/", "", "."])
    assert config.paths == ["deploy/prod", ".", "."]
    narrow = GitSourceConfig(repo=".", paths=["deploy/prod"])
    assert narrow.in_scope("deploy/prod/a.yaml") and narrow.in_scope("deploy/prod/x/b.yaml")
    assert not narrow.in_scope("deploy/production/a.yaml") and not narrow.in_scope("deploy/a.yaml")
    for bad in ("..", "../etc", "deploy/../../etc", "/a/../../b"):
        with pytest.raises(ValidationError, match="points outside the repository"):
            GitSourceConfig(repo=".", paths=[bad])
    with pytest.raises(ValidationError):
        GitSourceConfig(repo=".", paths=[])


def test_a_mistyped_path_is_refused_and_records_nothing(log: EventLog, repo: GitRepo) -> None:
    repo.write("m/a.yaml", configmap("a"))
    repo.write("m/notes.txt", "not a manifest")
    repo.commit("one")
    assert ingest(log, repo, paths=["m"]).run().applied == 1
    seen, kept = log.count(), ingest(log, repo, paths=["m"]).checkpoint()
    with pytest.raises(ConfigError, match=r"path 'mm' is not in .* at the head of main .*a typo"):
        ingest(log, repo, paths=["mm"]).run()
    with pytest.raises(ConfigError, match="select none of the 2 files under m"):
        ingest(log, repo, paths=["m"], include=["*.yml"]).run()
    assert log.count() == seen and ingest(log, repo, paths=["m"]).checkpoint() == kept
    assert desired(log) == {"ConfigMap/default/a": configmap("a")}
    with EventLog(log.path.with_name("fresh.db")) as fresh, pytest.raises(ConfigError, match="'deploy/staging'"):
        ingest(fresh, repo, paths=["m", "deploy/staging"]).run()  # a first pass is checked too


def test_a_path_removed_by_a_commit_is_a_real_removal(log: EventLog, repo: GitRepo) -> None:
    repo.write("m/a.yaml", configmap("a"))
    repo.write("keep/b.yaml", configmap("b"))
    repo.commit("one")
    source = ingest(log, repo, paths=["m", "keep"])
    source.run()
    repo.remove("m/a.yaml")
    gone = repo.commit("retire a")
    assert source.run().removed == 1
    assert source.missing_paths(gone) == ["m"]
    assert desired(log) == {"ConfigMap/default/b": configmap("b")}
    # a first pass over such a history reads the path's past, and its removal
    with EventLog(log.path.with_name("fresh.db")) as fresh:
        summary = ingest(fresh, repo, paths=["m", "keep"]).run()
        assert (summary.applied, summary.removed) == (2, 1)


def test_a_pass_that_another_process_overtook_reads_again_from_where_that_one_left(
        log: EventLog, repo: GitRepo) -> None:
    """Two processes follow one branch into one log with different settings (here: B
    redacts a field). A reads the checkpoint and the head (commit one, read by B), and
    re-reads one under its own settings; before it writes, commit two is made and B ingests
    it. A's re-read of one must not land after two: the desired state would go back to one,
    and A would move the checkpoint back too. A writes only on condition that the
    checkpoint did not move, and reads again from where B left it."""
    repo.write("a.yaml", configmap("a", k="1"))
    repo.commit("one")
    b = GitIngest(log, GitSourceConfig(repo=str(repo.path)), redaction=[RedactionRule(path="data.k",
                                                                                      kind="ConfigMap")])
    b.run()
    overtaken: list[int] = []

    def scope(group: str, kind: str) -> bool:  # asked while A reads commit one's tree: B overtakes A then
        if not overtaken:
            overtaken.append(0)
            repo.write("a.yaml", configmap("a", k="2"))
            repo.commit("two")
            overtaken[0] = b.run().commits
        return builtin_scope(group, kind)

    a = GitIngest(log, GitSourceConfig(repo=str(repo.path)), scope=scope)
    a.run()
    assert overtaken == [1]
    assert desired(log) == {"ConfigMap/default/a": configmap("a", k="2")}  # two, read under A's settings
    assert (a.checkpoint() or {}).get("commit") == repo.head()  # not moved back to one
    assert a.run().commits == 0 and desired(log) == {"ConfigMap/default/a": configmap("a", k="2")}


def test_changed_settings_reread_the_last_commit_and_blame_the_operator(log: EventLog, repo: GitRepo) -> None:
    repo.write("apps/a.yaml", configmap("a"))
    repo.write("other/b.yaml", configmap("b"))
    repo.commit("one")
    assert ingest(log, repo, exclude=["other/*"]).run().applied == 1
    seen = log.count()
    wide = ingest(log, repo)
    summary = wide.run()
    assert (summary.commits, summary.applied, summary.reconfigured) == (0, 1, True)
    new = list(log.read(since_seq=seen))
    assert [(r.event.type, r.event.resource) for r in new] == [("git.reconfigured", None),
                                                               ("desired.applied", "ConfigMap/default/b")]
    operator = getpass.getuser()
    assert {r.event.actor for r in new} == {operator}  # not the author of commit "one"
    assert {r.event.revision for r in new} == {repo.head()}
    change = new[0].event
    assert isinstance(change, GitReconfigured) and change.payload.valid
    assert (change.payload.previous["exclude"], change.payload.settings["exclude"]) == (["other/*"], [])
    assert desired(log) == {"ConfigMap/default/a": configmap("a"), "ConfigMap/default/b": configmap("b")}

    repo.write("apps/a.yaml", configmap("a", k="2"))
    repo.commit("two", author="Bo Other <bo@example.com>")
    seen = log.count()
    assert wide.run().applied == 1  # the new commit changes a only: b is not blamed on Bo
    assert [(r.event.type, r.event.resource, r.event.actor) for r in log.read(since_seq=seen)] == [
        ("git.commit", None, "bo@example.com"), ("desired.applied", "ConfigMap/default/a", "bo@example.com")]
    seen = log.count()
    assert ingest(log, repo).run().commits == 0
    assert ingest(log, repo, paths=[".", "/"], include=["*.yml", "*.json", "*.yaml"]).run().commits == 0
    assert log.count() == seen  # the same settings (in another order), nothing new: nothing appended

    narrow = ingest(log, repo, exclude=["other/*"]).run()
    assert (narrow.reconfigured, narrow.removed) == (True, 1)
    assert [(r.event.type, r.event.resource, r.event.actor) for r in log.read(since_seq=seen)] == [
        ("git.reconfigured", None, operator), ("desired.removed", "ConfigMap/default/b", operator)]
    assert desired(log) == {"ConfigMap/default/a": configmap("a", k="2")}
    seen = log.count()
    assert ingest(log, repo).run().applied == 1  # widened again: b is back, under new ids
    assert desired(log)["ConfigMap/default/b"] == configmap("b")


def test_two_applications_under_their_own_paths_of_one_branch_are_two_sources(log: EventLog, repo: GitRepo) -> None:
    """Two processes reading one branch of a monorepo, each under its own path, into one log
    (two reconcilers of two applications): each reading is a source of its own, with its own
    desired state, so neither pass re-reads the other's commit its own way; as one source
    they undid each other at every pass, and each reconciler pruned the other's objects."""
    repo.write("apps/a/cm.yaml", configmap("a"))
    repo.write("apps/b/cm.yaml", configmap("b"))
    repo.commit("one")
    a, b, whole = ingest(log, repo, paths=["apps/a"]), ingest(log, repo, paths=["apps/b"]), ingest(log, repo)
    assert (a.origin, b.origin, whole.origin) == (f"{whole.origin}:apps/a", f"{whole.origin}:apps/b",
                                                  f"git:{repo.path}#{whole.branch}")
    assert [s.run().applied for s in (a, b, whole)] == [1, 1, 2]
    seen = log.count()
    assert [s.run().applied + s.run().removed for s in (a, b, whole)] == [0, 0, 0]
    assert log.count() == seen
    assert list(log.read(types=["git.reconfigured"])) == []
    mine = {o: set(fold_desired(log.read(types=["desired.applied", "desired.removed"]), origin=o))
            for o in (a.origin, b.origin)}
    assert mine == {a.origin: {"ConfigMap/default/a"}, b.origin: {"ConfigMap/default/b"}}
    assert ingest(log, repo, paths=["apps/b", "./apps/b/"]).origin == b.origin  # the same paths, written otherwise


def test_settings_that_make_the_last_commit_invalid_change_nothing_desired(log: EventLog, repo: GitRepo) -> None:
    repo.write("apps/a.yaml", configmap("a"))
    repo.write("drafts/broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n")
    repo.commit("one")
    ingest(log, repo, exclude=["drafts/*"]).run()
    seen = log.count()
    summary = ingest(log, repo).run()
    assert (summary.reconfigured, summary.errors, summary.applied, summary.invalid_commits) == (True, 1, 0, 0)
    new = [r.event for r in log.read(since_seq=seen)]
    assert [e.type for e in new] == ["git.reconfigured", "source.error"]
    assert isinstance(new[0], GitReconfigured) and not new[0].payload.valid
    assert isinstance(new[1], SourceErrorEvent) and new[1].payload.path == "drafts/broken.yaml"
    assert desired(log) == {"ConfigMap/default/a": configmap("a")}
    repo.write("apps/c.yaml", configmap("c"))
    repo.remove("drafts/broken.yaml")
    repo.commit("fix")
    assert ingest(log, repo).run().applied == 1
    assert set(desired(log)) == {"ConfigMap/default/a", "ConfigMap/default/c"}


def test_a_new_redaction_rule_rewrites_the_stored_manifests_as_the_operators_change(
        log: EventLog, repo: GitRepo) -> None:
    repo.write("cm.yaml", configmap("a", password="hunter2"))
    repo.commit("one")
    GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
    seen = log.count()
    rule = RedactionRule(path="data.password", kind="ConfigMap")
    summary = GitIngest(log, GitSourceConfig(repo=str(repo.path)), redaction=[rule]).run()
    assert (summary.reconfigured, summary.applied) == (True, 1)
    applied = [r.event for r in log.read(since_seq=seen, types=["desired.applied"])]
    assert isinstance(applied[0], DesiredApplied) and applied[0].actor == getpass.getuser()
    assert applied[0].payload.manifest["data"]["password"].startswith("sha256:")


def test_a_checkpoint_from_before_settings_were_kept_is_taken_as_it_is(log: EventLog, repo: GitRepo) -> None:
    repo.write("apps/a.yaml", configmap("a"))
    repo.write("other/b.yaml", configmap("b"))
    repo.commit("one")
    source = ingest(log, repo, exclude=["other/*"])
    source.run()
    value = source.checkpoint()
    assert value is not None and value.pop("settings")["exclude"] == ["other/*"]
    log.append([], checkpoint=Checkpoint(source.origin, value))  # as an older version wrote it
    seen = log.count()
    assert not ingest(log, repo).run().reconfigured
    assert log.count() == seen
    assert ingest(log, repo).checkpoint() == value  # nothing to write: not rewritten either


BAD = [
    ("yaml-syntax", "broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n", 4),
    ("missing-field", "noname.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", 1),
    ("missing-field", "nokind.yaml", "apiVersion: v1\nmetadata: {name: x}\n", 1),
    ("encoding", "latin1.yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: caf\xe9}\n", 3),
    ("too-large", "huge.yaml", dump(configmap("huge", blob="x" * 5000)), None),
]


@pytest.mark.parametrize(("code", "path", "content", "line"), BAD, ids=[b[1] for b in BAD])
def test_bad_content_makes_the_commit_invalid_and_keeps_the_last_valid_state(
    log: EventLog, repo: GitRepo, code: str, path: str, content: str | bytes, line: int | None,
) -> None:
    repo.write("good.yaml", configmap("good"))
    repo.commit("good")
    repo.write(path, content)
    repo.write("good.yaml", configmap("good", k="from-bad-commit"))
    bad = repo.commit("bad")
    repo.write("other.yaml", configmap("other"))
    still_bad = repo.commit("unrelated change while the bad file is still there")
    repo.remove(path)
    fixed = repo.commit("fix")
    summary = ingest(log, repo, max_file_bytes=4096).run()
    assert summary.invalid_commits == 2
    errors = [r.event for r in log.read(types=["source.error"])]
    assert all(isinstance(e, SourceErrorEvent) for e in errors)
    first = errors[0]
    assert isinstance(first, SourceErrorEvent)
    assert (first.payload.code, first.payload.commit, first.payload.path, first.payload.line) == \
        (code, bad, path, line)
    assert {e.revision for e in errors} == {bad}  # recorded where it appeared, not again while it stays
    commits = {r.event.revision: r.event for r in log.read(types=["git.commit"])}
    assert [(c.payload.valid, c.payload.errors) for c in commits.values() if isinstance(c, GitCommit)] == \
        [(True, 0), (False, 1), (False, 1), (True, 0)]
    # nothing of the bad commits was desired ...
    changes = log.read(types=["desired.applied", "desired.removed"])
    assert not [r for r in changes if r.event.revision in (bad, still_bad)]
    # ... and the fix is diffed against the last valid commit, so it carries both changes
    assert [e for e in events(log) if e[2] == fixed[:7]] == [
        ("git.commit", None, fixed[:7]),
        ("desired.applied", "ConfigMap/default/good", fixed[:7]),
        ("desired.applied", "ConfigMap/default/other", fixed[:7]),
    ]
    assert desired(log)["ConfigMap/default/good"]["data"] == {"k": "from-bad-commit"}


def test_two_objects_with_one_key_is_an_error(log: EventLog, repo: GitRepo) -> None:
    repo.write("a.yaml", configmap("same"))
    repo.write("b.yaml", configmap("same", k="other"))
    sha = repo.commit("duplicate")
    ingest(log, repo).run()
    errors = [r.event for r in log.read(types=["source.error"])]
    assert len(errors) == 1 and isinstance(errors[0], SourceErrorEvent)
    assert errors[0].payload.code == "duplicate-key"
    assert errors[0].resource == "ConfigMap/default/same"
    assert "a.yaml line 1" in errors[0].payload.message and "b.yaml line 1" in errors[0].payload.message
    assert errors[0].revision == sha
    assert desired(log) == {}


def test_a_symlink_out_of_the_repository_is_an_error(log: EventLog, repo: GitRepo, tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text(dump(configmap("stolen")))
    repo.write("inside.yaml", configmap("inside"))
    (repo.path / "escape.yaml").symlink_to(outside)
    (repo.path / "alias.yaml").symlink_to("inside.yaml")  # inside the repository: not an error
    repo.commit("links")
    ingest(log, repo).run()
    errors = [r.event for r in log.read(types=["source.error"])]
    assert [(e.payload.code, e.payload.path) for e in errors if isinstance(e, SourceErrorEvent)] == \
        [("symlink-escape", "escape.yaml")]
    assert desired(log) == {}


def test_a_force_push_is_recorded_and_ingest_goes_on_from_the_merge_base(log: EventLog, repo: GitRepo) -> None:
    repo.write("a.yaml", configmap("a"))
    base = repo.commit("base")
    repo.write("b.yaml", configmap("b"))
    repo.commit("b")
    repo.write("c.yaml", configmap("c"))
    old_head = repo.commit("c")
    ingest(log, repo).run()
    before = log.count()
    kept = [r.hash for r in log.read()]
    repo.git("reset", "-q", "--hard", base)
    repo.write("d.yaml", configmap("d"))
    new_head = repo.commit("d instead")
    summary = ingest(log, repo).run()
    assert summary.rewritten
    assert [r.hash for r in log.read(until_seq=before)] == kept  # nothing in the log changed
    rewritten = next(log.read(types=["git.rewritten"])).event
    assert isinstance(rewritten, GitRewritten)
    assert (rewritten.payload.old_head, rewritten.payload.new_head, rewritten.payload.merge_base) == \
        (old_head, new_head, base)
    assert sorted(e for e in events(log, before) if e[0].startswith("desired")) == [
        ("desired.applied", "ConfigMap/default/d", new_head[:7]),
        ("desired.removed", "ConfigMap/default/b", new_head[:7]),
        ("desired.removed", "ConfigMap/default/c", new_head[:7]),
    ]
    assert sorted(desired(log)) == ["ConfigMap/default/a", "ConfigMap/default/d"]
    # and pushing the old history back is a rewrite too, which brings b and c back
    repo.git("reset", "-q", "--hard", old_head)
    assert ingest(log, repo).run().rewritten
    assert sorted(desired(log)) == ["ConfigMap/default/a", "ConfigMap/default/b", "ConfigMap/default/c"]


SECRET_VALUE = "correct-horse-battery-staple-in-git"


def test_a_secret_in_a_commit_never_reaches_the_database(db_path: Path, repo: GitRepo) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
              "data": {"password": base64.b64encode(SECRET_VALUE.encode()).decode()},
              "stringData": {"token": SECRET_VALUE + "-2"}}
    repo.write("secret.yaml", secret)
    repo.commit("add a secret")
    with EventLog(db_path) as log:
        ingest(log, repo).run()
        applied = next(log.read(types=["desired.applied"])).event
        assert isinstance(applied, DesiredApplied)
        assert applied.payload.manifest["data"]["password"].startswith("sha256:")
    for f in db_path.parent.iterdir():
        if f.name.startswith(db_path.name):
            data = f.read_bytes()
            for needle in (SECRET_VALUE.encode(), base64.b64encode(SECRET_VALUE.encode())):
                assert needle not in data


def test_a_remote_repository_is_cloned_into_the_cache_and_fetched(log: EventLog, repo: GitRepo, tmp_path: Path) -> None:
    repo.write("a.yaml", configmap("a"))
    repo.commit("one")
    url = f"file://{repo.path}"
    g = ingest(log, url, cache_dir=str(tmp_path / "cache"))
    assert g.run().commits == 1
    assert any((tmp_path / "cache").iterdir())
    repo.write("a.yaml", configmap("a", k="2"))
    repo.commit("two")
    assert g.run().applied == 1  # fetched on the next pass


def test_credentials_in_a_url_are_never_recorded_or_printed(log: EventLog, tmp_path: Path) -> None:
    url = "https://deploy-bot:s3cr3t-token@127.0.0.1:9/org/repo.git"
    with pytest.raises(GitSourceError) as err:
        ingest(log, url, cache_dir=str(tmp_path / "cache"))
    assert "s3cr3t-token" not in str(err.value)
    assert "https://127.0.0.1:9/org/repo.git" in str(err.value)
    assert "unable to access" in str(err.value)  # git's reason, not just that it failed


def test_a_path_that_is_not_a_repository_is_a_clear_usage_error(log: EventLog, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a git repository") as err:
        ingest(log, str(tmp_path))
    assert err.value.exit_code == 2  # what was typed is wrong: as a bad flag, not an outage
    with pytest.raises(ConfigError, match="does not exist"):
        ingest(log, str(tmp_path / "nowhere"))


@pytest.fixture
def big_repo(tmp_path: Path) -> Iterator[GitRepo]:
    r = GitRepo(tmp_path / "big")
    for i in range(30):
        r.write(f"cm-{i % 7}.yaml", configmap(f"cm-{i % 7}", k=str(i)))
        r.commit(f"commit {i}")
    yield r


def test_small_batches_give_the_same_log_as_one_pass(tmp_path: Path, big_repo: GitRepo) -> None:
    with EventLog(tmp_path / "one.db") as one, EventLog(tmp_path / "many.db") as many:
        ingest(one, big_repo).run()
        ingest(many, big_repo, batch_commits=1).run()
        assert [r.event for r in one.read()] == [r.event for r in many.read()]


def test_a_pass_that_fails_to_write_loses_nothing_on_the_next_pass(db_path: Path, repo: GitRepo) -> None:
    import sqlite3

    repo.write("a.yaml", configmap("a"))
    repo.commit("one")
    with EventLog(db_path) as log:
        g = ingest(log, repo)
        g.run()
        repo.write("a.yaml", configmap("a", k="2"))
        repo.commit("two")
        blocker = sqlite3.connect(db_path, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        log.conn.execute("PRAGMA busy_timeout = 100")
        with pytest.raises(DatabaseLockedError):
            g.run()
        assert gc.isenabled()  # the pass paused the cyclic GC (gitops.model.bulk) and restored it
        blocker.rollback()
        blocker.close()
        assert g.run().applied == 1  # the same change again: it was never written
        assert gc.isenabled()
        assert desired(log)["ConfigMap/default/a"]["data"] == {"k": "2"}


def test_a_commits_events_do_not_depend_on_how_the_history_was_ingested(tmp_path: Path, repo: GitRepo) -> None:
    # three commits add the same object in m/a, m/c, m/b: the duplicate-key error the third
    # commit records is the same, id and all, whether the history is read at once or one by one
    shas = []
    with EventLog(tmp_path / "once.db") as once, EventLog(tmp_path / "steps.db") as steps:
        for name in ("a", "c", "b"):
            repo.write(f"m/{name}.yaml", configmap("same", k=name))
            shas.append(repo.commit(f"add {name}"))
            ingest(steps, repo).run()  # one commit at a time, as a watch would
        ingest(once, repo).run()  # the whole history in one pass
        mine = [r.event for r in once.read()]
        assert mine == [r.event for r in steps.read()]
    errors = [e for e in mine if isinstance(e, SourceErrorEvent)]
    # recorded where it appeared, and again where it changed (a third definition), never by arrival order
    assert [(e.revision, e.payload.path) for e in errors] == [(shas[1], "m/c.yaml"), (shas[2], "m/b.yaml")]
    assert errors[0].payload.message.endswith("m/a.yaml line 1, m/c.yaml line 1")
    assert errors[1].payload.message.endswith("m/a.yaml line 1, m/b.yaml line 1, m/c.yaml line 1")


def test_a_file_that_stays_invalid_is_reported_once_and_counted_on_each_commit(log: EventLog, repo: GitRepo) -> None:
    repo.write("good.yaml", configmap("good"))
    repo.write("broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n")
    shas = [repo.commit("broken")]
    for i in range(20):
        repo.write("good.yaml", configmap("good", k=str(i)))
        shas.append(repo.commit(f"change {i}"))
    repo.write("broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n  oops: [\n")
    changed = repo.commit("still broken, differently")
    summary = ingest(log, repo).run()
    assert (summary.invalid_commits, summary.errors, summary.head_errors) == (22, 2, 1)
    errors = [r.event for r in log.read(types=["source.error"])]
    assert [e.revision for e in errors] == [shas[0], changed]  # when it appeared, and when it changed
    counts = [r.event.payload.errors for r in log.read(types=["git.commit"]) if isinstance(r.event, GitCommit)]
    assert counts == [1] * 22


def test_a_deprecated_api_group_is_the_same_object(log: EventLog, repo: GitRepo) -> None:
    old = {"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 1}}
    repo.write("web.yaml", old)
    ing = {"apiVersion": "extensions/v1beta1", "kind": "Ingress", "metadata": {"name": "web"}}
    repo.write("ing.yaml", ing)
    repo.commit("old groups")
    repo.write("web.yaml", {**old, "apiVersion": "apps/v1"})
    repo.write("ing.yaml", {**ing, "apiVersion": "networking.k8s.io/v1"})
    moved = repo.commit("move to apps/v1 and networking.k8s.io/v1")
    ingest(log, repo).run()
    assert [e for e in events(log) if e[2] == moved[:7]] == [
        ("git.commit", None, moved[:7]),
        ("desired.applied", "Deployment.apps/default/web", moved[:7]),  # modified, not removed and added
        ("desired.applied", "Ingress.networking.k8s.io/default/web", moved[:7]),
    ]
    assert desired(log)["Deployment.apps/default/web"]["apiVersion"] == "apps/v1"


def test_kustomizations_are_rendered_and_helm_charts_recognised_not_read_as_objects(log: EventLog,
                                                                                     repo: GitRepo) -> None:
    repo.write("app/deploy.yaml", configmap("app"))
    repo.write("app/kustomization.yaml", "resources:\n- deploy.yaml\n")
    repo.write("chart/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n")
    repo.write("chart/values.yaml", "replicas: 2\n")
    repo.write("chart/templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.x }}\n")
    first = repo.commit("kustomize and helm")
    repo.write("app/other.yaml", configmap("other"))
    repo.write("chart/values.yaml", "replicas: 3\n")
    second = repo.commit("more")
    summary = ingest(log, repo).run()
    assert (summary.invalid_commits, summary.errors, summary.head_errors) == (0, 0, 0)
    notices = [r.event for r in log.read(types=["source.error"])]
    assert sorted((e.payload.code, e.payload.path, e.payload.severity, e.revision) for e in notices
                  if isinstance(e, SourceErrorEvent)) == [
        ("helm-not-rendered", "chart/Chart.yaml", "warning", first),
    ]  # once, not again at the second commit
    # what the kustomization renders; other.yaml, beside it but not one of its resources, is not read
    assert sorted(desired(log)) == ["ConfigMap/default/app"]
    commits = [r.event for r in log.read(types=["git.commit"]) if isinstance(r.event, GitCommit)]
    assert all((c.payload.renderer or "").startswith(("kustomize build", "kubectl kustomize")) for c in commits)
    assert second
    # a chart that goes away lets its folder be read as plain manifests again
    repo.remove("chart/Chart.yaml")
    repo.remove("chart/templates/cm.yaml")
    repo.remove("chart/values.yaml")
    repo.write("chart/cm.yaml", configmap("plain"))
    repo.commit("no longer a chart")
    ingest(log, repo).run()
    assert "ConfigMap/default/plain" in desired(log)


UNREADABLE = [
    ("duplicate-field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: one, a: two}\n"),
    ("too-deep", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  x: " + "[" * 300 + "]" * 300 + "\n"),
    ("yaml-aliases", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\na0: &a0 [lol, lol, lol, lol, lol, lol, "
     "lol, lol, lol]\n" + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))),
    ("yaml-unsupported", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {1.5: float key}\n"),
    ("invalid-field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 123}\n"),
    ("invalid-name", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Web_App}\n"),
]


@pytest.mark.parametrize(("code", "content"), UNREADABLE, ids=[u[0] for u in UNREADABLE])
def test_content_that_cannot_be_read_faithfully_is_an_error_and_the_source_goes_on(
        log: EventLog, repo: GitRepo, code: str, content: str) -> None:
    repo.write("good.yaml", configmap("good"))
    repo.commit("good")
    repo.write("bad.yaml", content)
    repo.commit("bad")
    summary = ingest(log, repo).run()  # never a failed pass ...
    assert (summary.invalid_commits, summary.head_errors) == (1, 1)
    assert [(e.payload.code, e.payload.path) for e in (r.event for r in log.read(types=["source.error"]))
            if isinstance(e, SourceErrorEvent)] == [(code, "bad.yaml")]
    repo.write("good.yaml", configmap("good", k="2"))
    repo.remove("bad.yaml")
    repo.commit("fixed")
    assert ingest(log, repo).run().applied == 1  # ... and not wedged: the next commit is read
    assert log.verify().ok


def _expected_desired(repo: GitRepo) -> dict[str, dict[str, Any]]:
    """What the working tree's manifests say, read independently of gitops: PyYAML's
    pure-Python loader over every .yaml file outside Helm charts and Kustomize files."""
    import yaml

    groups = {("extensions", "Deployment"): "apps", ("extensions", "Ingress"): "networking.k8s.io"}
    charts = {p.parent for p in repo.path.rglob("Chart.yaml")}
    out: dict[str, dict[str, Any]] = {}
    for f in sorted(repo.path.rglob("*.yaml")):
        if ".git" in f.parts or f.name == "kustomization.yaml" or any(c in f.parents for c in charts):
            continue
        for doc in yaml.safe_load_all(f.read_text()):
            group = doc["apiVersion"].rpartition("/")[0]
            group = groups.get((group, doc["kind"]), group)
            head = f"{doc['kind']}.{group}" if group else doc["kind"]
            out[f"{head}/{doc['metadata'].get('namespace', 'default')}/{doc['metadata']['name']}"] = doc
    return out


def test_a_demo_shaped_history_gives_at_every_commit_what_its_manifests_say(tmp_path: Path) -> None:
    """The shape of a real GitOps repository's history: one file per service, Deployments
    moved from extensions/v1beta1 to apps/v1, a kustomization.yaml and a Helm chart added
    later, a backup file that the globs leave out, image bumps. After each commit the log's
    desired state is what the manifests of that commit say."""
    repo = GitRepo(tmp_path / "demo")
    services = ["adservice", "cartservice", "frontend", "redis-cart"]

    def service(name: str, api: str, image: str) -> str:
        deploy = {"apiVersion": api, "kind": "Deployment", "metadata": {"name": name},
                  "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
                      "metadata": {"labels": {"app": name}},
                      "spec": {"containers": [{"name": "server", "image": image,
                                               "env": [{"name": "PORT", "value": "8080"}],
                                               "ports": [{"containerPort": 8080}]}]}}}}
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"type": "ClusterIP", "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}
        return dump(deploy, svc)

    # each step: the files it writes (None: removes)
    steps: list[dict[str, str | None]] = [
        {f"kubernetes-manifests/{s}.yaml": service(s, "extensions/v1beta1", f"{s}:v0.1") for s in services},
        {"kubernetes-manifests/frontend.yaml": service("frontend", "extensions/v1beta1", "frontend:v0.2")},
        {f"kubernetes-manifests/{s}.yaml": service(s, "apps/v1", f"{s}:v0.2") for s in services},
        {"kubernetes-manifests/loadgenerator.yaml_bkp": "old: [backup\n"},
        {"kubernetes-manifests/kustomization.yaml": "resources:\n" + "".join(f"- {s}.yaml\n" for s in services)},
        {"helm-chart/Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
         "helm-chart/values.yaml": "images:\n  tag: v0.3\n",
         "helm-chart/templates/frontend.yaml": "{{- if .Values.frontend.create }}\napiVersion: apps/v1\n{{- end }}\n"},
        {"kubernetes-manifests/redis-cart.yaml": None,  # and the kustomization stops listing it
         "kubernetes-manifests/kustomization.yaml": "resources:\n" + "".join(
             f"- {s}.yaml\n" for s in services if s != "redis-cart")},
        {"kubernetes-manifests/cartservice.yaml": service("cartservice", "apps/v1", "cartservice:v0.3")},
    ]
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        for i, step in enumerate(steps):
            for path, content in step.items():
                if content is None:
                    repo.remove(path)
                else:
                    repo.write(path, content)
            repo.commit(f"step {i}")
            summary = ingest(log, repo).run()
            assert summary.head_errors == 0, f"step {i}"
            assert desired(log) == _expected_desired(repo), f"step {i}"
        moved = [r.event for r in log.read(types=["desired.removed"])]
        assert [e.resource for e in moved] == ["Deployment.apps/default/redis-cart", "Service/default/redis-cart"]
        notices = sorted(r.event.payload.code for r in log.read(types=["source.error"])
                         if isinstance(r.event, SourceErrorEvent))
        assert notices == ["helm-not-rendered"]  # the kustomization is rendered


def test_a_user_without_a_name_is_recorded_by_uid_not_by_a_made_up_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container often runs as a uid with no /etc/passwd entry; the actor of what it does by
    hand is then that uid, the same for a change of settings and for a read of the log."""
    import os

    from gitops.model.identity import os_user
    from gitops.query.access import operator_identity

    assert os_user() == getpass.getuser()

    def nameless() -> str:
        raise KeyError("getpwuid(): uid not found")

    monkeypatch.setattr(getpass, "getuser", nameless)
    assert os_user() == f"uid:{os.getuid()}"
    assert operator_identity()[0] == f"uid:{os.getuid()}"
