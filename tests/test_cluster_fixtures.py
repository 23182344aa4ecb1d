"""The policy of the cluster fixtures themselves: outside CI an unreachable cluster skips
cluster tests with a line saying how to enable them; in CI it fails them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run_contract_test(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
        "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "u"}}],
    }))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["GITOPS_TEST_KUBECONFIG"] = str(kubeconfig)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/test_cluster_contract.py::test_create_and_read_back"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )


@pytest.mark.parametrize("ci", [False, True], ids=["outside-ci", "in-ci"])
def test_unreachable_cluster_skips_outside_ci_and_fails_in_ci(tmp_path: Path, ci: bool) -> None:
    res = _run_contract_test(tmp_path, ci)
    if ci:
        assert res.returncode == 1, res.stdout
        assert "in CI cluster tests must run" in res.stdout
    else:
        assert res.returncode == 0, res.stdout
        assert "1 skipped" in res.stdout
        assert "to enable them" in res.stdout and "scripts/local-cluster up" in res.stdout
