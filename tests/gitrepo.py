"""Real git repositories for tests, made in a temp dir with the git command line."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def configmap(name: str, namespace: str | None = None, **data: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data) or {"k": "v"}}


def dump(*docs: dict[str, Any]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


class GitRepo:
    """A working repository on branch ``main`` with deterministic authors and times."""

    def __init__(self, path: Path, *, bare_origin: bool = False) -> None:
        self.path = path
        self.ticks = 0
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.name", "Test")
        self.git("config", "user.email", "test@example.com")
        self.git("config", "commit.gpgsign", "false")

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        res = subprocess.run(["git", *args], cwd=self.path, capture_output=True, text=True,
                             env={**os.environ, **(env or {})})
        if res.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {res.stderr}")
        return res.stdout.strip()

    def write(self, rel: str, content: str | bytes | dict[str, Any]) -> None:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            content = dump(content)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)

    def remove(self, rel: str) -> None:
        self.git("rm", "-q", rel)

    def commit(self, message: str, *, author: str = "Ann Author <ann@example.com>",
               committer: str = "Cid Committer <cid@example.com>") -> str:
        self.ticks += 1
        when = (T0 + timedelta(minutes=self.ticks)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        cname, _, cmail = committer.partition(" <")
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message, f"--author={author}",
                 env={"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when, "GIT_COMMITTER_NAME": cname,
                      "GIT_COMMITTER_EMAIL": cmail.rstrip(">")})
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def commit_time(self, sha: str) -> datetime:
        return datetime.fromtimestamp(int(self.git("show", "-s", "--format=%ct", sha)), UTC)
