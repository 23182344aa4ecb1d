"""Publishing a signed checkpoint to a Git ref, so that the history of the log's roots lives
where the log's writer cannot rewrite it alone (``refs/gitops/checkpoints`` by default).

Each checkpoint is one commit whose tree holds one file, on top of the ref's last commit:
the ref only ever moves forward. A local repository's ref moves by compare-and-swap
(``update-ref NEW OLD``); a remote's is pushed without force, so a ref that moved there, or
that someone rewound, refuses the push instead of being overwritten. Nothing touches a
working tree.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from git.exc import GitCommandError

from gitops.model.errors import GitSourceError
from gitops.sources.git.repository import GitRepository, _git_env, _git_error

__all__ = ["publish_file", "read_published"]

_AUTHOR = {"GIT_AUTHOR_NAME": "gitops", "GIT_AUTHOR_EMAIL": "gitops@localhost",
           "GIT_COMMITTER_NAME": "gitops", "GIT_COMMITTER_EMAIL": "gitops@localhost"}


def _stdin(text: str) -> IO[bytes]:
    f = tempfile.NamedTemporaryFile()  # noqa: SIM115 - closed by the caller's with
    f.write(text.encode())
    f.flush()
    f.seek(0)
    return f


def _tip(repo: GitRepository, ref: str) -> str | None:
    try:
        return str(repo.repo.git.rev_parse("--verify", "-q", f"{ref}^{{commit}}"))
    except GitCommandError:
        return None


def _fetch(repo: GitRepository, ref: str) -> None:
    if repo.remote:
        try:  # the cache mirrors the remote: its copy of the ref follows whatever the remote has
            repo.repo.git.fetch(repo.location, f"+{ref}:{ref}", env=_git_env())
        except GitCommandError as e:
            if "couldn't find remote ref" not in str(e.stderr):
                raise GitSourceError(f"cannot fetch {ref} from {repo.url}: {_git_error(e)}") from None


def publish_file(location: str, ref: str, name: str, text: str, message: str, *,
                 cache_dir: Path | None = None, check: Callable[[str | None], None] | None = None) -> str:
    """One commit on ``ref`` of the repository at ``location`` whose tree is the file
    ``name`` holding ``text``; returns the commit's sha. ``check`` is given the file as the
    ref's tip holds it (None: no tip yet), read by the same fetch, and may refuse (raise)."""
    repo = GitRepository(location, cache_dir=cache_dir)
    try:
        _fetch(repo, ref)
        old = _tip(repo, ref)
        g = repo.repo.git
        if check is not None:
            check(str(g.show(f"{old}:{name}", strip_newline_in_stdout=False)) if old else None)
        with _stdin(text) as f:
            blob = str(g.hash_object("-w", "--stdin", istream=f))
        with _stdin(f"100644 blob {blob}\t{name}\n") as f:
            tree = str(g.mktree(istream=f))
        parents = ["-p", old] if old else []
        commit = str(g.commit_tree(tree, *parents, "-m", message, env=_AUTHOR))
        if repo.remote:
            g.push(repo.location, f"{commit}:{ref}", env=_git_env())
            g.update_ref(ref, commit)
        else:
            g.update_ref(ref, commit, old or "0" * 40)
        return commit
    except GitCommandError as e:
        raise GitSourceError(f"cannot publish to {ref} of {repo.url}: {_git_error(e)}") from None
    finally:
        repo.close()


def read_published(location: str, ref: str, name: str, *, cache_dir: Path | None = None) -> str | None:
    """The file ``name`` at the tip of ``ref``, or None when the ref does not exist."""
    repo = GitRepository(location, cache_dir=cache_dir)
    try:
        _fetch(repo, ref)
        if _tip(repo, ref) is None:
            return None
        return str(repo.repo.git.show(f"{ref}:{name}", strip_newline_in_stdout=False))
    except GitCommandError as e:
        raise GitSourceError(f"cannot read {name} at {ref} of {repo.url}: {_git_error(e)}") from None
    finally:
        repo.close()
