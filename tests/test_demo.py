"""The README's main command tells the whole story: run it for real against the control plane
(as CI does), and check each step says what it did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.cluster_fixtures import REPO, Cluster

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_the_demo_tells_the_whole_story(cluster: Cluster, tmp_path: Path, store: str,
                                        request: pytest.FixtureRequest) -> None:
    if not cluster.local:
        pytest.skip("the demo drives the local control plane")
    env = {**os.environ, "GITOPS_DEMO_DIR": str(tmp_path / "demo"), "GITOPS": f"{sys.executable} -m gitops",
           "COLUMNS": "200"}
    if store == "postgresql":  # the same story on a PostgreSQL log
        env["GITOPS_DEMO_DB"] = request.getfixturevalue("postgres_db")
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "demo")], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    for line in ("gitops run applied it by itself", "drift caught, credited to alice", "pruned in",
                 "gitops run stopped on SIGTERM (exit 0)", "the cluster matches Git", "log intact"):
        assert line in out, line
    oob = out.split("gitops audit --out-of-band", 1)[1].split("gitops audit -n", 1)[0]
    assert "alice" in oob and "cluster.deleted" not in oob  # the reconciler's prune is not out of band
    assert "ConfigMap/" in out.split("before Bo's commit", 1)[1].split("gitops diff", 1)[0]
    assert (tmp_path / "demo" / "report.html").read_text().startswith("<!DOCTYPE html>")
    if store == "postgresql":  # the events are on the server, and no SQLite file was made
        with psycopg.connect(env["GITOPS_DEMO_DB"]) as c:
            row = c.execute("SELECT count(*), count(*) FILTER (WHERE type = 'drift.opened') FROM events").fetchone()
        assert row is not None and row[0] > 50 and row[1] == 1
        assert not list((tmp_path / "demo").glob("*.db"))
    readme = (REPO / "README.md").read_text()
    assert "    make run\n" in readme and "    make test\n" in readme
