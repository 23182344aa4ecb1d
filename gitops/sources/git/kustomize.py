"""Kustomize: which folders of a tree are kustomizations, what each one reads, and rendering
one with the real tool (``kustomize build``, else ``kubectl kustomize``), never a
re-implementation.

- **Structure** (pure): a folder holding ``kustomization.yaml``, ``kustomization.yml`` or
  ``Kustomization`` is a kustomization. One that another kustomization of the tree uses
  (``resources``, ``bases``, ``components``) is a base; the others are roots, and each root
  is rendered. Files under a root or a base are never read as plain manifests. A root's
  inputs are the files under it and under every base it uses, transitively; their content
  hash keys the render cache, so a root is rendered again only when an input changed.
- **Safety**: a remote base (a URL, ``github.com/...``, ``git@...``) is refused unless the
  settings allow it; the files are written to a temporary folder from the commit itself
  (never the working tree), the renderer runs there with its defaults (load restrictor
  root-only, no exec or KRM function plugins, no Helm), a timeout and an output limit.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gitops.sources.git.config import KustomizeSettings
from gitops.sources.manifests import ManifestProblem

__all__ = ["KUSTOMIZATION_FILES", "KustomizeSettings", "Layout", "Renderer", "layout"]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_REMOTE_PREFIXES = ("http://", "https://", "git@", "ssh://", "git::", "github.com/", "gitlab.com/",
                    "bitbucket.org/")


@dataclass(frozen=True)
class Layout:
    """The kustomizations of one tree."""

    roots: dict[str, tuple[str, ...]] = field(default_factory=dict)  # root folder -> its input files (sorted)
    shadowed: frozenset[str] = frozenset()  # folders whose files are not plain manifests (roots and bases)
    problems: dict[str, tuple[ManifestProblem, ...]] = field(default_factory=dict)  # root -> what is wrong

    def is_shadowed(self, path: str) -> bool:
        d = posixpath.dirname(path)
        while True:
            if (d or ".") in self.shadowed:
                return True
            if not d:
                return False
            d = posixpath.dirname(d)

    def inputs_digest(self, root: str, blobs: Mapping[str, str]) -> str:
        h = hashlib.sha256()
        for p in self.roots[root]:
            h.update(f"{p}\0{blobs.get(p, '')}\n".encode())
        return h.hexdigest()


def _folder_of(path: str) -> str:
    return posixpath.dirname(path) or "."


def _join(folder: str, ref: str) -> str:
    return posixpath.normpath(posixpath.join("" if folder == "." else folder, ref)) or "."


def is_remote(ref: str) -> bool:
    return ref.startswith(_REMOTE_PREFIXES) or "?ref=" in ref or "//" in ref


def _references(doc: Any) -> list[str]:
    if not isinstance(doc, dict):
        return []
    out: list[str] = []
    for key in ("resources", "bases", "components"):
        items = doc.get(key)
        if isinstance(items, list):
            out.extend(str(i) for i in items if isinstance(i, (str, int)))
    return out


def layout(files: Mapping[str, str], read: Any, *, allow_remote: bool) -> Layout:
    """The kustomizations among ``files`` (path -> blob), reading their kustomization files
    with ``read(list of blobs) -> {blob: bytes}``."""
    kfiles = {_folder_of(p): p for p in sorted(files) if posixpath.basename(p) in KUSTOMIZATION_FILES}
    if not kfiles:
        return Layout()
    data = read([files[p] for p in kfiles.values()])
    uses: dict[str, set[str]] = {}
    problems: dict[str, list[ManifestProblem]] = {}
    for folder, path in kfiles.items():
        uses[folder] = set()
        try:
            doc = yaml.safe_load(data[files[path]])
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            problems.setdefault(folder, []).append(ManifestProblem(
                "kustomize-invalid", f"{path}: invalid YAML: {getattr(e, 'problem', e)}",
                mark.line + 1 if mark is not None else None))
            continue
        for ref in _references(doc):
            if is_remote(ref):
                if not allow_remote:
                    problems.setdefault(folder, []).append(ManifestProblem(
                        "remote-base", f"{path} uses the remote base {ref}: remote bases are not fetched "
                                       "(set git.kustomize.allow_remote to allow them)"))
                continue
            target = _join(folder, ref)
            if target in kfiles:
                uses[folder].add(target)
    bases = {b for used in uses.values() for b in used}
    roots = [f for f in kfiles if f not in bases]

    def closure(folder: str, seen: set[str]) -> set[str]:
        if folder in seen:
            return seen
        seen.add(folder)
        for b in uses.get(folder, ()):
            closure(b, seen)
        return seen

    by_root: dict[str, tuple[str, ...]] = {}
    for root in roots:
        folders = closure(root, set())
        by_root[root] = tuple(sorted(p for p in files if any(
            f == "." or p.startswith(f + "/") for f in folders)))
    # problems of a base are its roots' problems too
    root_problems: dict[str, tuple[ManifestProblem, ...]] = {}
    for root in roots:
        found = [p for f in sorted(closure(root, set())) for p in problems.get(f, [])]
        if found:
            root_problems[root] = tuple(found)
    return Layout(by_root, frozenset(kfiles), root_problems)


class Renderer:
    """Runs the real renderer on files written to a temporary folder."""

    def __init__(self, settings: KustomizeSettings) -> None:
        self.settings = settings
        self._argv: list[str] | None = None
        self._version: str | None = None
        self._resolved = False

    def argv(self) -> list[str] | None:
        """The command line of the renderer, or None when there is none on this machine."""
        if not self._resolved:
            self._resolved = True
            if self.settings.command:
                self._argv = self.settings.command.split()
            elif shutil.which("kustomize"):
                self._argv = ["kustomize", "build"]
            elif shutil.which("kubectl"):
                self._argv = ["kubectl", "kustomize"]
        return self._argv

    def describe(self) -> str:
        """The renderer and its version, e.g. ``kubectl kustomize (kustomize v5.5.0)``."""
        argv = self.argv()
        if argv is None:
            return "none"
        if self._version is None:
            self._version = self._ask_version(argv)
        return f"{' '.join(argv)} ({self._version})"

    @staticmethod
    def _ask_version(argv: list[str]) -> str:
        try:
            if Path(argv[0]).name == "kubectl":
                out = subprocess.run([argv[0], "version", "--client"], capture_output=True, text=True, timeout=30)
                for line in out.stdout.splitlines():
                    if line.startswith("Kustomize Version:"):
                        return "kustomize " + line.split(":", 1)[1].strip()
                return "kustomize version unknown"
            out = subprocess.run([argv[0], "version"], capture_output=True, text=True, timeout=30)
            return (out.stdout.strip().splitlines() or ["version unknown"])[0]
        except (OSError, subprocess.TimeoutExpired):
            return "version unknown"

    def render(self, root: str, files: Mapping[str, bytes]) -> tuple[bytes | None, ManifestProblem | None]:
        """Render the kustomization at ``root`` from ``files`` (path -> content, the root's
        inputs): its YAML output, or the problem that stopped it."""
        argv = self.argv()
        if argv is None:
            return None, ManifestProblem("kustomize-unavailable", "cannot render a kustomization: install "
                                         "kustomize, or kubectl (which includes it)")
        with tempfile.TemporaryDirectory(prefix="gitops-kustomize-") as tmp:
            base = Path(tmp)
            for path, content in files.items():
                target = base / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            folder = base / ("" if root == "." else root)
            env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
            env["HOME"] = tmp  # no user configuration or plugins of the person running it
            try:
                res = subprocess.run([*argv, str(folder)], capture_output=True, timeout=self.settings.timeout,
                                     cwd=tmp, env=env, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                return None, ManifestProblem("kustomize-timeout", f"rendering took over {self.settings.timeout:g}s")
            except OSError as e:
                return None, ManifestProblem("kustomize-unavailable", f"cannot run {' '.join(argv)}: {e.strerror}")
        if res.returncode != 0:
            message = res.stderr.decode("utf-8", "replace").replace(tmp + "/", "").strip()
            first = " ".join(message.splitlines()[:3])[:500] or f"exit code {res.returncode}"
            return None, ManifestProblem("kustomize-failed", f"{' '.join(argv)} failed: {first}")
        if len(res.stdout) > self.settings.max_output_bytes:
            return None, ManifestProblem("kustomize-too-large", f"the output is {len(res.stdout)} bytes, over the "
                                                               f"limit of {self.settings.max_output_bytes}")
        return res.stdout, None
