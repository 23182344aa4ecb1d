"""The long-running service (gitops/service/watch.py) on its own: a real Git repository, the
real control plane, a real SQLite file; the reporter is the only thing the test supplies."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pykube
import pytest

from gitops.model import ConfigError
from gitops.service.watch import WatchService
from gitops.sources.cluster import ClusterSourceConfig
from gitops.sources.git import GitIngest, GitSourceConfig, IngestSummary
from gitops.store import EventLog
from tests.cluster_fixtures import Cluster, wait_until
from tests.gitrepo import GitRepo, configmap


class Recorder:
    """A reporter that keeps what it is told."""

    def __init__(self) -> None:
        self.passes: list[tuple[bool, int]] = []
        self.errors: list[str] = []
        self.watched: list[str] = []

    def git_pass(self, source: GitIngest, summary: IngestSummary, *, first: bool, at: datetime) -> None:
        self.passes.append((first, summary.commits))

    def git_error(self, origin: str, error: Exception, *, at: datetime) -> None:
        self.errors.append(str(error))

    def watching(self, what: str, *, at: datetime) -> None:
        self.watched.append(what)


def _has(db: Path, event_type: str, resource: str) -> bool:
    with EventLog(db) as log:
        return any(True for _ in log.read(types=[event_type], resource=resource))


@pytest.mark.cluster
def test_the_service_follows_git_and_the_cluster_and_stops_in_order(cluster: Cluster, admin_api: Any,
                                                                     namespace: str, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("ns.yaml", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    repo.commit("a namespace")
    db = tmp_path / "g.db"
    EventLog(db).close()
    reporter = Recorder()
    service = WatchService.build(
        db, git=GitSourceConfig(repo=str(repo.path)),
        cluster=ClusterSourceConfig(kubeconfig=str(cluster.kubeconfig), context="admin" if cluster.local else None),
        redaction=(), reporter=reporter)
    service.start()
    try:
        wait_until(lambda: reporter.passes, what="the first Git pass")
        assert reporter.passes[0] == (True, 1)
        repo.write("cm.yaml", configmap("from-git", namespace))  # a new kind enters the desired state ...
        repo.commit("a ConfigMap")
        wait_until(lambda: "ConfigMap" in reporter.watched, what="ConfigMaps to be watched")
        pykube.ConfigMap(admin_api, configmap("live", namespace)).create()  # ... and is watched from then on
        wait_until(lambda: _has(db, "cluster.observed", f"ConfigMap/{namespace}/live"), what="the live change")
        assert not service.wait(0)  # nothing stopped it
    finally:
        service.request_stop()
        assert service.wait(5)
        service.stop()
    assert service.error is None
    assert _has(db, "desired.applied", f"ConfigMap/{namespace}/from-git")
    with EventLog(db) as log:
        assert log.verify().ok


def test_settings_the_git_source_refuses_stop_the_service(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("apps/a.yaml", configmap("a"))
    repo.commit("one")
    db = tmp_path / "g.db"
    EventLog(db).close()
    service = WatchService.build(db, git=GitSourceConfig(repo=str(repo.path), paths=["aps"]), cluster=None,
                                 redaction=(), reporter=Recorder())
    service.start()
    try:
        assert service.wait(30), "a refused setting must end the wait, not be retried forever"
    finally:
        service.stop()
    assert isinstance(service.error, ConfigError) and "'aps'" in str(service.error)
