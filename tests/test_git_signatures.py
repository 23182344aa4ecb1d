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


def test_a_commits_fields_are_what_git_says(tmp_path: Path) -> None:
    """The history's commits, as GitPython's public API reads them: sha, parents, message,
    author and committer with their times, no signature."""
    from gitops.sources.git.repository import GitRepository

    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a"))
    first = repo.commit("first\n\nwith a body", author="Ann Author <ann@example.com>")
    repo.write("a.yaml", configmap("a", k="2"))
    second = repo.commit("second", author="Bo Other <bo@example.com>", committer="Cy Commit <cy@example.com>")
    reader = GitRepository(str(repo.path))
    try:
        (info, changes), = list(reader.history(first, second))
    finally:
        reader.close()
    assert [c.path for c in changes] == ["a.yaml"]
    assert (info.sha, info.parents, info.message) == (second, (first,), "second\n")
    assert (info.author.name, info.author.email, info.author.time) == ("Bo Other", "bo@example.com",
                                                                       repo.commit_time(second))
    assert (info.committer.name, info.committer.email) == ("Cy Commit", "cy@example.com")
    assert (info.signed, info.signer_key) == (False, None)


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_the_report_gives_each_changes_approval_and_lists_what_falls_short_of_the_policy(tmp_path: Path) -> None:
    """Signed by an allowed key, signed by another, reviewed (trailers), a merge of Fay's
    branch, and a plain commit: under require: signed and require: reviewed, the report's
    exceptions are the ones Git itself shows (git log, git verify-commit)."""
    import json

    from tests.cli_helpers import gitops

    keys = {}
    for who in ("allowed", "other"):
        key = tmp_path / f"id_{who}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        keys[who] = key
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"ann@example.com {(keys['allowed'].with_suffix('.pub')).read_text()}")
    repo = GitRepo(tmp_path / "repo")
    repo.git("config", "gpg.format", "ssh")

    def signed(key: Path, message: str) -> str:
        repo.git("config", "user.signingkey", f"{key}.pub")
        repo.git("commit", "-q", "-S", "--allow-empty", "-m", message)
        return repo.head()

    repo.write("a.yaml", configmap("a"))
    plain = repo.commit("plain")
    good = signed(keys["allowed"], "signed by the allowed key")
    bad = signed(keys["other"], "signed by another key")
    reviewed = repo.commit("reviewed\n\nReviewed-by: Rita Reviewer <rita@example.com>\n"
                           "Co-authored-by: Carl <carl@example.com>")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("b.yaml", configmap("b"))
    repo.commit("feature work", author="Fay Feature <fay@example.com>")
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    merge = repo.head()
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
    # what git itself says of the signatures, under the same allowed-signers file
    for sha, ok in ((good, True), (bad, False), (plain, False)):
        res = subprocess.run(["git", "-C", str(repo.path), "-c", f"gpg.ssh.allowedSignersFile={signers}",
                              "verify-commit", sha], capture_output=True, text=True)
        assert (res.returncode == 0) == ok, (sha, res.stderr)

    def report(require: str) -> dict[str, dict[str, object]]:
        cfg = tmp_path / f"{require}.yaml"
        cfg.write_text(f"report:\n  allowed_signers_file: {signers}\n  require: {require}\n")
        res = gitops("--config", str(cfg), "report", "--since", "2000-01-01", "--format", "json", db=db)
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["summary"]["require"] == require
        return {g["commit"]: g for g in doc["git_changes"]} | {"summary": doc["summary"]}

    signed_policy = report("signed")
    approvals = {sha: signed_policy[sha]["approval"] for sha in (plain, good, bad, reviewed, merge)}
    assert approvals[good]["signer_allowed"] is True and approvals[bad]["signer_allowed"] is False  # type: ignore[index]
    assert approvals[reviewed]["reviewed_by"] == ["Rita Reviewer <rita@example.com>"]  # type: ignore[index]
    assert approvals[reviewed]["co_authored_by"] == ["Carl <carl@example.com>"]  # type: ignore[index]
    assert approvals[merge]["merged_authors"] == ["Fay Feature <fay@example.com>"]  # type: ignore[index]
    assert {sha for sha, a in approvals.items() if a["exception"]} == {plain, bad, reviewed, merge}  # type: ignore[index]
    assert signed_policy["summary"]["approval_exceptions"] == 4
    reviewed_policy = report("reviewed")
    assert {sha for sha in (plain, good, bad, reviewed, merge)
            if reviewed_policy[sha]["approval"]["exception"]} == {plain, good, bad}  # type: ignore[index]
