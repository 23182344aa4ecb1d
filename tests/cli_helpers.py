"""Running the real ``gitops`` entry point in a subprocess, where the exit code and stderr matter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def gitops(*args: str, db: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "gitops", *(["--db", str(db)] if db else []), *args]
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120, env=env)


def one_failure_line(res: subprocess.CompletedProcess[str], code: int = 1) -> None:
    """A user's error: exit ``code`` (2: the command was misused) and one line on stderr, no traceback."""
    assert res.returncode == code and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, \
        res.stderr
