"""The README's main command runs the demo: run it for real against the control plane."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster_fixtures import REPO, Cluster

pytestmark = pytest.mark.cluster


def test_the_demo_runs_end_to_end(cluster: Cluster, tmp_path: Path) -> None:
    if not cluster.local:
        pytest.skip("the demo drives the local control plane")
    env = {**os.environ, "GITOPS_DB": str(tmp_path / "demo.db"), "GITOPS_DEMO_DIR": str(tmp_path / "demo"),
           "GITOPS": f"{sys.executable} -m gitops", "COLUMNS": "200"}
    res = subprocess.run([str(REPO / "scripts" / "demo")], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "Switch the shop to dollars" in res.stdout
    assert "log intact" in res.stdout
    readme = (REPO / "README.md").read_text()
    assert "    make run\n" in readme and "    make test\n" in readme
