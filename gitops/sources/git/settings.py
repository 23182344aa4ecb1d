"""What the Git source checks of its settings before it writes anything: settings that read
nothing at the head (a mistyped path, globs that match no file) are refused, since a typo
must never empty the desired state."""

from __future__ import annotations

from gitops.model.errors import ConfigError
from gitops.sources.git.config import GitSourceConfig
from gitops.sources.git.reading import TreeReader
from gitops.sources.git.repository import GitRepository

__all__ = ["check_reads_something"]


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
