"""Shared fixtures. Cluster fixtures live in ``tests/cluster_fixtures.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from gitops.store import EventLog

pytest_plugins = ["tests.cluster_fixtures", "tests.postgres_fixtures"]

# In CI the property tests run the same examples every time (a landing must not hang on
# a new random draw) and without per-example deadlines (the machine is shared and noisy).
# Locally each run draws anew, which is how the fast YAML path's differences were found.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def env(cluster: Any, tmp_path: Path, namespace: str) -> Iterator[Any]:
    """A repository, a log and a reconciler over them and the control plane
    (``tests.test_reconcile.Env``), closed after the test; a module may define its own."""
    from tests.test_reconcile import Env

    e = Env(cluster, tmp_path, namespace)
    yield e
    e.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "gitops.db"


@pytest.fixture
def log(db_path: Path) -> Iterator[EventLog]:
    with EventLog(db_path) as event_log:
        yield event_log
