"""Shared fixtures. Cluster fixtures live in ``tests/cluster_fixtures.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops.store import EventLog

pytest_plugins = ["tests.cluster_fixtures"]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "gitops.db"


@pytest.fixture
def log(db_path: Path) -> Iterator[EventLog]:
    with EventLog(db_path) as event_log:
        yield event_log
