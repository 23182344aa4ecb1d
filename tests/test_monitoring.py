"""The metrics a running ``gitops run`` serves, as Prometheus conventions name them, and the
alert rules and dashboard in ``deploy/monitoring`` built on them: every series they use is
served, checked against a real run on the local control plane."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from gitops.store import EventLog
from tests.cluster_fixtures import Cluster, grant, kubectl, wait_until
from tests.gitrepo import GitRepo, configmap
from tests.test_run import _config, gitops_run

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
_FUNCTIONS = {"sum", "by", "rate", "increase", "histogram_quantile", "max", "time", "label_values", "le", "and",
              "or", "unless", "on", "without", "count", "avg", "min"}


def _exprs() -> list[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert all(r.get("alert") and r.get("annotations", {}).get("summary") for g in rules["groups"] for r in g["rules"])
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def _series(expr: str) -> set[str]:
    """The metric names an expression reads (identifiers that are neither functions nor labels)."""
    no_labels = re.sub(r"\{[^}]*\}", "", re.sub(r"by \([^)]*\)", "", expr))
    return {n for n in re.findall(r"\b(gitops_[a-z_]+)\b", no_labels)} - _FUNCTIONS


def test_promtool_accepts_the_alert_rules() -> None:
    import os
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true but promtool is not installed (.ci/run installs Debian's prometheus package)")
        pytest.skip("promtool is not installed (Debian's prometheus package); the parse test below still runs")
    res = subprocess.run([promtool, "check", "rules", str(MONITORING / "alerts.yaml")], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "SUCCESS: 9 rules found" in res.stdout, res.stdout + res.stderr


def test_the_rules_and_the_dashboard_parse_and_name_only_gitops_series() -> None:
    names = set().union(*(_series(e) for e in _exprs()))
    assert names >= {"gitops_objects", "gitops_reconcile_passes_total", "gitops_drift_open",
                     "gitops_actions_total", "gitops_last_applied_commit_info"}


@pytest.mark.cluster
def test_a_running_service_serves_every_series_the_rules_use(cluster: Cluster, namespace: str,
                                                             tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", namespace, k="1"))
    repo.commit("a")
    db = tmp_path / "g.db"
    with gitops_run(db, _config(tmp_path, cluster, namespace, repo), tmp_path) as run:
        def scraped() -> str | None:
            status, text = run.get("/metrics")
            return text if status == 200 and "gitops_last_applied_commit_info{" in text and \
                'health="Healthy",kind="ConfigMap",sync="in-sync"} 1.0' in text else None

        metrics = wait_until(scraped, timeout=90, what="a pass applied and judged in sync")
        with EventLog(db) as log:
            last = log.last_seq()
        if cluster.local:  # alice's edit is healed: the healing pass's own figures say in sync, not 1 out of sync
            grant(cluster, namespace, "alice")
            kubectl(cluster, "alice", "-n", namespace, "patch", "configmap", "a", "-p", '{"data":{"k":"9"}}')
            healed = wait_until(lambda: (t := run.get("/metrics")[1]) and 'gitops_actions_total{action="update",'
                                'kind="ConfigMap",result="succeeded"} 1.0' in t and t, timeout=60, what="the heal")
            assert "gitops_objects_out_of_sync 0.0" in healed and "gitops_drift_open 0.0" in healed
            assert 'gitops_objects{health="Healthy",kind="ConfigMap",sync="in-sync"} 1.0' in healed
    served = {m.group(1) for m in re.finditer(r"^([a-z_]+?)(?:_bucket|_count|_sum)?(?:\{| )", metrics, re.MULTILINE)}
    for expr in _exprs():
        for name in _series(expr):
            assert name in served or name.removesuffix("_bucket") in served, (name, expr)
    assert "_created" not in metrics  # no *_created series
    assert f'gitops_last_applied_commit_info{{commit="{repo.head()}"}} 1.0' in metrics  # Git's own head
    assert re.search(r'gitops_objects\{health="Healthy",kind="ConfigMap",sync="in-sync"\} 1\.0', metrics)
    assert 'gitops_actions_total{action="create",kind="ConfigMap",result="succeeded"} 1.0' in metrics
    appended = float(re.search(r"^gitops_events_appended_total (\S+)$", metrics, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert appended >= 1 and appended <= last + 50  # the log's last seq when scraped
    assert re.search(r'gitops_reconcile_duration_seconds_count\{result="succeeded"\} [1-9]', metrics)
    assert re.search(r"^gitops_git_fetch_duration_seconds_count [1-9]", metrics, re.MULTILINE)
    assert re.search(r'gitops_api_request_duration_seconds_count\{code="200",verb="GET"\} [1-9]', metrics)
    assert f'gitops_info{{instance="{namespace}",version="' in metrics


@pytest.mark.cluster
def test_an_invalid_head_is_served_as_a_metric_and_logged_as_an_error(cluster: Cluster, namespace: str,
                                                                      tmp_path: Path) -> None:
    """A push whose newest commit is invalid applies nothing of it: the cluster is held to the
    last valid commit (checked with kubectl). Nothing said so but an info line: now the Git
    source's line is an error, and gitops_git_head_errors (alert GitopsHeadInvalid) counts
    the head's errors until a valid commit comes."""
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", namespace, k="1"))
    repo.commit("a")

    def value() -> str | None:
        got = kubectl(cluster, "admin", "-n", namespace, "get", "configmap", "a", "-o", "json", check=False)
        return str(json.loads(got.stdout)["data"]["k"]) if got.returncode == 0 else None

    with gitops_run(tmp_path / "g.db", _config(tmp_path, cluster, namespace, repo), tmp_path) as run:
        wait_until(lambda: "gitops_git_head_errors 0.0" in run.get("/metrics")[1] and value() == "1",
                   timeout=90, what="the first pass")
        repo.write("a.yaml", configmap("a", namespace, k="2"))
        repo.write("b.yaml", "kind: ConfigMap\nmetadata: {name: b\n")  # unclosed flow mapping
        repo.commit("a change, and a broken file")
        wait_until(lambda: "gitops_git_head_errors 1.0" in run.get("/metrics")[1], timeout=60,
                   what="the invalid head served")
        assert re.search(r"ERROR +git:.*the head is invalid \(1 errors\)", run.output()), run.output()
        assert value() == "1"  # held to the last valid commit
        repo.remove("b.yaml")
        repo.commit("fixed")
        wait_until(lambda: "gitops_git_head_errors 0.0" in run.get("/metrics")[1] and value() == "2",
                   timeout=60, what="the fix applied")
