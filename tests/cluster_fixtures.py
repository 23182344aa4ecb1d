"""Fixtures for tests that need a Kubernetes API server: a real one, never a mock.

Where the cluster comes from, in order:
1. ``GITOPS_TEST_KUBECONFIG`` — the user's own cluster (kind, say); its audit log path may
   be given as ``GITOPS_TEST_AUDIT_LOG``. Tests that need the local users alice and bob skip.
2. the local control plane of ``scripts/local-cluster``: used when it is running, and
   started (then stopped at the end) when its binaries are already built, or in CI.

Outside CI, when neither can be had, cluster tests skip with one line saying how to
enable them. In CI (``CI=true``) that is a failure: CI must run them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykube
import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "local-cluster"
HOW = ("no Kubernetes API for cluster tests: run `scripts/local-cluster up` "
       "(or set GITOPS_TEST_KUBECONFIG to your own cluster) to enable them")


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    audit_log: Path | None
    local: bool  # the project's own control plane, with users admin, alice and bob
    etcd_url: str | None = None
    audit_webhook: dict[str, str] | None = None  # where the API server posts its audit events (a receiver's settings)

    def client(self, user: str | None = None) -> Any:
        config = pykube.KubeConfig.from_file(str(self.kubeconfig),
                                             **({"current_context": user} if user else {}))
        return pykube.HTTPClient(config)

    def _local_only(self, what: str) -> None:
        if not self.local:
            pytest.skip(f"{what} needs the local control plane")

    def stop_apiserver(self) -> None:
        self._local_only("stopping the API server")
        subprocess.run([str(SCRIPT), "stop-apiserver"], check=True, capture_output=True)

    def start_apiserver(self) -> None:
        self._local_only("starting the API server")
        subprocess.run([str(SCRIPT), "start-apiserver"], check=True, capture_output=True)

    def compact_etcd(self) -> int:
        """Compact etcd's history up to now, as the API server does every few minutes;
        returns the revision compacted to. Resource versions before it are gone."""
        self._local_only("compacting etcd")
        assert self.etcd_url is not None
        rev = int(requests.post(f"{self.etcd_url}/v3/kv/range", json={"key": "AA=="}, timeout=10)
                  .json()["header"]["revision"])
        r = requests.post(f"{self.etcd_url}/v3/kv/compaction", json={"revision": str(rev), "physical": True},
                          timeout=30)
        r.raise_for_status()
        return rev


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(why: str, how: str, what: str) -> None:
    """Tests of ``what`` cannot run (``why``): a failure in CI, elsewhere a skip saying ``how`` to enable them."""
    if _in_ci():
        pytest.fail(f"CI=true but {why}: in CI {what} must run", pytrace=False)
    pytest.skip(f"{why}; {how}")


def _unavailable(why: str) -> None:
    unavailable(why, HOW, "cluster tests")


def _local_state() -> dict[str, Any] | None:
    res = subprocess.run([str(SCRIPT), "status"], capture_output=True, text=True)
    if res.returncode != 0:
        return None
    state_dir = Path(os.environ.get("GITOPS_CLUSTER_STATE", REPO / ".local-cluster"))
    return json.loads((state_dir / "state.json").read_text())  # type: ignore[no-any-return]


def _binaries_cached() -> bool:
    res = subprocess.run(
        ["python3", "-c", "import runpy,sys; m=runpy.run_path(sys.argv[1]); "
                          "print(all((m['CACHE']/b).is_file() for b in m['BINARIES']))", str(SCRIPT)],
        capture_output=True, text=True,
    )
    return res.stdout.strip() == "True"


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    own = os.environ.get("GITOPS_TEST_KUBECONFIG")
    started = False
    if own:
        audit = os.environ.get("GITOPS_TEST_AUDIT_LOG")
        c = Cluster(Path(own), Path(audit) if audit else None, local=False)
    else:
        state = _local_state()
        if state is None:
            if not (_in_ci() or _binaries_cached()):
                _unavailable("the local control plane is not running and its binaries are not built")
            res = subprocess.run([str(SCRIPT), "up"], capture_output=True, text=True)
            if res.returncode != 0:
                _unavailable(f"`scripts/local-cluster up` failed: {res.stderr.strip().splitlines()[-1:]}")
            started, state = True, _local_state()
            assert state is not None
        c = Cluster(Path(state["kubeconfig"]), Path(state["audit_log"]), local=True,
                    etcd_url=state.get("etcd_url"), audit_webhook=state.get("audit_webhook"))
    try:
        c.client().version  # noqa: B018 - reachability check
    except Exception as e:  # noqa: BLE001 - any failure means the API cannot be used
        _unavailable(f"the Kubernetes API at {c.kubeconfig} does not answer ({type(e).__name__})")
    yield c
    if started:
        subprocess.run([str(SCRIPT), "down"], capture_output=True)


@pytest.fixture(scope="session")
def admin_api(cluster: Cluster) -> Any:
    return cluster.client("admin" if cluster.local else None)


def _user_api(cluster: Cluster, user: str) -> Any:
    if not cluster.local:
        pytest.skip(f"needs the local control plane's user {user!r}")
    return cluster.client(user)


@pytest.fixture(scope="session")
def alice_api(cluster: Cluster) -> Any:
    return _user_api(cluster, "alice")


@pytest.fixture(scope="session")
def bob_api(cluster: Cluster) -> Any:
    return _user_api(cluster, "bob")


def _fresh_namespace(admin_api: Any) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    pykube.Namespace(admin_api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}).create()
    yield name
    pykube.Namespace(admin_api, {"metadata": {"name": name}}).delete()


@pytest.fixture
def namespace(admin_api: Any) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (deletion is not waited for)."""
    yield from _fresh_namespace(admin_api)


