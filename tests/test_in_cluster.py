"""Running as a pod does: the package built as a wheel and installed into a clean virtual
environment, ``gitops run`` started with no kubeconfig at all, only what a pod is given
(``KUBERNETES_SERVICE_HOST``/``PORT`` and a service account's token, CA and namespace),
here pointed at the local control plane's files. No container builder runs on these
machines; this is what of the image can be tested without one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from gitops.sources.cluster.kubeconfig import TokenFile
from tests.cluster_fixtures import Cluster, kubectl, wait_until
from tests.gitrepo import GitRepo, configmap
from tests.test_rbac import _gitops, _service_account_kubeconfig

REPO = Path(__file__).resolve().parent.parent


def test_a_rotated_token_file_is_read_again(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    auth = TokenFile(token, every=0)
    assert auth.token() == "first"
    replacement = tmp_path / "token.new"
    replacement.write_text("second\n")
    replacement.replace(token)  # as the kubelet swaps a projected token: a new file, atomically
    assert auth.token() == "second"
    token.unlink()
    assert auth.token() == "second"  # gone for a moment: the last token is sent, the server judges it


def _pod_files(cluster: Cluster, namespace: str, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A service account's token, the cluster's CA and the namespace, laid out as a pod's
    /var/run/secrets/kubernetes.io/serviceaccount, and the environment a pod has."""
    sa_config = yaml.safe_load(_service_account_kubeconfig(cluster, namespace, "gitops",
                                                           tmp_path / "sa.kubeconfig").read_text())
    d = tmp_path / "serviceaccount"
    d.mkdir()
    (d / "token").write_text(sa_config["users"][0]["user"]["token"])
    shutil.copy(sa_config["clusters"][0]["cluster"]["certificate-authority"], d / "ca.crt")
    (d / "namespace").write_text(namespace)
    server = urlsplit(sa_config["clusters"][0]["cluster"]["server"])
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "GITOPS_AUDIT_LOG", "VIRTUAL_ENV")}
    env.update({"HOME": str(home), "KUBERNETES_SERVICE_HOST": server.hostname or "",
                "KUBERNETES_SERVICE_PORT": str(server.port), "GITOPS_SERVICE_ACCOUNT_DIR": str(d),
                "PYTHONUNBUFFERED": "1"})
    return d, env


def _installed_wheel(tmp_path: Path) -> Path:
    """The project built as a wheel and installed in a new venv: its ``gitops`` executable."""
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    wheel = next(dist.glob("gitops-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], capture_output=True,
                               text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr
    return venv / "bin" / "gitops"


@pytest.mark.cluster
def test_the_wheel_installs_in_a_clean_venv_and_runs_with_the_in_cluster_config(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", namespace, k="1"))
    repo.commit("a")
    db = tmp_path / "gitops.db"
    config = tmp_path / "config.yaml"
    settings = {"git": {"repo": str(repo.path)},
                "cluster": {"kubeconfig": str(cluster.kubeconfig), "context": "admin", "namespaces": [namespace]},
                "reconcile": {"instance": namespace, "debounce": 0.2, "metrics_address": "127.0.0.1:0",
                              "lease": {"namespace": namespace, "duration": 3, "renew": 0.5}}}
    config.write_text(yaml.safe_dump(settings))
    assert _gitops("ingest", "git", config=config, db=db).returncode == 0
    rbac = _gitops("deploy", "rbac", "--service-account", f"{namespace}/gitops", config=config, db=db)
    assert rbac.returncode == 0, rbac.stderr
    kubectl(cluster, "admin", "apply", "-f", "-", stdin=rbac.stdout)
    _, env = _pod_files(cluster, namespace, tmp_path)
    settings["cluster"] = {"namespaces": [namespace]}  # no kubeconfig: the in-cluster config
    config.write_text(yaml.safe_dump(settings))

    exe = _installed_wheel(tmp_path)
    version = subprocess.run([str(exe), "version", "-o", "json"], capture_output=True, text=True, env=env, timeout=60)
    server = yaml.safe_load(version.stdout)["server"]
    assert server.get("version"), version.stdout  # the API server answered, with no kubeconfig
    assert server["url"] == f"https://{env['KUBERNETES_SERVICE_HOST']}:{env['KUBERNETES_SERVICE_PORT']}"

    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(exe), "--db", str(db), "--config", str(config), "run"], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        wait_until(lambda: "Ctrl-C or SIGTERM stops" in log.read_text() or proc.poll() is not None, timeout=90,
                   what="gitops run from the wheel to start")
        assert proc.poll() is None, log.read_text()
        url = next(w for w in log.read_text().split() if w.startswith("http://"))

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=5) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_until(ready, timeout=90, what="/readyz once the first pass is done")
        got = kubectl(cluster, "admin", "-n", namespace, "get", "configmap", "a", check=False)
        assert got.returncode == 0, got.stderr + log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0, log.read_text()
    assert "kind-forbidden" not in log.read_text()
    # a token the server refuses is one line, not a traceback
    (Path(env["GITOPS_SERVICE_ACCOUNT_DIR"]) / "token").write_text("not-a-token")
    refused = subprocess.run([str(exe), "--db", str(db), "--config", str(config), "ingest", "cluster"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "401" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
