"""The Git source as a process: the CLI, a crash between batches, and live triggering."""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from gitops.sources.git import GitIngest, GitSourceConfig
from gitops.sources.git.watch import GitFollower
from gitops.store import EventLog
from tests.cluster_fixtures import wait_until
from tests.gitrepo import GitRepo, configmap


def gitops(*args: str, db: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, "COLUMNS": "200"})


def test_cli_ingest_git_twice_appends_nothing_the_second_time(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a"))
    repo.commit("one")
    repo.write("b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b\n")
    repo.commit("broken")
    db = tmp_path / "g.db"
    res = gitops("ingest", "git", "--repo", str(repo.path), db=db)
    assert res.returncode == 1, res.stderr  # the head is invalid: scripts must notice
    assert res.stdout.strip() == (f"git:{repo.path}#main: 2 commits (1 invalid); the head is invalid (1 errors): "
                                  "the last valid commit stays desired, 1 objects changed "
                                  f"(1 applied, 0 removed), 1 errors; head {repo.head()[:12]}")
    assert res.stderr.startswith(f"error: b.yaml:4: did not find expected ',' or '}}' (commit {repo.head()[:12]})\n"
                                 f"every error, with file and line: gitops --db {db} log --type source.error\n")
    status = gitops("status", db=db)  # says why the head is not in force, as the ingest did
    first = repo.git("rev-parse", "HEAD~1").strip()[:12]
    assert f"commit {first} in force; the newest commit, {repo.head()[:12]}, is invalid (1 error)\n" in \
        status.stdout, status.stdout
    assert status.stderr == f"error: b.yaml:4: did not find expected ',' or '}}' (commit {repo.head()[:12]})\n"
    head = json.loads(gitops("status", "-o", "json", db=db).stdout)["head"]
    assert [(p["path"], p["line"], p["code"]) for p in head["problems"]] == [("b.yaml", 4, "yaml-syntax")]
    waited = gitops("wait", "--for", f"commit={repo.head()}", "--timeout", "10m", db=db)  # not 10 minutes: it says
    assert (waited.returncode, waited.stderr) == (1, f"error: commit {repo.head()[:12]} is invalid (1 error: b.yaml:4: "
                                                     "did not find expected ',' or '}'); it will never be in force: "
                                                     f"commit {first} stays\n")
    with EventLog(db) as log:
        n = log.count()
    res = gitops("ingest", "git", "--repo", str(repo.path), db=db)
    assert res.returncode == 1
    assert "0 commits" in res.stdout
    with EventLog(db) as log:
        assert log.count() == n
    res = gitops("log", "--type", "source.error", "-o", "json", db=db)
    err = json.loads(res.stdout)[0]
    assert (err["payload"]["code"], err["payload"]["path"], err["payload"]["line"]) == ("yaml-syntax", "b.yaml", 4)
    assert err["detail"].startswith("b.yaml:4: ")
    table = gitops("log", "--type", "source.error", db=db).stdout
    assert "b.yaml:4: " in table  # a person sees where, not only what


def test_cli_shows_a_progress_bar_on_a_terminal_and_nothing_extra_in_a_pipe(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    for i in range(3):
        repo.write("a.yaml", configmap("a", k=str(i)))
        repo.commit(f"c{i}")
    piped = gitops("ingest", "git", "--repo", str(repo.path), db=tmp_path / "piped.db")
    assert piped.returncode == 0 and piped.stderr == ""
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "gitops", "--db", str(tmp_path / "tty.db"), "ingest", "git",
                               "--repo", str(repo.path)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=secondary, timeout=300, env={**os.environ, "TERM": "xterm", "COLUMNS": "200"})
        os.close(secondary)
        screen = b""
        while select.select([primary], [], [], 0.2)[0]:
            try:
                chunk = os.read(primary, 1 << 16)
            except OSError:  # the terminal's other end is closed: all is read
                break
            if not chunk:
                break
            screen += chunk
    finally:
        os.close(primary)
    assert proc.returncode == 0
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", screen).decode()
    assert "ingesting git:" in text and "3/3" in text and "commits/s" in text  # done / total, and the rate
    assert proc.stdout.decode() == piped.stdout  # the summary is the same


def test_cli_refuses_a_path_out_of_the_repository_or_not_in_it(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("apps/a.yaml", configmap("a"))
    repo.write("old/b.yaml", configmap("b"))
    repo.commit("one")
    db = tmp_path / "g.db"
    res = gitops("ingest", "git", "--repo", str(repo.path), "--path", "../etc", db=db)
    assert res.returncode == 2
    assert res.stderr == "error: git source: paths: path '../etc' points outside the repository\n"
    assert not db.exists()  # refused before anything was opened
    res = gitops("ingest", "git", "--repo", str(repo.path), "--path", "apps", "--path", "old", db=db)
    assert res.returncode == 0 and "2 applied" in res.stdout
    before = gitops("log", "-o", "json", "--source", "git", db=db).stdout  # (exports add operator events)
    res = gitops("ingest", "git", "--repo", str(repo.path), "--path", "apps", "--path", "oldd", db=db)
    assert res.returncode == 2  # a typo would have read apps alone: refused, nothing recorded
    assert res.stderr == (f"error: path 'oldd' is not in {repo.path.resolve()} at the head of main "
                          f"({repo.head()[:12]}): a typo? Nothing was recorded\n")
    assert gitops("log", "-o", "json", "--source", "git", db=db).stdout == before
    repo.remove("old/b.yaml")
    repo.commit("retire b")  # a path removed by a commit is a real removal, and a warning
    res = gitops("ingest", "git", "--repo", str(repo.path), "--path", "apps", "--path", "old", db=db)
    assert res.returncode == 0 and "1 removed" in res.stdout
    assert res.stderr == (f"warning: old does not exist at the head of main ({repo.head()[:12]}); "
                          "nothing is read from it\n")


def test_cli_exits_non_zero_when_the_head_is_invalid(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a"))
    good = repo.commit("good")
    repo.write("b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 123}\n")
    repo.commit("bad")
    db = tmp_path / "g.db"
    res = gitops("ingest", "git", "--repo", str(repo.path), db=db)
    assert res.returncode == 1
    assert "the head is invalid (1 errors)" in res.stdout
    assert res.stderr.endswith(f"error: the head of main ({repo.head()[:12]}) is invalid: 1 errors; "
                               "the last valid commit stays desired\n")
    res = gitops("ingest", "git", "--repo", str(repo.path), db=db)  # nothing new: still says so
    assert res.returncode == 1 and "is invalid: 1 errors" in res.stderr
    res = gitops("log", "--type", "source.error", "-o", "json", db=db)
    assert "b.yaml:1: ConfigMap's metadata.name is a number (123), not a string: quote it" in res.stdout
    assert good


def test_log_table_in_a_pipe_keeps_each_row_on_one_line(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    name = "a-config-map-with-a-name-long-enough-to-be-folded-at-eighty-columns"
    repo.write("a.yaml", configmap(name))
    repo.commit("one")
    db = tmp_path / "g.db"
    assert gitops("ingest", "git", "--repo", str(repo.path), db=db).returncode == 0
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    res = subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), "log"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    row = next(line for line in res.stdout.splitlines() if "desired.applied" in line)
    assert f"ConfigMap/default/{name}" in row and "a.yaml" in row
    assert len(res.stdout.splitlines()) == 3  # the header and two rows: plain columns, no box, no wrapping
    assert not set("│┃─━┏┓┗┛") & set(res.stdout)


def test_cli_reads_the_git_section_of_the_config_file(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("deploy/a.yaml", configmap("a"))
    repo.write("other/b.yaml", configmap("b"))
    repo.commit("one")
    cfg = tmp_path / "gitops.yaml"
    cfg.write_text(f"git:\n  repo: {repo.path}\n  paths: [deploy]\n")
    res = gitops("--config", str(cfg), "ingest", "git", db=tmp_path / "g.db")
    assert res.returncode == 0, res.stderr
    assert "1 applied" in res.stdout
    res = gitops("ingest", "git", db=tmp_path / "g.db")
    assert res.returncode == 2
    assert res.stderr.strip() == "error: no repository: pass --repo, or set git.repo in the config file"


def _events(db: Path) -> list[tuple[str, str, str | None, str | None, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, type, resource, revision, payload FROM events ORDER BY seq").fetchall()


def test_a_crash_between_batches_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    for i in range(150):
        repo.write(f"cm-{i % 10}.yaml", configmap(f"cm-{i % 10}", k=str(i)))
        repo.commit(f"commit {i}")
    cfg = tmp_path / "gitops.yaml"
    cfg.write_text(f"git:\n  repo: {repo.path}\n  batch_commits: 1\n")
    crashed = tmp_path / "crashed.db"
    proc = subprocess.Popen([sys.executable, "-m", "gitops", "--db", str(crashed), "--config", str(cfg),
                             "ingest", "git"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        seen = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if crashed.exists():
                try:
                    with sqlite3.connect(crashed, timeout=1) as conn:
                        seen = conn.execute("SELECT count(*) FROM events WHERE type = 'git.commit'").fetchone()[0]
                except sqlite3.OperationalError:
                    seen = 0
            if seen >= 20:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # no chance to clean up: a real crash
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with sqlite3.connect(crashed) as conn:
        at_crash = conn.execute("SELECT count(*) FROM events WHERE type = 'git.commit'").fetchone()[0]
    assert 0 < at_crash < 150, "the ingest must be killed part-way through"
    res = gitops("--config", str(cfg), "ingest", "git", db=crashed)
    assert res.returncode == 0, res.stderr
    clean = tmp_path / "clean.db"
    assert gitops("--config", str(cfg), "ingest", "git", db=clean).returncode == 0
    assert _events(crashed) == _events(clean)
    assert gitops("verify", db=crashed).returncode == 0


def test_a_new_commit_wakes_the_follower_without_waiting_for_the_poll(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a"))
    repo.commit("one")
    with EventLog(tmp_path / "g.db") as log:
        source = GitIngest(log, GitSourceConfig(repo=str(repo.path), poll_interval=3600))
        passes: list[int] = []
        follower = GitFollower(source, on_pass=lambda s: passes.append(s.commits))
        follower.start()
        thread = threading.Thread(target=follower.run, daemon=True)
        thread.start()
        try:
            wait_until(lambda: passes == [1], timeout=15, what="the first pass")
            repo.write("a.yaml", configmap("a", k="2"))
            sha = repo.commit("two")
            wait_until(lambda: sum(passes) == 2, timeout=60, what="the new commit to be ingested")
        finally:
            follower.stop()
            thread.join(10)
        assert not thread.is_alive()
        commits = [r.event for r in log.read(types=["git.commit"])]
        assert [c.revision for c in commits][-1] == sha
        assert commits[-1].payload.observed_at is not None  # type: ignore[union-attr]
        assert follower.polls == 0  # woken by the ref's change, not by the (hour-long) poll


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's stdout lines, read by a thread of their own so that a test waits for
    each with a timeout instead of blocking on a process that hangs."""
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for ln in proc.stdout:
            out.put(ln)

    threading.Thread(target=pump, daemon=True).start()
    return out


def test_watch_flag_follows_the_branch_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a"))
    repo.commit("one")
    db = tmp_path / "g.db"
    proc = subprocess.Popen([sys.executable, "-m", "gitops", "--db", str(db), "ingest", "git", "--repo",
                             str(repo.path), "--watch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = _lines(proc)
        assert "1 commits" in lines.get(timeout=60)
        repo.write("b.yaml", configmap("b"))
        repo.commit("two")
        line = lines.get(timeout=60)
        assert "1 commits" in line and "1 applied" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0


def test_a_failed_fetch_is_reported_and_retried_not_fatal(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a"))
    repo.commit("one")
    with EventLog(tmp_path / "g.db") as log:
        source = GitIngest(log, GitSourceConfig(repo=f"file://{repo.path}", cache_dir=str(tmp_path / "cache"),
                                                poll_interval=0.2))
        errors: list[str] = []
        passes: list[int] = []
        follower = GitFollower(source, on_pass=lambda s: passes.append(s.commits),
                               on_error=lambda e: errors.append(str(e)))
        follower.start()
        thread = threading.Thread(target=follower.run, daemon=True)
        thread.start()
        try:
            wait_until(lambda: passes[:1] == [1], timeout=15, what="the first pass")
            moved = tmp_path / "elsewhere"
            repo.path.rename(moved)  # the remote goes away
            wait_until(lambda: bool(errors), timeout=15, what="a failed fetch")
            moved.rename(repo.path)  # and comes back, with a new commit
            repo.write("b.yaml", configmap("b"))
            repo.commit("two")
            wait_until(lambda: sum(passes) == 2, timeout=15, what="the commit after the outage")
        finally:
            follower.stop()
            thread.join(10)
    assert "cannot fetch" in errors[0] and str(repo.path) in errors[0]


def test_watch_refuses_a_mistyped_path_instead_of_retrying_it(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("apps/a.yaml", configmap("a"))
    repo.commit("one")
    res = gitops("watch", "--no-cluster", "--repo", str(repo.path), "--path", "aps", db=tmp_path / "g.db")
    assert res.returncode == 2
    assert res.stderr.splitlines()[-1].startswith("error: path 'aps' is not in ")


def test_the_report_names_its_scope_and_the_hours_nothing_was_recording(tmp_path: Path) -> None:
    """Two `gitops watch` runs with a pause between: the report names the repository,
    branch and paths it covers, and the pause (from the watches' own start and stop
    events) and the time since the second stopped as evidence gaps."""
    import json

    repo = GitRepo(tmp_path / "repo")
    repo.write("apps/a.yaml", configmap("a"))
    repo.commit("one")
    db = tmp_path / "g.db"

    def watch(until: str) -> None:
        proc = subprocess.Popen([sys.executable, "-m", "gitops", "--db", str(db), "watch", "--no-cluster", "--repo",
                                 str(repo.path), "--path", "apps"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            lines = _lines(proc)
            deadline = time.monotonic() + 60
            while until not in lines.get(timeout=max(deadline - time.monotonic(), 0.1)):
                pass
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        assert proc.returncode == 0

    watch("1 commits")  # the back-fill done
    time.sleep(1.5)
    watch("SIGTERM stops")  # nothing new to read: it is running
    res = subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), "report", "--since", "2000-01-01",
                          "--format", "json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    scope = json.loads(res.stdout)["scope"]
    assert [(g["repository"], g["branch"], g["paths"]) for g in scope["git"]] == [(str(repo.path), "main", ["apps"])]
    assert scope["begins_after_since"] is True  # the log began long after 2000
    with EventLog(db) as log:
        marks = [(r.event.payload.outcome, r.event.effective_at) for r in log.read(types=["operator"])  # type: ignore[union-attr]
                 if r.event.payload.command == "watch"]  # type: ignore[union-attr]
    assert [m[0] for m in marks] == ["started", "stopped", "started", "stopped"]
    gaps = [(g["start"], g["end"]) for g in scope["evidence_gaps"]]
    from gitops.model.times import format_time

    assert gaps == [(format_time(marks[1][1]).replace("+00:00", "Z"), format_time(marks[2][1]).replace("+00:00", "Z")),
                    (format_time(marks[3][1]).replace("+00:00", "Z"), None)], gaps


def test_status_diff_and_replay_show_the_config_s_own_reading_of_a_shared_branch(tmp_path: Path) -> None:
    """Two applications under their own paths of one branch, in one log: each config's
    status, diff and replay are of its own reading, not the union of the log's readings
    (that union would show the other application's objects, or what an application read
    before its paths changed, as desired). Without a Git source in the config: the union."""
    repo = GitRepo(tmp_path / "repo")
    for app in ("a", "b"):
        repo.write(f"apps/{app}/cm.yaml", configmap(app))
    first = repo.commit("two apps")
    db = tmp_path / "g.db"
    configs = {}
    for app in ("a", "b"):
        configs[app] = tmp_path / f"{app}.yaml"
        configs[app].write_text(json.dumps({"git": {"repo": str(repo.path), "paths": [f"apps/{app}"]}}))
    # b reads the first commit, then a second; a reads both after: a's state at the first
    # commit is further on in the log than b's
    assert gitops("--config", str(configs["b"]), "ingest", "git", db=db).returncode == 0
    repo.write("apps/b/cm.yaml", configmap("b", k="2"))
    repo.commit("b changed")
    for app in ("b", "a"):
        assert gitops("--config", str(configs[app]), "ingest", "git", db=db).returncode == 0
    for app in ("a", "b"):
        config = ("--config", str(configs[app]))
        status = json.loads(gitops(*config, "status", "-o", "json", db=db).stdout)
        assert [(o["resource"], o["path"]) for o in status["objects"]] == [(f"ConfigMap/default/{app}",
                                                                             f"apps/{app}/cm.yaml")]
        assert gitops(*config, "diff", "-o", "name", db=db).stdout.split() == [f"ConfigMap/default/{app}"]
        replayed = json.loads(gitops(*config, "replay", "--at", "now", "--side", "desired", "-o", "json", db=db).stdout)
        assert [o["key"] for o in replayed["desired"]] == [f"ConfigMap/default/{app}"]
        then = json.loads(gitops(*config, "status", "--at", first[:10], "-o", "json", db=db).stdout)
        assert [o["resource"] for o in then["objects"]] == [f"ConfigMap/default/{app}"]  # at the commit, as it read it
    # the report lists the commit once for each source that read it, with what it did to that source's objects
    report = json.loads(gitops("report", "--since", "2000-01-01", "-o", "json", db=db).stdout)
    second = repo.head()
    assert sorted((g["source"].rsplit(":", 1)[1], g["commit"], [c["resource"] for c in g["changed"]])
                  for g in report["git_changes"]) == sorted([
        ("apps/a", first, ["ConfigMap/default/a"]), ("apps/a", second, []),
        ("apps/b", first, ["ConfigMap/default/b"]), ("apps/b", second, ["ConfigMap/default/b"])])
    assert report["summary"]["commits"] == 2
    everything = json.loads(gitops("status", "-o", "json", db=db).stdout)
    assert [o["resource"] for o in everything["objects"]] == ["ConfigMap/default/a", "ConfigMap/default/b"]