@pytest.fixture
def other_namespace(admin_api: Any) -> Iterator[str]:
    """A second one, for a test that needs a namespace besides its own."""
    yield from _fresh_namespace(admin_api)


def wait_until(predicate: Any, *, timeout: float = 30.0, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def kubectl(cluster: Cluster, user: str, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real kubectl, as ``user`` (a context of the local control plane): how people
    change a cluster, so how tests change it in their name."""
    if not cluster.local:
        pytest.skip(f"kubectl as {user!r} needs the local control plane's users")
    exe = shutil.which("kubectl")
    if exe is None:
        _unavailable("kubectl is not on PATH")
    assert exe is not None
    res = subprocess.run([exe, "--kubeconfig", str(cluster.kubeconfig), "--context", user, *args],
                         input=stdin, capture_output=True, text=True, timeout=300)
    if check and res.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} as {user} failed: {res.stderr.strip()}")
    return res


def grant(cluster: Cluster, namespace: str, *users: str) -> None:
    """Let ``users`` edit ``namespace`` (the built-in ``edit`` role), and wait until RBAC
    lets each of them create there."""
    for user in users:
        kubectl(cluster, "admin", "-n", namespace, "create", "rolebinding", f"{user}-edit", "--clusterrole=edit",
                f"--user={user}")
        wait_until(lambda u=user: kubectl(cluster, u, "-n", namespace, "auth", "can-i", "create", "configmaps",
                                          check=False).stdout.strip() == "yes", what=f"{user}'s rights")


def audit_records(cluster: Cluster, containing: str) -> list[dict[str, Any]]:
    """The completed requests of the API server's audit log whose line holds ``containing``
    (a namespace, say), its rotated files included: the local API server rotates it every
    100 MB, so a test's records may have moved to one."""
    assert cluster.audit_log is not None
    log = cluster.audit_log
    files = [*sorted(log.parent.glob(f"{log.stem}-*{log.suffix}")), log]
    return [r for f in files if f.exists() for line in f.read_text().splitlines() if containing in line
            for r in [json.loads(line)] if r.get("stage") == "ResponseComplete"]
