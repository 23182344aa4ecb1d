"""Kustomize trees in real repositories: rendered with the real tool at every commit, from the
commit itself, and compared with what ``kubectl kustomize`` prints for a checkout of that
commit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.events import GitCommit, SourceErrorEvent
from gitops.model.keys import format_key
from gitops.sources.git import GitIngest, GitSourceConfig
from gitops.sources.manifests import parse_manifests
from gitops.store import EventLog
from tests.gitrepo import GitRepo

if shutil.which("kubectl") is None and shutil.which("kustomize") is None:
    if __import__("os").environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise RuntimeError("CI=true but neither kubectl nor kustomize is on PATH: the Kustomize tests must run in CI")
    pytestmark = pytest.mark.skip(reason="needs kubectl (with kustomize) or kustomize on PATH")

BASE = {
    "base/kustomization.yaml": """
resources: [deployment.yaml, service.yaml]
configMapGenerator:
- name: settings
  literals: [MODE=base, LEVEL=1]
""",
    "base/deployment.yaml": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        envFrom: [{configMapRef: {name: settings}}]
""",
    "base/service.yaml": """
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80, protocol: TCP}]}
""",
    "overlays/staging/kustomization.yaml": """
resources: [../../base]
namespace: staging
namePrefix: stg-
commonLabels: {env: staging}
patches:
- path: replicas.yaml
""",
    "overlays/staging/replicas.yaml": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {replicas: 2}
""",
    "overlays/prod/kustomization.yaml": """
resources: [../../base]
namespace: prod
namePrefix: prod-
commonLabels: {env: prod}
patches:
- target: {kind: Deployment, name: web}
  patch: |-
    - op: replace
      path: /spec/replicas
      value: 5
configMapGenerator:
- name: settings
  behavior: merge
  literals: [MODE=prod]
