"""What the Git source checks of its settings before it writes anything: settings that read
nothing at the head (a mistyped path, globs that match no file) are refused, since a typo
must never empty the desired state; and a reading without the log's digest key is refused on
a branch read under one, since it would store Secret values as plain, guessable digests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gitops.model.errors import ConfigError
from gitops.sources.git.config import GitSourceConfig
from gitops.sources.git.reading import TreeReader
from gitops.sources.git.repository import GitRepository

__all__ = ["check_keeps_digests_keyed", "check_reads_something", "origin_of"]


def origin_of(url: str, branch: str, paths: Sequence[str]) -> str:
    """A branch's origin in the log: ``git:URL#BRANCH`` when the whole repository is read,
    ``git:URL#BRANCH:PATH[,PATH...]`` (git's ``rev:path``) when some directories are. Two
    applications kept in one repository under their own paths are then two sources, each
    with its own desired state, rather than one source whose settings their processes
    change back and forth (each pass re-reading the last commit its own way, and each
    reconciler pruning what the other's reading left out)."""
    read = sorted(set(paths))
    base = f"git:{url}#{branch}"
    return base if "." in read else f"{base}:{','.join(read)}"


def check_keeps_digests_keyed(origin: str, previous: object, settings: dict[str, Any]) -> None:
    """Refuse to read a branch whose Secret values were digested under a key without one:
    the last commit would be read again and its values stored as plain SHA-256, which
    anyone holding the log can test guesses against. Raised before anything is written."""
    before = previous.get("digest_scheme") if isinstance(previous, dict) else None
    if before is not None and "digest_scheme" not in settings:
        raise ConfigError(f"{origin} is read with Secret values digested under the log's key ({before}), and this "
                          "command has no digest key: its plain digests could be tested against guesses. "
                          "Nothing was recorded")


def check_reads_something(repo: GitRepository, reader: TreeReader, config: GitSourceConfig, branch: str, head: str,
                          *, first_pass: bool) -> None:
    """Refuse settings that read nothing at the head: a path the head does not hold (on a
    first pass, one that the branch's history never held), or include/exclude globs that
    leave out every file under the paths. Raised before anything is written."""
    for path in config.paths:
        if path == "." or repo.has_path(head, path):
            continue
        if first_pass and repo.path_in_history(head, path):
            continue  # removed by a commit: its history is read, and its removal
        raise ConfigError(f"path {path!r} is not in {repo.url} at the head of {branch} "
                          f"({head[:12]}){'' if first_pass else ' nor was it read before'}: a typo? "
                          "Nothing was recorded")
    under = [e.path for e in repo.tree(head)
             if any(p == "." or e.path.startswith(p + "/") for p in config.paths)]
    if under and not any(reader.in_scope(p) for p in under):
        raise ConfigError(f"include {config.include} and exclude {config.exclude} select none of the "
                          f"{len(under)} files under {', '.join(config.paths)} at the head of "
                          f"{branch} ({head[:12]}): nothing was recorded")
