"""The CLI on a PostgreSQL log (``--db postgresql://…`` or ``GITOPS_DB``): made by init,
written and read by the commands, refused cleanly where it cannot be reached, and held to
one Secret digest key among all its writers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.cli_helpers import one_failure_line
from tests.gitrepo import GitRepo, configmap, dump

KEY_A, KEY_B = "11" * 32, "22" * 32


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gitops", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, cwd=cwd)


def test_init_ingest_and_read_a_postgresql_log(postgres_db: str, tmp_path: Path) -> None:
    made = run("--db", postgres_db, "init")
    assert made.returncode == 0 and "initialised: postgresql://" in made.stdout and "@" not in made.stdout
    repo = GitRepo(tmp_path / "repo")
    repo.write("app.yaml", dump(configmap("settings", "shop", currency="EUR"),
                                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pw", "namespace": "shop"},
                                 "stringData": {"password": "hunter2"}}))
    repo.commit("Add the app")
    env = {"GITOPS_DB": postgres_db, "GITOPS_DIGEST_KEY": KEY_A}
    ingested = run("ingest", "git", "--repo", str(repo.path), env=env, cwd=tmp_path)
    assert ingested.returncode == 0, ingested.stderr
    log = run("log", "-o", "jsonl", env=env)
    assert log.returncode == 0 and "ConfigMap/shop/settings" in log.stdout
    assert "hunter2" not in log.stdout and "hmac-sha256:" in log.stdout
    replay = run("replay", "--at", "now", "--side", "desired", "-o", "name", env=env)
    assert replay.returncode == 0 and "ConfigMap/shop/settings" in replay.stdout
    assert not list(tmp_path.glob("*.db"))  # nothing went to a SQLite file


def test_a_writer_with_another_digest_key_is_refused(postgres_db: str, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("app.yaml", dump(configmap("settings", "shop", currency="EUR")))
    repo.commit("Add the app")
    first = run("--db", postgres_db, "ingest", "git", "--repo", str(repo.path), env={"GITOPS_DIGEST_KEY": KEY_A},
                cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    other = run("--db", postgres_db, "ingest", "git", "--repo", str(repo.path), env={"GITOPS_DIGEST_KEY": KEY_B},
                cwd=tmp_path)
    one_failure_line(other, 2)
    assert "every writer of one log must share its digest key" in other.stderr


def test_an_unreachable_server_is_one_line_and_never_shows_the_password(tmp_path: Path) -> None:
    res = run("--db", "postgresql://gitops:s3cret-pw@127.0.0.1:1/gitops", "log")
    one_failure_line(res)
    assert "cannot reach the PostgreSQL server" in res.stderr and "s3cret-pw" not in res.stderr
    assert "postgresql://127.0.0.1:1/gitops" in res.stderr
