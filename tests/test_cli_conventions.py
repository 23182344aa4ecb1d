"""The conventions kubectl, argocd and flux users bring: names as kubectl takes them, one
``-o`` on every command that lists or shows, tables that fit, errors that say the cause,
RFC 3339 in JSON and the global options anywhere. Real Git repositories, a real log, the
real entry point in a subprocess; one run in a real terminal (a pty of 80 columns)."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.events import GitCommit
from gitops.store import EventLog
from tests.cli_helpers import gitops, one_failure_line
from tests.gitrepo import GitRepo, configmap
from tests.helpers import deployment


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[GitRepo, Path]:
    """A repository with a Deployment and ConfigMaps in two namespaces, and a Helm chart."""
    tmp = tmp_path_factory.mktemp("shop")
    repo = GitRepo(tmp / "repo")
    web = deployment("web", "shop")
    web["metadata"]["labels"] = {"app": "web", "tier": "front"}
    settings = configmap("settings", "shop", a="1")
    settings["metadata"]["labels"] = {"app": "web"}
    repo.write("apps/app.yaml", yaml.safe_dump_all([web, settings, configmap("settings", "other", a="1"),
                                                    {"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": "shop"}}]))
    repo.write("charts/web/Chart.yaml", "name: web\nversion: 0.1.0\n")
    repo.commit("the shop")
    db = tmp / "g.db"
    res = gitops("ingest", "git", "--repo", str(repo.path), db=db)
    assert res.returncode == 0, res.stderr
    assert "warning: charts/web/Chart.yaml: a Helm chart" in res.stderr  # what is left unread is said at once
    return repo, db


# ---------------------------------------------------------------------- names


@pytest.mark.parametrize("kind", ["deploy", "deployment", "deployments", "Deployment", "deployments.apps",
                                  "Deployment.apps"])
def test_a_kind_is_taken_in_every_form_kubectl_takes(shop: tuple[GitRepo, Path], kind: str) -> None:
    _, db = shop
    res = gitops("audit", "--kind", kind, "-o", "json", db=db)
    assert res.returncode == 0, res.stderr
    assert [r["resource"] for r in json.loads(res.stdout)] == ["Deployment.apps/shop/web"]


@pytest.mark.parametrize(("text", "namespace", "key"), [
    ("cm/shop/settings", None, "ConfigMap/shop/settings"),
    ("configmap/settings", "shop", "ConfigMap/shop/settings"),
    ("configmaps/settings", "other", "ConfigMap/other/settings"),
    ("deploy/web", None, "Deployment.apps/shop/web"),  # the one namespace the log holds it in
    ("Deployment/shop/web", None, "Deployment.apps/shop/web"),  # the group inferred
    ("Deployment.apps/shop/web", None, "Deployment.apps/shop/web"),
    ("ns/shop", None, "Namespace/shop"),
])
def test_an_object_is_taken_as_kubectl_names_it(shop: tuple[GitRepo, Path], text: str, namespace: str | None,
                                                key: str) -> None:
    _, db = shop
    ns = ["-n", namespace] if namespace else []
    for args in (("log", "-r", text, *ns, "-o", "json"), ("audit", "--resource", text, *ns, "-o", "json")):
        res = gitops(*args, db=db)
        assert res.returncode == 0, (args, res.stderr)
        assert {r["resource"] for r in json.loads(res.stdout)} == {key}, args
    res = gitops("blame", text, *ns, "-o", "json", db=db)
    assert res.returncode == 0 and json.loads(res.stdout), res.stderr
    res = gitops("replay", "--at", "now", "--resource", text, *ns, "-o", "name", db=db)
    assert res.stdout.split() == [key, key] or res.stdout.split() == [key], res.stdout  # desired (and actual)


@pytest.mark.parametrize(("args", "words"), [
    (("audit", "--kind", "deployy"), "unknown kind 'deployy'; did you mean deploy"),
    (("audit", "--resource", "cm/settings"), "ConfigMap 'settings' is in several namespaces (other, shop)"),
    (("audit", "--resource", "deploy/webb"), "the log holds no events about 'deploy/webb' "
                                             "(Deployment.apps/default/webb); the closest it holds: "
                                             "Deployment.apps/shop/web"),
    (("diff", "--resource", "svc/x"), "it holds no Service at all"),
    (("status", "--resource", "deploy/shop/api"), "the log holds no events about"),
    (("blame", "settings"), "names no object: expected TYPE/NAME"),
    (("log", "-r", "ns/a/b"), "Namespace is not namespaced"),
])
def test_a_name_that_matches_nothing_is_exit_2_with_the_closest(shop: tuple[GitRepo, Path], args: tuple[str, ...],
                                                                 words: str) -> None:
    _, db = shop
    res = gitops(*args, db=db)
    one_failure_line(res, code=2)
    assert words in res.stderr, res.stderr


# ---------------------------------------------------------------------- one -o everywhere

LISTING = [("log",), ("audit",), ("status", "--at", "main"), ("blame", "cm/shop/settings"),
           ("replay", "--at", "main"), ("history",)]


@pytest.mark.parametrize("command", LISTING, ids=lambda c: c[0])
def test_every_listing_takes_every_output(shop: tuple[GitRepo, Path], command: tuple[str, ...]) -> None:
    _, db = shop
    command = (*command, "--read-only")  # nothing recorded: each output is of the same log
    outputs = {o: gitops(*command, "-o", o, db=db) for o in ("table", "wide", "json", "yaml", "csv", "name")}
    for o, res in outputs.items():
        assert res.returncode == 0, (command, o, res.stderr)
    doc = json.loads(outputs["json"].stdout)  # one document
    assert yaml.safe_load(outputs["yaml"].stdout) == json.loads(json.dumps(doc))
    rows = list(csv.reader(io.StringIO(outputs["csv"].stdout)))
    bare = list(csv.reader(io.StringIO(gitops(*command, "-o", "csv", "--no-headers", db=db).stdout)))
    assert rows[1:] == bare
    table, wide = outputs["table"].stdout, outputs["wide"].stdout
    assert not re.search("[│┃─━┏┓┗┛]", table + wide)  # piped: plain columns, no box
    if command[0] == "history":  # nothing was reconciled here: no passes (tests/test_cli_verbs.py has some)
        assert doc == [] and "no reconcile passes recorded" in outputs["table"].stderr
        return
    header = next(line for line in table.splitlines() if line.strip() and line.isupper())
    assert header not in gitops(*command, "--no-headers", db=db).stdout
    names = outputs["name"].stdout.split()
    assert names and all(n in table for n in names)
    assert len(wide.splitlines()[-1]) > len(table.splitlines()[-1])  # -o wide adds columns


@pytest.mark.parametrize("command", [("log",), ("audit",)], ids=lambda c: c[0])
def test_streams_take_jsonl_one_object_a_line(shop: tuple[GitRepo, Path], command: tuple[str, ...]) -> None:
    _, db = shop
    lines = [json.loads(line) for line in gitops(*command, "-o", "jsonl", "--read-only", db=db).stdout.splitlines()]
    assert lines == json.loads(gitops(*command, "-o", "json", "--read-only", db=db).stdout) and lines


@pytest.mark.parametrize("command", [("verify",), ("diff",), ("status",), ("replay", "--at", "now"),
                                     ("version", "--client")], ids=lambda c: c[0])
def test_documents_hold_rfc3339_times_only(shop: tuple[GitRepo, Path], command: tuple[str, ...]) -> None:
    _, db = shop
    res = gitops(*command, "-o", "json", db=db)
    assert res.returncode in (0, 1), res.stderr  # diff: 1, it differs
    doc = json.loads(res.stdout)

    def times(v: Any) -> list[str]:
        if isinstance(v, dict):
            return [t for x in v.values() for t in times(x)]
        if isinstance(v, list):
            return [t for x in v for t in times(x)]
        return [v] if isinstance(v, str) and re.match(r"\d{4}-\d\d-\d\dT", v) else []

    for t in times(doc):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", t), t
    assert "valid time" not in res.stdout


def test_the_status_names_the_commit_in_force_filters_and_exits_1_out_of_sync(shop: tuple[GitRepo, Path]) -> None:
    repo, db = shop
    doc = json.loads(gitops("status", "-o", "json", db=db).stdout)
    assert doc["commit_in_force"] == repo.head()  # Git's own head, not our record of it
    assert doc["counts"]["missing"] == 4 and not doc["in_sync"]  # no cluster was read: nothing runs
    assert [w["path"] for w in doc["warnings"]] == ["charts/web/Chart.yaml"]
    table = gitops("status", db=db)
    assert f"commit {repo.head()[:12]} in force" in table.stdout and "a Helm chart" in table.stderr
    assert gitops("status", "--exit-code", db=db).returncode == 1
    assert gitops("status", "-n", "other", "-o", "name", db=db).stdout.split() == ["ConfigMap/other/settings"]
    assert gitops("status", "-l", "app=web,tier!=front", "-o", "name", db=db).stdout.split() == [
        "ConfigMap/shop/settings"]
    assert gitops("status", "-l", "tier in (front)", "-o", "name", db=db).stdout.split() == [
        "Deployment.apps/shop/web"]
    bad = gitops("status", "-l", "a b", db=db)
    one_failure_line(bad, code=2)
    assert "invalid label selector" in bad.stderr


def test_at_takes_head_a_branch_and_a_local_time(shop: tuple[GitRepo, Path]) -> None:
    repo, db = shop
    for at in ("HEAD", "main", repo.head()[:7]):
        doc = json.loads(gitops("status", "--at", at, "-o", "json", db=db).stdout)
        assert doc["commit"] == repo.head(), at
    with EventLog(db) as log:
        [commit] = [r.event for r in log.read(types=["git.commit"]) if isinstance(r.event, GitCommit)]
    # the committer's time, typed as a Tokyo clock shows it (9 hours ahead of UTC), no zone given
    local = commit.effective_at.astimezone(UTC).timestamp() + 9 * 3600 + 1
    typed = datetime.fromtimestamp(local, UTC).strftime("%Y-%m-%d %H:%M:%S")
    res = subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), "status", "--at", typed, "-o", "json"],
                         capture_output=True, text=True, env={**os.environ, "TZ": "Asia/Tokyo"}, timeout=60)
    assert res.returncode == 0, res.stderr
    shown = datetime.fromisoformat(json.loads(res.stdout)["at"])
    assert shown.timestamp() == pytest.approx(commit.effective_at.timestamp() + 1)
    wrong = gitops("status", "--at", "nosuchbranch", db=db)
    one_failure_line(wrong, code=2)
    assert "or a commit: a sha (or a unique prefix), HEAD, or a branch" in wrong.stderr


def test_global_options_go_before_or_after_the_subcommand(shop: tuple[GitRepo, Path], tmp_path: Path) -> None:
    _, db = shop
    before = subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), "--read-only", "log", "-o", "json"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    after = subprocess.run([sys.executable, "-m", "gitops", "log", "-o", "json", "--db", str(db), "--read-only"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    joined = subprocess.run([sys.executable, "-m", "gitops", "log", f"--db={db}", "-o", "json", "--read-only"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert before.returncode == after.returncode == joined.returncode == 0, after.stderr
    assert json.loads(before.stdout) == json.loads(after.stdout) == json.loads(joined.stdout)
    assert not (tmp_path / "gitops.db").exists()  # the --db after the command was the one used


# ---------------------------------------------------------------------- errors that say the cause


def test_a_repository_that_does_not_exist_is_exit_2(tmp_path: Path) -> None:
    res = gitops("ingest", "git", "--repo", str(tmp_path / "nowhere"), db=tmp_path / "g.db")
    one_failure_line(res, code=2)
    assert "does not exist" in res.stderr


def test_ingest_prints_its_first_ten_errors_with_file_and_line(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    for i in range(13):
        repo.write(f"bad-{i:02d}.yaml", f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: b{i}\n")
    repo.commit("thirteen broken files")
    res = gitops("ingest", "git", "--repo", str(repo.path), db=tmp_path / "g.db")
    assert res.returncode == 1
    shown = re.findall(r"^error: (bad-\d\d\.yaml):(\d+): .* \(commit ([0-9a-f]{12})\)$", res.stderr, re.MULTILINE)
    assert [s[0] for s in shown] == [f"bad-{i:02d}.yaml" for i in range(10)]
    assert {s[2] for s in shown} == {repo.head()[:12]} and all(int(s[1]) >= 3 for s in shown)
    assert "... and 3 more errors" in res.stderr


# ---------------------------------------------------------------------- a real terminal


def _in_terminal(args: list[str], *, columns: int = 80, env: dict[str, str] | None = None) -> str:
    """Run gitops with its stdout on a pty of ``columns`` columns; what it wrote."""
    import fcntl
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    clean = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    proc = subprocess.Popen([sys.executable, "-m", "gitops", *args], stdout=follower, stderr=subprocess.PIPE,
                            env={**clean, "TERM": "xterm-256color", **(env or {})})
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        out += chunk
    proc.wait(60)
    os.close(leader)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return out.decode()


def test_tables_fit_80_columns_in_a_terminal_and_no_color_is_honoured(shop: tuple[GitRepo, Path]) -> None:
    _, db = shop
    wide = re.sub(r"\x1b\[[0-9;]*m", "", _in_terminal(["--db", str(db), "status", "-o", "wide"]))
    assert re.search(r"Deployment.apps/shop/web\s+missing\s+Unknown\s+1\s+.*apps/app.yaml", wide)  # nothing cut
    for command in (["audit"], ["log"], ["status"]):
        shown = _in_terminal(["--db", str(db), *command])
        plain = re.sub(r"\x1b\[[0-9;]*m", "", shown)
        lines = [line for line in plain.replace("\r", "").splitlines() if line.strip()]
        assert lines and all(len(line) <= 80 for line in lines), (command, lines)
        header = next(line for line in lines if line.split()[0] in ("TIME", "RESOURCE"))
        assert header.split() == [w for w in header.split() if w in ("TIME", "ACTOR", "RESOURCE", "CHANGES", "TYPE",
                                                                     "DETAIL", "STATUS", "HEALTH", "DIFFERENCES",
                                                                     "REASON", "COMMIT", "PATH")], header
        assert "Deployment.apps/shop/web" in plain  # the keys whole: the optional columns made room for them
        assert "\x1b[" in shown, command  # a terminal gets colour (a bold header)
        assert "\x1b[" not in _in_terminal(["--db", str(db), *command], env={"NO_COLOR": "1"})


def test_completion_scripts_complete_commands_and_options() -> None:
    for shell in ("bash", "zsh", "fish"):
        res = gitops("completion", shell)
        assert res.returncode == 0 and "_GITOPS_COMPLETE" in res.stdout, shell
    # what the bash script asks gitops for, as bash asks it
    env = {**os.environ, "COMP_WORDS": "gitops sta", "COMP_CWORD": "1", "_GITOPS_COMPLETE": "bash_complete"}
    res = subprocess.run([sys.executable, "-m", "gitops"], capture_output=True, text=True, env=env, timeout=60)
    assert "plain,status" in res.stdout.splitlines(), res.stdout
    env = {**env, "COMP_WORDS": "gitops status -o ", "COMP_CWORD": "3"}
    res = subprocess.run([sys.executable, "-m", "gitops"], capture_output=True, text=True, env=env, timeout=60)
    assert {line.split(",")[1] for line in res.stdout.splitlines()} >= {"table", "wide", "json", "name"}


def test_diff_verify_and_report_take_the_output_flag_too(shop: tuple[GitRepo, Path], tmp_path: Path) -> None:
    _, db = shop
    table = gitops("diff", "-o", "table", "--read-only", db=db)
    assert table.returncode == 1  # it differs: nothing runs, no cluster was read
    rows = list(csv.reader(io.StringIO(gitops("diff", "-o", "csv", "--read-only", db=db).stdout)))
    assert rows[0] == ["resource", "status", "op", "path", "desired", "live"]
    assert {r[0] for r in rows[1:]} == set(gitops("diff", "-o", "name", "--read-only", db=db).stdout.split()) == {
        "ConfigMap/other/settings", "ConfigMap/shop/settings", "Deployment.apps/shop/web", "Namespace/shop"}
    assert all(key in table.stdout for key in {r[0] for r in rows[1:]})
    checks = gitops("verify", "-o", "table", db=db)
    assert checks.returncode == 0 and re.search(r"chain and tree\s+yes\s+\d+ events", checks.stdout), checks.stdout
    doc = json.loads(gitops("verify", "-o", "json", db=db).stdout)
    assert doc["ok"] and doc["tampered"] is None and re.fullmatch(r"[0-9a-f]{64}", doc["head_hash"])
    report = gitops("report", "--since", "2000-01-01", "-o", "json", db=db)
    assert report.returncode == 0 and json.loads(report.stdout)["summary"] is not None


def _default_sigint() -> None:
    """In the child before gitops starts: Ctrl-C as a terminal's foreground job gets it. A
    test run started in the background by a non-interactive shell (``pytest &``) ignores
    SIGINT, as such a shell makes its background jobs do, and its children inherit that:
    Python then installs no KeyboardInterrupt, and the Ctrl-C this test sends did nothing
    (the hang it met now and then, in runs started that way)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _follow(db: Path, *args: str) -> subprocess.Popen[str]:
    # faulthandler: a process that does not end is made to print where each thread is (_ended)
    return subprocess.Popen([sys.executable, "-m", "gitops", "--db", str(db), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint,  # noqa: PLW1509
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"})


def _ended(proc: subprocess.Popen[str], timeout: float = 30) -> int:
    """``proc``'s exit code; one that has not ended by then fails the test with where it was
    (its threads' stacks, from faulthandler on SIGABRT) and what it wrote to stderr."""
    import signal

    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"{proc.args!r} had not ended {timeout} s after Ctrl-C; its stderr:\n{err[-6000:]}")


_PENDING: dict[int, bytes] = {}  # what was read of each process's stdout past its last whole line


def _read_until(proc: subprocess.Popen[str], predicate: Any, timeout: float = 30) -> list[str]:
    """The whole lines ``proc`` writes from now until ``predicate(lines)`` holds (read from
    the pipe itself: a buffered reader would hide lines already read from ``select``)."""
    import selectors
    import time

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    lines: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while True:
        *whole, _PENDING[fd] = _PENDING.get(fd, b"").split(b"\n")
        lines += [w.decode() for w in whole]
        if predicate(lines):
            return lines
        assert time.monotonic() < deadline, f"timed out; read {lines}"
        if sel.select(timeout=0.5):
            chunk = os.read(fd, 65536)
            assert chunk, f"the command ended; read {lines}"
            _PENDING[fd] += chunk


def test_watch_follows_new_rows_and_ctrl_c_ends_it_as_a_success(tmp_path: Path) -> None:
    import signal

    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", "shop", k="1"))
    repo.commit("a")
    db = tmp_path / "g.db"
    assert gitops("ingest", "git", "--repo", str(repo.path), db=db).returncode == 0
    log = _follow(db, "log", "-o", "jsonl", "--watch", "--type", "git.commit")
    audit = _follow(db, "audit", "-o", "jsonl", "--watch", "--resource", "cm/shop/*")
    status = _follow(db, "status", "--watch", "-o", "name")
    try:
        assert len(_read_until(log, lambda lines: len(lines) >= 1)) == 1
        assert len(_read_until(audit, lambda lines: len(lines) >= 1)) == 1
        assert _read_until(status, lambda lines: len(lines) >= 1) == ["ConfigMap/shop/a"]
        repo.write("b.yaml", configmap("b", "shop", k="1"))
        repo.commit("b")
        assert gitops("ingest", "git", "--repo", str(repo.path), db=db).returncode == 0
        seen = _read_until(log, lambda lines: len(lines) >= 1)
        assert [json.loads(x)["revision"] for x in seen] == [repo.head()]  # the new commit, nothing shown twice
        assert [json.loads(x)["resource"] for x in _read_until(audit, lambda lines: len(lines) >= 1)] == [
            "ConfigMap/shop/b"]
        assert _read_until(status, lambda lines: "ConfigMap/shop/b" in lines)[-2:] == [
            "ConfigMap/shop/a", "ConfigMap/shop/b"]
    finally:
        for p in (log, audit, status):
            p.send_signal(signal.SIGINT)
    assert [_ended(p) for p in (log, audit, status)] == [0, 0, 0]
    assert log.stdout is not None and audit.stdout is not None
    for p in (log, audit):  # and nothing more: no row shown twice
        assert p.stdout is not None
        assert (_PENDING.get(p.stdout.fileno(), b"").decode() + p.stdout.read()).strip() == ""
