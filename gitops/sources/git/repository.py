"""The git adapter: the only module that imports GitPython.

It answers what the ingest needs and nothing more: where the branch head is, the
first-parent history between two commits with each commit's changed files (one
streamed ``git log`` process), the blobs (through GitPython's long-lived
``git cat-file --batch`` process), a commit's whole tree, ancestry, and for remote
repositories a cached clone that is fetched on each pass.

Credentials: remote URLs may carry ``user:token@``; they are used to fetch and never
returned — ``display_url`` strips them, and only it is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import git
from git.exc import BadName, GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from gitops.model.errors import ConfigError, GitSourceError
from gitops.sources.git.commits import Change, CommitInfo, Person, TreeEntry, raw_changes
from gitops.sources.git.signature import signer_key

__all__ = ["Change", "CommitInfo", "GitRepository", "Person", "TreeEntry", "display_url", "is_remote"]

_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")
_SUBMODULE_MODE = "160000"
_BATCH_CHUNK = 256


def is_remote(location: str) -> bool:
    """URLs (``https://``, ``ssh://``, ``file://``, ``git@host:path``) are cloned and fetched;
    plain paths are read in place."""
    return "://" in location or bool(_SCP_LIKE.match(location))


def display_url(location: str) -> str:
    """``location`` with any ``user:password@`` removed: the only form that is recorded."""
    if "://" not in location:
        return location
    parts = urlsplit(location)
    if parts.username is None and parts.password is None:
        return location
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _person(actor: git.Actor, seconds: int) -> Person:
    return Person(actor.name or "", actor.email or "", datetime.fromtimestamp(seconds, UTC))  # kept in UTC


class GitRepository:
    """A repository opened for reading, local or cloned into ``cache_dir``."""

    def __init__(self, location: str, *, cache_dir: Path | None = None) -> None:
        self.location = location
        self.url = display_url(location)
        try:
            if is_remote(location):
                self.repo = self._clone(location, cache_dir or Path.home() / ".cache" / "gitops" / "repos")
            else:
                self.repo = git.Repo(location)
                # one repository, one name: the absolute path of its work tree (or git dir)
                self.url = str(Path(self.repo.working_tree_dir or self.repo.git_dir).resolve())
        except NoSuchPathError:  # what the user typed (or configured) names nothing: a usage error, exit 2
            raise ConfigError(f"repository {self.url} does not exist") from None
        except InvalidGitRepositoryError:
            raise ConfigError(f"{self.url} is not a git repository") from None
        except GitCommandError as e:
            raise GitSourceError(f"cannot clone {self.url}: {_git_error(e)}") from None

    def _clone(self, location: str, cache_dir: Path) -> git.Repo:
        target = cache_dir / hashlib.sha256(self.url.encode()).hexdigest()[:16]
        if (target / "HEAD").exists():
            return git.Repo(target)
        cache_dir.mkdir(parents=True, exist_ok=True)
        return git.Repo.clone_from(location, target, bare=True, env=_git_env())

    _batch: Any = None

    @property
    def remote(self) -> bool:
        return is_remote(self.location)

    @property
    def git_dir(self) -> Path:
        return Path(self.repo.git_dir)

    def close(self) -> None:
        if self._batch is not None:
            self._batch.proc.stdin.close()
            self._batch.proc.wait()
            self._batch = None
        self.repo.close()

    # ------------------------------------------------------------------ refs

    def fetch(self) -> None:
        """Bring a remote repository's branches up to date (a no-op for local ones)."""
        if not self.remote:
            return
        try:
            self.repo.git.fetch(self.location, "+refs/heads/*:refs/heads/*", "--prune", "--force", env=_git_env())
        except GitCommandError as e:
            raise GitSourceError(f"cannot fetch {self.url}: {_git_error(e)}") from None

    def default_branch(self) -> str:
        try:
            ref = self.repo.git.symbolic_ref("HEAD")
        except GitCommandError:
            raise GitSourceError(f"{self.url} has no default branch (HEAD is detached); name one") from None
        return str(ref).removeprefix("refs/heads/")

    def head(self, branch: str) -> str | None:
        """The commit ``branch`` points at, or None when the branch has no commits."""
        try:
            return str(self.repo.git.rev_parse("--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"))
        except GitCommandError:
            if branch not in {h.name for h in self.repo.heads} and self.repo.heads:
                raise GitSourceError(f"{self.url} has no branch {branch!r}") from None
            return None

    def exists(self, sha: str) -> bool:
        try:
            self.repo.commit(sha)
        except (BadName, ValueError):
            return False
        return True

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return bool(self.repo.is_ancestor(self.repo.commit(ancestor), self.repo.commit(descendant)))

    def merge_base(self, a: str, b: str) -> str | None:
        try:
            bases = self.repo.merge_base(a, b)
        except GitCommandError:
            return None
        return bases[0].hexsha if bases else None

    # ------------------------------------------------------------------ writing (rollback)

    def is_dirty(self) -> bool:
        """Whether a local working tree has changes not committed (untracked files aside)."""
        return False if self.repo.bare else bool(self.repo.is_dirty(untracked_files=False))

    def compose(self, base: str, source: str, paths: Sequence[str]) -> str:
        """The tree of ``base`` with ``paths`` as ``source`` has them (files ``source`` lacks
        under them removed); written to the object store, never to a working tree or the
        repository's index. Returns the tree's sha."""
        with tempfile.TemporaryDirectory(prefix="gitops-index-") as tmp:
            # an index of its own, and an empty work tree of its own (git wants one, even for
            # a bare clone, though nothing here reads or writes it)
            (Path(tmp) / "work").mkdir()
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), "GIT_WORK_TREE": str(Path(tmp) / "work")}
            g = self.repo.git
            g.read_tree(base, env=env)
            for p in paths:
                if p == ".":
                    g.read_tree(source, env=env)
                    continue
                g.rm("-r", "--cached", "-q", "--ignore-unmatch", "--", p, env=env)
                listing = g.ls_tree(source, "--", p)
                if not listing:
                    continue
                mode, kind, sha = listing.split("\t", 1)[0].split(" ")
                if kind == "tree":
                    g.read_tree(f"--prefix={p}/", sha, env=env)
                else:
                    g.update_index("--add", "--cacheinfo", f"{mode},{sha},{p}", env=env)
            return str(g.write_tree(env=env))

    def tree_of(self, rev: str) -> str:
        return str(self.repo.git.rev_parse(f"{rev}^{{tree}}"))

    def changed_files(self, a: str, b: str) -> list[tuple[str, str]]:
        """(status, path) of the files that differ between two trees or commits."""
        out = self.repo.git.diff_tree("-r", "--name-status", "--no-renames", a, b)
        return [(line.split("\t", 1)[0], line.split("\t", 1)[1]) for line in out.splitlines() if "\t" in line]

    def commit_tree(self, tree: str, parent: str, message: str, author: tuple[str, str] | None) -> str:
        """A new commit of ``tree`` on ``parent``; ``author`` (name, e-mail) or git's own
        configuration names its author and committer."""
        env = {}
        if author is not None:
            env = {"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1],
                   "GIT_COMMITTER_NAME": author[0], "GIT_COMMITTER_EMAIL": author[1]}
        try:
            return str(self.repo.git.commit_tree(tree, "-p", parent, "-m", message, env=env))
        except GitCommandError as e:
            raise GitSourceError(f"cannot commit in {self.url}: {_git_error(e)}") from None

    def identity(self) -> tuple[str, str] | None:
        """(name, e-mail) from git's configuration, if set."""
        reader = self.repo.config_reader()
        try:
            return str(reader.get_value("user", "name")), str(reader.get_value("user", "email"))
        except Exception:  # noqa: BLE001 - configparser's NoOptionError/NoSectionError: not configured
            return None

    def advance(self, branch: str, new: str, old: str) -> None:
        """Move ``branch`` from ``old`` to its descendant ``new`` (never a rewrite: it fails if
        the branch moved meanwhile). A checked-out branch moves by a fast-forward merge, which
        brings the working tree along."""
        try:
            checked_out = None if self.repo.bare or self.repo.head.is_detached else self.repo.active_branch.name
        except TypeError:
            checked_out = None
        try:
            if checked_out == branch:
                if self.head(branch) != old:
                    raise GitSourceError(f"{branch} moved meanwhile; run the command again")
                self.repo.git.merge("--ff-only", "-q", new)
            else:
                self.repo.git.update_ref(f"refs/heads/{branch}", new, old)
        except GitCommandError as e:
            raise GitSourceError(f"cannot move {branch} in {self.url}: {_git_error(e)}") from None

    def push(self, branch: str, sha: str) -> None:
        """Push ``sha`` to the remote's ``branch`` (no force: a branch that moved there fails)."""
        target = self.location if self.remote else "origin"
        try:
            self.repo.git.push(target, f"{sha}:refs/heads/{branch}", env=_git_env())
        except GitCommandError as e:
            raise GitSourceError(f"cannot push to {branch}: {_git_error(e)}") from None

    # ------------------------------------------------------------------ history

    def count(self, since: str | None, head: str) -> int:
        rng = f"{since}..{head}" if since else head
        return int(self.repo.git.rev_list("--first-parent", "--count", rng))

    def history(self, since: str | None, head: str) -> Iterator[tuple[CommitInfo, list[Change]]]:
        """First-parent commits after ``since`` up to ``head``, oldest first, each with the
        files it changed against its first parent. One ``git log`` process streams them."""
        rng = f"{since}..{head}" if since else head
        proc = self.repo.git.log("--first-parent", "-m", "--reverse", "--raw", "--no-renames", "--no-abbrev",
                                 "-z", "--format=%x1e%H", rng, as_process=True)
        assert proc.stdout is not None
        buf = b""
        while chunk := proc.stdout.read(1 << 16):
            *complete, buf = (buf + chunk).split(b"\x1e")
            for record in complete:
                if record:
                    sha, changes = raw_changes(record)
                    yield self._commit_info(sha), changes
        if buf:
            sha, changes = raw_changes(buf)
            yield self._commit_info(sha), changes
        try:
            proc.wait()
        except GitCommandError as e:
            raise GitSourceError(f"cannot read the history of {self.url}: {_git_error(e)}") from None

    def _commit_info(self, sha: str) -> CommitInfo:
        """A commit's fields, read by GitPython's public API: a ``Commit`` reads its object
        the first time a field is asked for, through GitPython's own long-lived ``git
        cat-file`` process (one round trip per commit). Handing bytes read in batches to
        GitPython's private ``Commit._deserialize`` made a back-fill about 8% faster
        (scripts/bench_git_ingest.py: 2.12-2.21x against 2.32-2.40x of its baseline), which is
        not worth a private call."""
        c = git.Commit(self.repo, bytes.fromhex(sha))
        sig = c.gpgsig or None
        return CommitInfo(
            sha=sha,
            parents=tuple(p.hexsha for p in c.parents),
            author=_person(c.author, c.authored_date),
            committer=_person(c.committer, c.committed_date),
            message=c.message if isinstance(c.message, str) else c.message.decode("utf-8", "replace"),
            signed=sig is not None,
            signer_key=signer_key(sig) if sig else None,
        )

    def tree(self, sha: str) -> list[TreeEntry]:
        """Every file of a commit's tree (submodules left out)."""
        out = self.repo.git.ls_tree("-r", "-z", "--full-tree", sha)
        entries = []
        for item in out.split("\0"):
            if not item:
                continue
            meta, _, path = item.partition("\t")
            mode, _kind, blob = meta.split(" ")
            if mode != _SUBMODULE_MODE:
                entries.append(TreeEntry(path, blob, mode))
        return entries

    def author_of(self, sha: str) -> Person | None:
        """Who authored commit ``sha`` (a merge's other parent), or None when it cannot be read."""
        try:
            c = self.repo.commit(sha)
        except (ValueError, BadName, GitCommandError):
            return None
        return _person(c.author, c.authored_date)

    def blobs_at(self, sha: str, paths: Sequence[str]) -> dict[str, str]:
        """path -> blob of the files ``paths`` in a commit's tree (those it holds)."""
        if not paths:
            return {}
        out = self.repo.git.ls_tree("-z", "--full-tree", sha, "--", *sorted(set(paths)))
        found = {}
        for item in out.split("\0"):
            if item:
                meta, _, path = item.partition("\t")
                found[path] = meta.split(" ")[2]
        return found

    def has_path(self, sha: str, path: str) -> bool:
        """Whether the commit's tree holds ``path`` (a file or a directory)."""
        return bool(self.repo.git.ls_tree(sha, "--", path))

    def path_in_history(self, head: str, path: str) -> bool:
        """Whether any commit reachable from ``head`` touched ``path``."""
        return bool(self.repo.git.log("-1", "--format=%H", head, "--", path))

    def read_blob(self, blob: str) -> bytes:
        """One blob's bytes, through the same long-lived process as ``read_blobs``."""
        return self.read_blobs([blob])[blob]

    def read_blobs(self, blobs: Sequence[str]) -> dict[str, bytes]:
        """Many blobs at once through one long-lived ``git cat-file --batch`` process (started
        by GitPython), asking for a chunk of them before reading the answers, so the cost is
        one round trip per chunk rather than one per blob."""
        if self._batch is None or self._batch.proc.poll() is not None:
            self._batch = self.repo.git.cat_file("--batch", as_process=True, istream=subprocess.PIPE)
        proc = self._batch.proc
        assert proc.stdin is not None and proc.stdout is not None
        out: dict[str, bytes] = {}
        unique = list(dict.fromkeys(blobs))
        for i in range(0, len(unique), _BATCH_CHUNK):  # bounded: the pipes must not both fill up
            chunk = unique[i : i + _BATCH_CHUNK]
            proc.stdin.write("".join(f"{b}\n" for b in chunk).encode())
            proc.stdin.flush()
            for blob in chunk:
                header = proc.stdout.readline().split()
                if len(header) != 3:
                    raise GitSourceError(f"cannot read object {blob} of {self.url}")
                data = proc.stdout.read(int(header[2]))
                proc.stdout.read(1)  # the newline after each object
                out[blob] = data
        return out


def _git_env() -> dict[str, str]:
    """Credentials come from the environment: the ssh agent, git's credential helpers, or a
    token in GITOPS_GIT_TOKEN (sent as an HTTP header through git's environment config, so
    it appears in no command line and no URL). Never prompt."""
    env = {"GIT_TERMINAL_PROMPT": "0"}
    token = os.environ.get("GITOPS_GIT_TOKEN")
    if token:
        user = os.environ.get("GITOPS_GIT_USERNAME", "git")
        basic = base64.b64encode(f"{user}:{token}".encode()).decode()
        env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"})
    return env


def _git_error(e: GitCommandError) -> str:
    """git's own reason, one line: its last ``fatal:``/``error:`` line, else its last line.
    GitPython wraps stderr as ``stderr: '...'``, so the quotes go before lines are judged."""
    lines = [ln.strip().removeprefix("stderr:").strip().strip("'").strip()
             for ln in str(e.stderr or e).splitlines()]
    lines = [ln for ln in lines if ln]
    msg = next((ln for ln in reversed(lines) if ln.startswith(("fatal:", "error:"))),
               lines[-1] if lines else f"git exited with {e.status}")
    return display_url(msg)
