"""The tree index: what one commit's tree holds, kept current file by file.

For every file in scope it keeps what the file parsed to (its objects and its problems),
and across files which object keys are defined where. From that it answers the two
questions a commit is judged on: which objects the tree desires, and what is wrong with
it. Both answers are a function of the files alone, never of the order in which they were
added: that is what makes a commit's events the same however the history is ingested.

Files that are not Kubernetes objects are recognised by name and left unread, with a
notice that does not make the commit invalid:
- a Kustomize file (``kustomization.yaml``, ``kustomization.yml``, ``Kustomization``): the
  plain manifests beside it are still read;
- a Helm chart (a folder holding ``Chart.yaml``): nothing under that folder is read.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gitops.model.scope import CLUSTER_SCOPED
from gitops.sources.manifests import ManifestProblem

__all__ = ["KUSTOMIZATION_FILES", "ParsedFile", "Problem", "TreeIndex", "TreeObject", "crd_scope",
           "not_manifest_notice"]

KUSTOMIZATION_FILES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})
CHART_FILE = "Chart.yaml"
_CRD_HEAD = "CustomResourceDefinition.apiextensions.k8s.io/"


def crd_scope(manifest: dict[str, Any]) -> tuple[tuple[str, str], bool] | None:
    """((group, Kind), namespaced) of the kind a CustomResourceDefinition defines, or None
    when its spec does not say, or says what the API server would refuse: a group without a
    dot (the built-in groups), or a built-in cluster-scoped kind (a CRD in Git never makes
    a ClusterRole namespaced)."""
    spec = manifest.get("spec")
    names = spec.get("names") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or not isinstance(names, dict):
        return None
    group, kind, scope = spec.get("group"), names.get("kind"), spec.get("scope")
    if not isinstance(group, str) or not isinstance(kind, str) or scope not in ("Namespaced", "Cluster"):
        return None
    if "." not in group or (group, kind) in CLUSTER_SCOPED:
        return None
    return (group, kind), scope == "Namespaced"


@dataclass(frozen=True)
class TreeObject:
    """One object a file defines, redacted, with its content digest."""

    key: str
    digest: str
    manifest: dict[str, Any]
    index: int
    line: int


@dataclass(frozen=True)
class ParsedFile:
    objects: tuple[TreeObject, ...]
    problems: tuple[ManifestProblem, ...]


@dataclass(frozen=True, order=True)
class Problem:
    """A problem of a tree, where it is. ``blocking`` problems make the commit invalid;
    the others are notices (a file left unread on purpose)."""

    path: str | None
    code: str
    line: int | None
    message: str
    key: str | None = None
    blocking: bool = True


def not_manifest_notice(path: str) -> ManifestProblem | None:
    """The notice for a file that is recognised by its name as no Kubernetes object."""
    name = posixpath.basename(path)
    if name in KUSTOMIZATION_FILES:
        return ManifestProblem("kustomize-not-rendered", "a Kustomize file: not rendered, and not read as an "
                               "object; the plain manifests beside it are read")
    if name == CHART_FILE:
        return ManifestProblem("helm-not-rendered", "a Helm chart: not rendered; nothing under "
                               f"{posixpath.dirname(path) or '.'} is read as an object")
    return None


class TreeIndex:
    """The files in scope of one tree, their objects by key, and the tree's problems."""

    def __init__(self) -> None:
        self._files: dict[str, ParsedFile] = {}
        self._locations: dict[str, list[tuple[str, TreeObject]]] = {}  # key -> (path, object) defining it
        self._bad_files: set[str] = set()
        self._charts: set[str] = set()  # folders holding a Chart.yaml
        self._duplicates: set[str] = set()  # keys defined in more than one file
        self._crds: set[str] = set()  # keys of the CustomResourceDefinitions defined

    def clear(self) -> None:
        self._crds.clear()
        self._files.clear()
        self._locations.clear()
        self._bad_files.clear()
        self._charts.clear()
        self._duplicates.clear()

    def set_file(self, path: str, new: ParsedFile | None) -> set[str]:
        """Replace what ``path`` holds (None: the file is gone). Returns the keys whose
        definitions this may have changed."""
        touched: set[str] = set()
        old = self._files.pop(path, None)
        self._bad_files.discard(path)
        chart = path.endswith(CHART_FILE) and posixpath.basename(path) == CHART_FILE
        if chart:
            self._charts.discard(posixpath.dirname(path))
        if old is not None:
            for key in {obj.key for obj in old.objects}:
                touched.add(key)
                where = [loc for loc in self._locations[key] if loc[0] != path]
                if where:
                    self._locations[key] = where
                else:
                    del self._locations[key]
                    self._crds.discard(key)
                if len(where) < 2:
                    self._duplicates.discard(key)
        if new is not None:
            self._files[path] = new
            if new.problems:
                self._bad_files.add(path)
            if chart:
                self._charts.add(posixpath.dirname(path))
            for obj in new.objects:
                touched.add(obj.key)
                where = self._locations.setdefault(obj.key, [])
                where.append((path, obj))
                if obj.key.startswith(_CRD_HEAD):
                    self._crds.add(obj.key)
                if len(where) > 1:
                    self._duplicates.add(obj.key)
        if chart and (old is None) != (new is None):
            # a chart appeared or went: what lies under its folder is read, or no longer
            folder = posixpath.dirname(path)
            touched.update(obj.key for p, f in self._files.items()
                           if not folder or p.startswith(folder + "/") for obj in f.objects)
        return touched

    def _in_chart(self, path: str) -> bool:
        """Whether ``path`` lies inside a Helm chart's folder (its own Chart.yaml does not)."""
        if not self._charts:
            return False
        d = posixpath.dirname(path)
        if posixpath.basename(path) == CHART_FILE:
            if not d:
                return False
            d = posixpath.dirname(d)
        while True:
            if d in self._charts:
                return True
            if not d:
                return False
            d = posixpath.dirname(d)

    def definitions(self, key: str) -> list[tuple[str, TreeObject]]:
        """Where ``key`` is defined, by path: the first is the one desired."""
        where = self._locations.get(key)
        if not where:
            return []
        return sorted(((p, o) for p, o in where if not self._in_chart(p)), key=lambda po: (po[0], po[1].index))

    def crd_scopes(self) -> dict[tuple[str, str], bool]:
        """The scope of each kind a CustomResourceDefinition of the tree defines, from the
        definition desired: (group, Kind) -> namespaced."""
        out: dict[tuple[str, str], bool] = {}
        for key in self._crds:
            found = self.definitions(key)
            scope = crd_scope(found[0][1].manifest) if found else None
            if scope is not None:
                out[scope[0]] = scope[1]
        return out

    def paths_holding(self, heads: set[str]) -> list[str]:
        """The files defining an object of one of the kinds ``heads`` (``Kind.group``)."""
        return [p for p, f in self._files.items() if any(o.key.partition("/")[0] in heads for o in f.objects)]

    def keys(self) -> Iterator[str]:
        return (k for k in self._locations if self.definitions(k))

    def problems(self) -> list[Problem]:
        """Every problem of the tree, sorted: the same tree gives the same list."""
        out = [Problem(path, p.code, p.line, p.message, None, not p.code.endswith("-not-rendered"))
               for path in self._bad_files if not self._in_chart(path) for p in self._files[path].problems]
        for key in self._duplicates:
            found = self.definitions(key)
            if len(found) > 1:
                spots = ", ".join(f"{path} line {obj.line}" for path, obj in found)
                path, obj = found[1]
                out.append(Problem(path, "duplicate-key", obj.line, f"{key} is defined more than once: {spots}", key))
        return sorted(out, key=lambda p: (p.path or "", p.line or 0, p.code, p.message, p.key or ""))
