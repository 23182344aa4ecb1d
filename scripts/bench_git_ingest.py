"""Benchmark: Git history ingest against the work a back-fill cannot skip.

Generates a repository of C commits over M manifests (about F files changed per commit)
with ``git fast-import``, ingests it through the real ``GitIngest`` into a fresh SQLite
log, and in the same run measures the baseline: ``git log -p --first-parent`` over the
same repository (its output read through a pipe, as ingest reads its own) plus parsing
every blob the history adds or changes with the ingest's own reader (``parse_manifests``,
warmed). Prints commits/s, events/s and the ratio. Target: ingest within 1.25x of that
baseline (issue #32; it was 1x of a baseline parsed with PyYAML's C loader, slower than
the ingest's reader, which flattered the ratio).

    python scripts/bench_git_ingest.py [--commits 2000] [--manifests 500] [--files-per-commit 5]
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from gitops.sources.git import GitIngest, GitSourceConfig
from gitops.sources.git.repository import GitRepository
from gitops.sources.manifests import parse_manifests
from gitops.store import EventLog


def manifest(i: int, version: int) -> bytes:
    name = f"svc-{i:04d}"
    doc = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": f"team-{i % 20}", "labels": {"app": name}},
        "spec": {
            "replicas": 1 + version % 5,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": f"registry.example/{name}:{version}",
                                         "env": [{"name": "VERSION", "value": str(version)}],
                                         "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
            },
        },
    }
    return yaml.safe_dump(doc, sort_keys=False).encode()


def generate(path: Path, commits: int, manifests: int, per_commit: int) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    rng = random.Random(42)
    versions = [0] * manifests
    chunks: list[bytes] = []
    t = 1_700_000_000
    for c in range(commits):
        changed = list(range(manifests)) if c == 0 else rng.sample(range(manifests), per_commit)
        body = []
        for i in changed:
            versions[i] += 1
            data = manifest(i, versions[i])
            body.append(b"M 100644 inline apps/team-%d/svc-%04d.yaml\ndata %d\n%s\n" % (i % 20, i, len(data), data))
        msg = f"change {len(changed)} services (commit {c})".encode()
        who = b"Dev %d <dev%d@example.com> %d +0000" % (c % 7, c % 7, t + c * 60)
        chunks.append(b"commit refs/heads/main\nauthor %s\ncommitter %s\ndata %d\n%s\n%s\n"
                      % (who, who, len(msg), msg, b"".join(body)))
    subprocess.run(["git", "fast-import", "--quiet"], input=b"".join(chunks), cwd=path, check=True)
    subprocess.run(["git", "checkout", "-q", "main"], cwd=path, check=True)


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def time_git_log(path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(["git", "log", "-p", "--first-parent"], cwd=path, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    size = 0
    while chunk := proc.stdout.read(1 << 16):
        size += len(chunk)
    proc.wait()
    return time.perf_counter() - start, size


def changed_blobs(path: Path) -> list[tuple[str, bytes]]:
    """Every blob a first-parent walk of the history adds or changes, with its path, read
    (untimed) through the same history and cat-file reader the ingest uses."""
    repo = GitRepository(str(path))
    try:
        head = repo.head(repo.default_branch())
        assert head is not None
        found = [(c.path, c.blob) for _, changes in repo.history(None, head) for c in changes if c.blob is not None]
        data = repo.read_blobs([b for _, b in found])
        return [(p, data[b]) for p, b in found]
    finally:
        repo.close()


def time_parse(blobs: list[tuple[str, bytes]]) -> float:
    """Seconds the ingest's own reader (``parse_manifests``: its YAML loader, the checks of
    each object) takes over the blobs, warmed by one pass first: what a back-fill cannot
    skip besides reading the history."""
    for path, b in blobs[:200]:
        parse_manifests(path, b)
    start = time.perf_counter()
    for path, b in blobs:
        parse_manifests(path, b)
    return time.perf_counter() - start


def time_pyyaml(blobs: list[tuple[str, bytes]]) -> float:
    """Seconds PyYAML's C loader alone takes over the same blobs: for reference."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    start = time.perf_counter()
    for _, b in blobs:
        list(yaml.load_all(b.decode(), Loader=loader))
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=2000)
    ap.add_argument("--manifests", type=int, default=500)
    ap.add_argument("--files-per-commit", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        repo = Path(d) / "repo"
        generate(repo, args.commits, args.manifests, args.files_per_commit)
        baseline_s, size = time_git_log(repo)
        git_cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
        with EventLog(Path(d) / "log.db") as log:
            py_cpu = cpu_seconds(resource.RUSAGE_SELF)
            start = time.perf_counter()
            source = GitIngest(log, GitSourceConfig(repo=str(repo)))
            summary = source.run()
            ingest_s = time.perf_counter() - start
            py_cpu = cpu_seconds(resource.RUSAGE_SELF) - py_cpu
            source.close()  # its git processes end here, and only then count as children
            git_cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - git_cpu
            events = log.count()
        git_log_cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
        baseline2_s, _ = time_git_log(repo)  # the baseline again, after: the machine is noisy
        git_log_cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - git_log_cpu
        blobs = changed_blobs(repo)
        parse_s = time_parse(blobs)
        pyyaml_s = time_pyyaml(blobs)
    baseline = min(baseline_s, baseline2_s)
    assert summary.commits == args.commits and summary.errors == 0
    print(f"repository: {args.commits} commits over {args.manifests} manifests, "
          f"~{args.files_per_commit} files changed per commit")
    print(f"gitops ingest:                  {args.commits / ingest_s:8,.0f} commits/s, "
          f"{events / ingest_s:8,.0f} events/s ({events} events, {ingest_s:.2f} s)")
    print(f"git log -p --first-parent:      {args.commits / baseline:8,.0f} commits/s "
          f"({size / 1e6:.1f} MB, {baseline:.2f} s; best of two runs around the ingest)")
    floor = baseline + parse_s
    print(f"the ingest's own reader over the {len(blobs)} blobs the history adds or changes: {parse_s:.2f} s "
          f"(PyYAML's C loader alone: {pyyaml_s:.2f} s)")
    print(f"baseline: git log -p plus that parse: {floor:.2f} s")
    print(f"CPU time: ingest {py_cpu + git_cpu:.2f} s ({py_cpu:.2f} s in Python, {git_cpu:.2f} s in its git "
          f"processes); git log -p {git_log_cpu:.2f} s")
    print(f"for reference: ingest takes {ingest_s / baseline:.2f}x the time of git log -p alone")
    print(f"ratio: ingest takes {ingest_s / floor:.2f}x the time of the baseline (target <= 1.25x)")


if __name__ == "__main__":
    main()
