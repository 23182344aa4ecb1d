"""What the Git source checks of its settings before it writes anything.

- Settings that read nothing at the head (a mistyped path, globs that match no file) are
  refused: a typo must never empty the desired state.
- A process that keeps following the branch (``watch``, ``run``) and finds that another one
  changed the settings since its own last pass stops, rather than read the last commit
  again under its own: the two would undo each other at every pass (a path read by one and
  not the other, desired then removed, and pruned). The first pass of a process reads under
  its settings, as the operator's change it is.
"""

from __future__ import annotations

from typing import Any

from gitops.model.errors import ConfigError
from gitops.sources.git.config import GitSourceConfig
from gitops.sources.git.reading import TreeReader
from gitops.sources.git.repository import GitRepository

__all__ = ["changed_elsewhere", "check_reads_something"]


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


def changed_elsewhere(origin: str, *, settled: dict[str, Any] | None, found: Any,
                      ours: dict[str, Any]) -> dict[str, Any] | None:
    """Raise if the settings the checkpoint holds (``found``) are neither what this process
    last read or wrote there (``settled``; None before its first pass) nor its own; else
    what it has now read there (``settled`` again until it finds or writes its own)."""
    if settled is None or not isinstance(found, dict) or found in (settled, ours):
        return ours if found == ours else settled
    differ = ", ".join(f"{k}: {found.get(k)!r} there, {ours.get(k)!r} here"
                       for k in sorted(set(found) | set(ours)) if found.get(k) != ours.get(k))
    raise ConfigError(f"another process changed how {origin} is read since this one's last pass ({differ}); this "
                      "one stops rather than undo it at every pass: start it again with the settings wanted, and "
                      "run nothing else on this branch with other ones")
