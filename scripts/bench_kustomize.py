"""Benchmark: back-filling a Kustomize history (a base and two overlays, 300 commits) against
the work that cannot be skipped, measured in the same run: ``git log -p`` over the history
plus one render with the real tool for each (commit, root) whose inputs the commit changed,
from an export of that commit. Prints both times, their ratio (target <= 1.2x) and the
render cache's hit rate.

    python scripts/bench_kustomize.py [--commits 300]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from gitops.sources.git import GitIngest, GitSourceConfig
from gitops.store import EventLog


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def deployment(name: str, image: str) -> str:
    return yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": name, "image": image}]}}}})


def build_history(repo: Path, commits: int, rng: random.Random) -> list[tuple[str, set[str]]]:
    """The repository; for each commit, the roots whose inputs it changed."""
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "Bench")
    services = [f"svc{i}" for i in range(10)]
    (repo / "base").mkdir()
    for s in services:
        (repo / "base" / f"{s}.yaml").write_text(deployment(s, f"{s}:1"))
    (repo / "base" / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [f"{s}.yaml" for s in services],
        "configMapGenerator": [{"name": "settings", "literals": ["LEVEL=1"]}]}))
    for env in ("staging", "prod"):
        (repo / "overlays" / env).mkdir(parents=True)
        (repo / "overlays" / env / "kustomization.yaml").write_text(yaml.safe_dump({
            "resources": ["../../base"], "namespace": env, "namePrefix": f"{env}-",
            "commonLabels": {"env": env}, "patches": [{"path": "replicas.yaml"}]}))
        (repo / "overlays" / env / "replicas.yaml").write_text(yaml.safe_dump({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "svc0"}, "spec": {"replicas": 2}}))
    (repo / "docs").mkdir()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    changed: list[tuple[str, set[str]]] = [("start", {"overlays/staging", "overlays/prod"})]
    for n in range(1, commits):
        roll = rng.random()
        if roll < 0.3:  # the base: both overlays
            s = rng.choice(services)
            (repo / "base" / f"{s}.yaml").write_text(deployment(s, f"{s}:{n}"))
            roots = {"overlays/staging", "overlays/prod"}
        elif roll < 0.7:  # one overlay
            env = rng.choice(["staging", "prod"])
            (repo / "overlays" / env / "replicas.yaml").write_text(yaml.safe_dump({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "svc0"},
                "spec": {"replicas": n}}))
            roots = {f"overlays/{env}"}
        else:  # something no kustomization reads
            (repo / "docs" / "notes.md").write_text(f"note {n}\n")
            roots = set()
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"change {n}")
        changed.append((f"change {n}", roots))
    shas = git(repo, "rev-list", "--reverse", "main").split()
    return [(sha, roots) for sha, (_, roots) in zip(shas, changed, strict=True)]


def baseline(repo: Path, history: list[tuple[str, set[str]]], work: Path) -> tuple[float, int]:
    exe = ["kustomize", "build"] if shutil.which("kustomize") else ["kubectl", "kustomize"]
    start = time.perf_counter()
    git(repo, "log", "-p", "--first-parent", "main")
    renders = 0
    for sha, roots in history:
        if not roots:
            continue
        target = work / sha
        target.mkdir()
        archive = subprocess.run(["git", "archive", sha], cwd=repo, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        for root in sorted(roots):
            subprocess.run([*exe, str(target / root)], check=True, capture_output=True)
            renders += 1
    return time.perf_counter() - start, renders


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        repo = Path(d) / "repo"
        repo.mkdir()
        history = build_history(repo, args.commits, random.Random(5))
        (Path(d) / "work").mkdir()
        base_s, renders = baseline(repo, history, Path(d) / "work")
        with EventLog(Path(d) / "g.db") as log:
            source = GitIngest(log, GitSourceConfig(repo=str(repo), paths=["overlays"]))
            start = time.perf_counter()
            summary = source.run()
            ours = time.perf_counter() - start
        assert summary.head_errors == 0 and summary.commits == args.commits
        looked = source.render_hits + source.render_misses + source.render_unchanged
        print(f"{args.commits} commits, {renders} renders needed (a root whose inputs changed)")
        print(f"baseline (git log -p + one render per changed root, from git archive): {base_s:.2f}s")
        print(f"gitops back-fill: {ours:.2f}s; of {looked} (commit, root) pairs: {source.render_unchanged} inputs "
              f"unchanged (no render), {source.render_hits} taken from the cache, {source.render_misses} rendered: "
              f"{(source.render_unchanged + source.render_hits) / max(looked, 1):.0%} not rendered")
        print(f"ratio {ours / base_s:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
