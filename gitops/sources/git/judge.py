"""Judging one commit: a pure function from its tree (and what was desired before) to
what changes.

A tree with a blocking problem is invalid: nothing of it is desired and the last valid
state stays in force. A valid tree desires, for each key, its first definition by path;
each key whose content digest differs from what was desired is applied, each key no
longer defined is removed. Problems are reported when they appear or change, not at every
commit they stay in: ``new_problems`` are those the previous tree did not have.

Nothing here reads Git, the log or the clock, so the same inputs always give the same
judgement, whichever way the history was ingested.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gitops.sources.git.tree import Problem, TreeIndex, TreeObject

__all__ = ["Desired", "Judgement", "judge"]


@dataclass(frozen=True)
class Desired:
    """What the log holds as desired for one key: its content digest and its file."""

    digest: str
    path: str | None


@dataclass(frozen=True)
class Judgement:
    valid: bool
    problems: frozenset[Problem]  # all in force in this tree, notices included
    new_problems: tuple[Problem, ...]  # not in force in the previous tree: to record, sorted
    applied: tuple[tuple[str, TreeObject], ...]  # (path, object) added or changed, by key
    removed: tuple[tuple[str, Desired], ...]  # (key, what was desired) no longer defined, by key

    @property
    def errors(self) -> int:
        """The blocking problems in force."""
        return sum(1 for p in self.problems if p.blocking)


def judge(tree: TreeIndex, desired: Mapping[str, Desired], *, previous: frozenset[Problem],
          keys: Iterable[str] | None = None) -> Judgement:
    """Judge ``tree`` against ``desired``. ``keys``, when given, are the only keys that may
    have changed since ``desired`` was last brought up to date from a valid tree."""
    found = tree.problems()
    problems = frozenset(found)
    new = tuple(p for p in found if p not in previous)
    if any(p.blocking for p in found):
        return Judgement(False, problems, new, (), ())
    candidates = (set(tree.keys()) | set(desired)) if keys is None else set(keys)
    applied: list[tuple[str, TreeObject]] = []
    removed: list[tuple[str, Desired]] = []
    for key in sorted(candidates):  # a stable order of events within a commit
        definitions = tree.definitions(key)
        old = desired.get(key)
        if not definitions:
            if old is not None:
                removed.append((key, old))
            continue
        path, obj = definitions[0]
        if old is None or old.digest != obj.digest:
            applied.append((path, obj))
    return Judgement(True, problems, new, tuple(applied), tuple(removed))
