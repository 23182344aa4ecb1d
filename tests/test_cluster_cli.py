"""What a user types to read a cluster, refused in one line (exit 2) before anything is
recorded or any request is made: kubeconfig, audit log and kind problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import gitops

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: admin
  user: {token: not-a-real-token}
contexts:
- name: admin
  context: {cluster: local, user: admin}
current-context: admin
"""


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return path


@pytest.mark.parametrize(("content", "why"), [
    ("clusters: [unclosed\n", "invalid YAML at line 2"),
    (b"\x00\x01\xff\xfe binary", "not a text file"),
    ("{}\n", "it names no clusters"),
    ("- a list\n", "not a kubeconfig"),
    (KUBECONFIG.replace("current-context: admin\n", ""), "no context given and no current-context set"),
    (KUBECONFIG.replace("cluster: {cluster: local", "cluster: {cluster: elsewhere").replace(
        "context: {cluster: local", "context: {cluster: elsewhere"), "names cluster 'elsewhere'"),
])
@pytest.mark.parametrize("command", [("ingest", "cluster"), ("watch",)])
def test_a_bad_kubeconfig_is_one_line_and_exit_2(tmp_path: Path, content: str | bytes, why: str,
                                                 command: tuple[str, ...]) -> None:
    path = tmp_path / "kubeconfig"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    db = tmp_path / "g.db"
    res = gitops(*command, "--kubeconfig", str(path), db=db)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith(f"error: cannot use kubeconfig {path}: ") and why in res.stderr
    assert res.stderr.count("\n") == 1
    assert not db.exists()  # nothing was created, nothing recorded


@pytest.mark.parametrize("command", [("ingest", "cluster"), ("watch",)])
def test_a_context_the_kubeconfig_lacks_is_named(tmp_path: Path, kubeconfig: Path, command: tuple[str, ...]) -> None:
    res = gitops(*command, "--kubeconfig", str(kubeconfig), "--context", "nosuch", db=tmp_path / "g.db")
    assert (res.returncode, res.stderr) == (2, f"error: cannot use kubeconfig {kubeconfig}: no context 'nosuch' "
                                               "(it has: admin)\n")


@pytest.mark.parametrize(("where", "flags", "message"), [
    ("missing.log", (), "does not exist (if the API server will create it, say so: --audit-log-later"),
    ("folder", (), "is a directory"),
    ("no-such-folder/audit.log", ("--audit-log-later",), "cannot appear: its folder"),
])
@pytest.mark.parametrize("command", [("ingest", "cluster"), ("watch",)])
def test_an_audit_log_that_cannot_be_read_is_refused(tmp_path: Path, kubeconfig: Path, where: str,
                                                     flags: tuple[str, ...], message: str,
                                                     command: tuple[str, ...]) -> None:
    (tmp_path / "folder").mkdir()
    db = tmp_path / "g.db"
    res = gitops(*command, "--kubeconfig", str(kubeconfig), "--audit-log", str(tmp_path / where), *flags, db=db)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and res.stderr.count("\n") == 1
    assert not db.exists()


@pytest.mark.parametrize("kind", ["", ".apps", "Deployment..apps", "apps/v1/Deployment", "Deployment.Apps"])
@pytest.mark.parametrize("command", [("ingest", "cluster"), ("watch",)])
def test_a_kind_that_is_no_kind_is_a_usage_error(tmp_path: Path, kubeconfig: Path, kind: str,
                                                 command: tuple[str, ...]) -> None:
    db = tmp_path / "g.db"
    res = gitops(*command, "--kubeconfig", str(kubeconfig), "--kind", kind, db=db)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: cluster source: kinds: ") and res.stderr.count("\n") == 1
    assert not db.exists()
