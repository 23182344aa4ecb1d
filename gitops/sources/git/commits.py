"""The values of a repository's history, as the git adapter (``gitops.sources.git.repository``)
reads them: commits, the people on them, the files each changed, a tree's entries, and
the parse of ``git log --raw`` records. No GitPython here: the ingest, the readers and
the records use these without the adapter."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

__all__ = ["SYMLINK_MODE", "Change", "CommitInfo", "Person", "TreeEntry", "raw_changes"]

SYMLINK_MODE = "120000"


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    time: datetime


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    parents: tuple[str, ...]
    author: Person
    committer: Person
    message: str
    signed: bool
    signer_key: str | None


class Change(NamedTuple):  # a tuple: made for every file of every commit
    """One file changed by a commit, against its first parent."""

    path: str
    blob: str | None  # None when the file was deleted
    mode: str

    @property
    def is_symlink(self) -> bool:
        return self.mode == SYMLINK_MODE


class TreeEntry(NamedTuple):
    path: str
    blob: str
    mode: str

    @property
    def is_symlink(self) -> bool:
        return self.mode == SYMLINK_MODE


def raw_changes(record: bytes) -> tuple[str, list[Change]]:
    """One record of ``git log --raw -z --format=%x1e%H``: the commit and its changed files
    (``:<old mode> <new mode> <old sha> <new sha> <status>`` then the path, each ended by NUL)."""
    head, _, rest = record.partition(b"\0")
    tokens = iter(os.fsdecode(rest).lstrip("\n").split("\0"))
    changes: list[Change] = []
    for meta in tokens:
        if not meta.startswith(":"):
            continue
        path = next(tokens, None)
        if path is None:
            break
        _old_mode, new_mode, _old_sha, new_sha, status = meta[1:].split(" ")
        deleted = status.startswith("D")
        changes.append(Change(path, None if deleted else new_sha, "" if deleted else new_mode))
    return head.decode().strip(), changes