""",
}


def render_checkout(repo: GitRepo, sha: str, root: str, tmp: Path) -> dict[str, dict[str, Any]]:
    """What the real tool prints for ``root`` in a checkout of ``sha``, as key -> object."""
    work = tmp / f"checkout-{sha[:8]}"
    if not work.exists():
        repo.git("worktree", "add", "--detach", str(work), sha)
    exe = ["kustomize", "build"] if shutil.which("kustomize") else ["kubectl", "kustomize"]
    out = subprocess.run([*exe, str(work / root)], capture_output=True, check=True).stdout
    result = parse_manifests("x.yaml", out)
    assert not result.problems
    return {format_key(d.key): d.manifest for d in result.documents}


def desired(log: EventLog) -> dict[str, dict[str, Any]]:
    from gitops.projections import fold_desired

    return {k: e.manifest for k, e in fold_desired(log.current("desired")).items()}


def write(repo: GitRepo, files: dict[str, str]) -> None:
    for path, content in files.items():
        repo.write(path, content.lstrip("\n"))


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "repo")


def test_overlays_give_at_every_commit_what_kustomize_build_gives(repo: GitRepo, tmp_path: Path) -> None:
    steps = [
        ("base and two overlays", BASE),
        ("only the base changes", {"base/deployment.yaml": BASE["base/deployment.yaml"].replace("1.25", "1.27")}),
        ("nothing the overlays read", {"docs/readme.md": "not a manifest"}),
    ]
    shas = []
    with EventLog(tmp_path / "g.db") as log:
        source = GitIngest(log, GitSourceConfig(repo=str(repo.path), paths=["overlays"]))
        for i, (message, files) in enumerate(steps):
            write(repo, files)
            shas.append(repo.commit(message))
            source.run()  # live ingest: each commit as it arrives
            want = {**render_checkout(repo, shas[-1], "overlays/staging", tmp_path),
                    **render_checkout(repo, shas[-1], "overlays/prod", tmp_path)}
            assert desired(log) == want, f"commit {i}"
        assert (source.render_misses, source.render_hits) == (4, 0)  # rendered only when an input changed
        # the base's change reached both overlays' Deployments, and only them
        changed = [r.event.resource for r in log.read(types=["desired.applied"], commit_prefix=shas[1])]
        assert changed == ["Deployment.apps/prod/prod-web", "Deployment.apps/staging/stg-web"]
        prod = desired(log)["Deployment.apps/prod/prod-web"]
        assert prod["spec"]["replicas"] == 5 and prod["metadata"]["labels"]["env"] == "prod"
        assert desired(log)["Deployment.apps/staging/stg-web"]["spec"]["replicas"] == 2
        generated = [k for k in desired(log) if k.startswith("ConfigMap/prod/prod-settings-")]
        assert len(generated) == 1  # with its content hash suffix
        applied = next(r.event for r in log.read(types=["desired.applied"], resource="Service/prod/prod-web"))
        assert applied.payload.path == "overlays/prod/"  # type: ignore[union-attr]  # the root it came from
        commits = [r.event for r in log.read(types=["git.commit"]) if isinstance(r.event, GitCommit)]
        assert all("kustomize" in (c.payload.renderer or "") for c in commits)


def test_back_fill_and_live_ingest_record_the_same_events(repo: GitRepo, tmp_path: Path) -> None:
    write(repo, BASE)
    repo.commit("one")
    repo.write("overlays/prod/kustomization.yaml", BASE["overlays/prod/kustomization.yaml"].replace("prod-", "p-"))
    repo.commit("two")
    repo.write("base/service.yaml", BASE["base/service.yaml"].replace("80", "8080"))
    repo.commit("three")

    def events(db: Path) -> list[tuple[str, str | None, str | None, Any]]:
        """Each desired.* and source.error event, without what names the repository's place
        on disk (its origin, and the ids made from it)."""
        with EventLog(db) as log:
            return [(r.event.type, r.event.resource, r.event.revision,
                     r.event.payload.model_dump(exclude={"origin"})) for r in log.read(types=[
                "desired.applied", "desired.removed", "source.error"])]

    with EventLog(tmp_path / "backfill.db") as log:
        GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
    live = GitRepo(tmp_path / "live")
    live.git("remote", "add", "origin", str(repo.path))
    with EventLog(tmp_path / "live.db") as log:
        for n in (1, 2, 3):  # the same commits, arriving one by one
            live.git("fetch", "-q", "origin", "main")
            sha = repo.git("rev-list", "--reverse", "main").splitlines()[n - 1]
            live.git("reset", "-q", "--hard", sha)
            GitIngest(log, GitSourceConfig(repo=str(live.path))).run()
    assert events(tmp_path / "backfill.db") == events(tmp_path / "live.db")
    assert events(tmp_path / "backfill.db")


def test_a_broken_kustomization_is_one_error_and_the_last_valid_state_stays(repo: GitRepo, tmp_path: Path) -> None:
    write(repo, BASE)
    repo.commit("good")
    repo.write("overlays/prod/kustomization.yaml", "resources: [../../base, missing.yaml]\n")
    bad = repo.commit("a resource that is not there")
    with EventLog(tmp_path / "g.db") as log:
        source = GitIngest(log, GitSourceConfig(repo=str(repo.path)))
        summary = source.run()
        assert (summary.invalid_commits, summary.head_errors) == (1, 1)
        errors = [r.event for r in log.read(types=["source.error"]) if isinstance(r.event, SourceErrorEvent)]
        assert [(e.payload.code, e.payload.path, e.revision) for e in errors] == [
            ("kustomize-failed", "overlays/prod/", bad)]
        assert "missing.yaml" in errors[0].payload.message and "/tmp" not in errors[0].payload.message
        assert "Deployment.apps/prod/prod-web" in desired(log)  # the last valid commit's objects stay


def test_a_remote_base_is_refused_without_fetching(repo: GitRepo, tmp_path: Path) -> None:
    write(repo, {"app/kustomization.yaml": "resources:\n- https://github.com/kubernetes-sigs/kustomize//examples/"
                                           "helloWorld?ref=v5.5.0\n"})
    repo.commit("remote")
    with EventLog(tmp_path / "g.db") as log:
        summary = GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
        assert summary.head_errors == 1
        errors = [r.event for r in log.read(types=["source.error"]) if isinstance(r.event, SourceErrorEvent)]
        assert [(e.payload.code, e.payload.path) for e in errors] == [("remote-base", "app/")]


def test_without_a_renderer_a_kustomization_says_what_to_install(repo: GitRepo, tmp_path: Path) -> None:
    write(repo, BASE)
    repo.commit("base")
    with EventLog(tmp_path / "g.db") as log:
        config = GitSourceConfig(repo=str(repo.path), kustomize={"command": "no-such-kustomize build"})
        GitIngest(log, config).run()
        errors = [r.event for r in log.read(types=["source.error"]) if isinstance(r.event, SourceErrorEvent)]
        assert {e.payload.code for e in errors} == {"kustomize-unavailable"}
        assert "no-such-kustomize" in errors[0].payload.message


def test_excluding_the_kustomization_file_reads_the_plain_files(repo: GitRepo, tmp_path: Path) -> None:
    write(repo, {"app/kustomization.yaml": "resources: [a.yaml]\nnamePrefix: x-\n",
                 "app/a.yaml": yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})})
    repo.commit("one")
    with EventLog(tmp_path / "g.db") as log:
        GitIngest(log, GitSourceConfig(repo=str(repo.path), exclude=["kustomization.yaml"])).run()
        assert list(desired(log)) == ["ConfigMap/default/a"]
