"""Signed commits, made for real with ssh-keygen and gpg, read back as signer keys."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gitops.events import GitCommit
from gitops.sources.git import GitIngest, GitSourceConfig
from gitops.store import EventLog
from tests.gitrepo import GitRepo, configmap


def _commit_event(log: EventLog, sha: str) -> GitCommit:
    for r in log.read(types=["git.commit"]):
        if r.event.revision == sha and isinstance(r.event, GitCommit):
            return r.event
    raise AssertionError(f"no git.commit for {sha}")


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_an_ssh_signed_commit_names_its_key(tmp_path: Path, log: EventLog) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", f"{key}.pub"], capture_output=True, text=True,
                                 check=True).stdout.split()[1]
    repo = GitRepo(tmp_path / "repo")
    repo.git("config", "gpg.format", "ssh")
    repo.git("config", "user.signingkey", f"{key}.pub")
    repo.write("a.yaml", configmap("a"))
    repo.commit("unsigned")
    repo.write("a.yaml", configmap("a", k="2"))
    repo.git("commit", "-q", "-S", "-am", "signed")
    signed = repo.head()
    GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
    ev = _commit_event(log, signed)
    assert (ev.payload.signed, ev.payload.signer_key) == (True, fingerprint)
    first = next(r.event for r in log.read(types=["git.commit"]))
    assert isinstance(first, GitCommit)
    assert (first.payload.signed, first.payload.signer_key) == (False, None)


@pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg")
def test_a_gpg_signed_commit_names_its_key(tmp_path: Path, log: EventLog) -> None:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--quiet", "--passphrase", "", "--quick-gen-key", "Signer <signer@example.com>",
                    "ed25519", "sign", "never"], check=True, env=env, capture_output=True)
    listing = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], capture_output=True,
                             text=True, check=True, env=env).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    repo = GitRepo(tmp_path / "repo")
    repo.git("config", "user.signingkey", fingerprint)
    repo.write("a.yaml", configmap("a"))
    repo.git("add", "-A")
    repo.git("commit", "-q", "-S", "-m", "signed with gpg", env={"GNUPGHOME": str(home)})
    GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
    ev = _commit_event(log, repo.head())
    assert ev.payload.signed
    assert ev.payload.signer_key == fingerprint.upper()


def test_the_one_private_gitpython_call_still_parses(tmp_path: Path) -> None:
    """GitRepository._commit_info hands raw commit bytes to GitPython's private
    ``Commit._deserialize`` (its public path costs a round trip per commit). If a GitPython
    release changes that, this fails first, naming the call."""
    import git

    from gitops.sources.git.repository import GitRepository

    assert callable(getattr(git.Commit, "_deserialize", None)), "GitPython no longer has Commit._deserialize"
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a"))
    first = repo.commit("first\n\nwith a body", author="Ann Author <ann@example.com>")
    repo.write("a.yaml", configmap("a", k="2"))
    second = repo.commit("second", author="Bo Other <bo@example.com>", committer="Cy Commit <cy@example.com>")
    reader = GitRepository(str(repo.path))
    try:
        raw = reader.read_blobs([second])[second]
        info = reader._commit_info(second, raw)  # the function under test
    finally:
        reader.close()
    assert (info.sha, info.parents, info.message) == (second, (first,), "second\n")
    assert (info.author.name, info.author.email, info.author.time) == ("Bo Other", "bo@example.com",
                                                                       repo.commit_time(second))
    assert (info.committer.name, info.committer.email) == ("Cy Commit", "cy@example.com")
    assert (info.signed, info.signer_key) == (False, None)
