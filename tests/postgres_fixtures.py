"""A real PostgreSQL server for the storage contract tests, found the way the cluster is:

1. ``GITOPS_TEST_POSTGRES`` — a server of the user's own (a URL of a database whose user may
   create databases);
2. the local server of ``scripts/local-postgres``: used when it is running, and started
   (then stopped at the end) when Debian's postgresql package is installed, or in CI.

Outside CI, when neither can be had, PostgreSQL tests skip with one line saying how to
enable them. In CI (``CI=true``) that is a failure: CI must run them. Each test gets a
database of its own, dropped after it. ``store`` gives a test a log on each engine.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gitops.store import EventLog, open_log
from tests.cluster_fixtures import _in_ci, unavailable

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "local-postgres"
HOW = ("no PostgreSQL server for the storage tests: run `scripts/local-postgres up` (or set GITOPS_TEST_POSTGRES "
       "to a database URL of your own) to enable them")


def _unavailable(why: str) -> None:
    unavailable(why, HOW, "PostgreSQL tests")


def _local_url() -> str | None:
    res = subprocess.run([str(SCRIPT), "env"], capture_output=True, text=True)
    if res.returncode != 0 or "=" not in res.stdout:
        return None
    url = res.stdout.strip().split("=", 1)[1]
    return url if subprocess.run([str(SCRIPT), "status"], capture_output=True).returncode == 0 else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a database on a running server, whose user may create databases."""
    url = os.environ.get("GITOPS_TEST_POSTGRES")
    started = False
    if not url:
        url = _local_url()
        if url is None:
            installed = any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
            if not (_in_ci() or installed):
                _unavailable("the local PostgreSQL server is not running and Debian's postgresql is not installed")
            res = subprocess.run([str(SCRIPT), "up"], capture_output=True, text=True)
            if res.returncode != 0:
                _unavailable(f"`scripts/local-postgres up` failed: {res.stderr.strip().splitlines()[-1:]}")
            started, url = True, _local_url()
            assert url is not None
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as e:
        _unavailable(f"the PostgreSQL server at {url.split('@')[-1]} does not answer ({type(e).__name__})")
    yield url
    if started:
        subprocess.run([str(SCRIPT), "down"], capture_output=True)


def database_url(server: str, name: str) -> str:
    return server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def postgres_db(postgres_server: str) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    name = f"gitops_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    yield database_url(postgres_server, name)
    with psycopg.connect(postgres_server, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class Store:
    """A log on one engine, for the tests every adapter must pass (the ``store`` fixture)."""

    kind: str
    location: str | Path

    def open(self, **options: Any) -> EventLog:
        return open_log(self.location, **options)

    def raw(self, sql: str) -> None:
        """Run ``sql`` with the engine's own client, outside gitops."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.location) as c:
                c.execute(sql)
        else:
            with psycopg.connect(str(self.location), autocommit=True) as c:
                c.execute(sql.encode())


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store("sqlite", tmp_path / "gitops.db")
    return Store("postgresql", request.getfixturevalue("postgres_db"))
