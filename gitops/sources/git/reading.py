"""What a Git source reads of a repository: the tree of the commit it last read, kept in
memory (``TreeIndex``: each next commit costs only the files it changed), its files
parsed (cached by blob, read ahead a window of commits at a time in one round trip to
git), and its kustomizations rendered (cached by the digest of their inputs). The ingest
(``gitops.sources.git.ingest``) judges and records what this reads."""

from __future__ import annotations

import itertools
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from gitops.events.models import content_digest
from gitops.events.redaction import Redaction, redact
from gitops.model.keys import format_key, parse_key
from gitops.model.scope import Scope
from gitops.sources.git.commits import Change, CommitInfo, TreeEntry
from gitops.sources.git.config import GitSourceConfig
from gitops.sources.git.kustomize import KUSTOMIZATION_FILES, Layout, Renderer, layout
from gitops.sources.git.repository import GitRepository
from gitops.sources.git.tree import ParsedFile, TreeIndex, TreeObject, not_manifest_notice
from gitops.sources.manifests import ManifestProblem, parse_manifests

__all__ = ["TreeReader"]

_PARSE_CACHE_LIMIT = 20_000  # parsed files kept by blob id


Scopes = frozenset[tuple[tuple[str, str], bool]]  # the scopes of the kinds a tree's CRDs define


def _head(group: str, kind: str) -> str:
    return f"{kind}.{group}" if group else kind


def _layered(first: Mapping[tuple[str, str], bool], then: Scope) -> Scope:
    def scope(group: str, kind: str) -> bool:
        known = first.get((group, kind))
        return then(group, kind) if known is None else known
    return scope


class TreeReader:
    """Reads one repository's trees for a source of ``config``'s paths, as ``scope`` and
    ``redaction`` say objects are named and stored.

    A kind that a CustomResourceDefinition of the tree defines takes that definition's
    scope, before ``scope`` (the cluster's discovery, or the built-in table) is asked: a
    custom resource committed with its CRD is named as the API server will name it, whether
    or not the cluster serves the kind yet, and the same tree always gives the same keys.
    When a commit adds or removes such a definition, the files holding its kind are read
    again."""

    def __init__(self, repo: GitRepository, config: GitSourceConfig, scope: Scope, redaction: Redaction) -> None:
        self.repo = repo
        self.config = config
        self.scope = scope
        self.redaction = redaction
        self.tree = TreeIndex()
        self._parsed: dict[tuple[str, bool, Scopes], ParsedFile] = {}
        self._tree_scopes: dict[tuple[str, str], bool] = {}  # (group, Kind) -> namespaced, from the tree's CRDs
        self._scopes: Scopes = frozenset()
        self._scope = _layered(self._tree_scopes, scope)
        self._scope_of: dict[str, bool] = {}  # in_scope by path: globs cost more than a lookup
        # Kustomize: every file of the tree (path -> blob), its kustomizations, what is rendered
        self._all: dict[str, str] = {}
        self.layout = Layout()
        self._rendered: dict[str, str] = {}  # root -> digest of the inputs its entry was rendered from
        self._render_cache: dict[str, ParsedFile] = {}
        self.renderer = Renderer(config.kustomize)
        self.render_hits = self.render_misses = self.render_unchanged = 0

    def manifests_at(self, commit: str, paths: dict[str, str]) -> dict[str, dict[str, Any]]:
        """The objects ``paths`` names (ResourceKey -> the file, or the kustomization root
        ``folder/``, that holds it) as ``commit`` has them, *unredacted*: what the reconciler
        applies. The log holds them redacted (a Secret's values as digests), so the values
        to apply are read, or rendered, from Git itself at the commit the log says; they are
        never stored or returned anywhere else."""
        files = {p for p in paths.values() if not p.endswith("/")}
        roots = {p for p in paths.values() if p.endswith("/")}
        blobs = self.repo.blobs_at(commit, list(files))
        data = self.repo.read_blobs(list(blobs.values()))
        outputs = {path: (data[blob], self.config.max_file_bytes) for path, blob in blobs.items()}
        if roots:
            tree = {e.path: e.blob for e in self.repo.tree(commit) if not e.is_symlink}
            found = self._kustomizations(tree)
            for root in found.roots:
                vpath = self._rendered_path(root)
                if vpath in roots:
                    output, _ = self._render_output(found, tree, root)
                    if output is not None:
                        outputs[vpath] = (output, self.config.kustomize.max_output_bytes)
        # each kind in the scope the log's keys give it (as that commit's tree said)
        named = {(k.group, k.kind): k.namespaced for k in map(parse_key, paths)}
        out: dict[str, dict[str, Any]] = {}
        for path, (raw, max_bytes) in outputs.items():
            result = parse_manifests(path, raw, scope=_layered(named, self.scope),
                                     default_namespace=self.config.default_namespace, max_bytes=max_bytes)
            for doc in result.documents:
                key = format_key(doc.key)
                if paths.get(key) == path:
                    out[key] = doc.manifest
        return out


    def prefetched(self, history: Iterator[tuple[CommitInfo, list[Change]]],
                    window: int = 64) -> Iterator[tuple[CommitInfo, list[Change]]]:
        """The history, with the blobs of each window of commits read and parsed ahead in
        one round trip to git, so that processing a commit finds its files in the cache."""
        while True:
            chunk = list(itertools.islice(history, window))
            if not chunk:
                return
            if len(self._parsed) > _PARSE_CACHE_LIMIT:
                self._parsed.clear()  # only a cache: bounded memory on long histories
            self._parse_unparsed([(c.path, c.blob) for _, changes in chunk for c in changes
                                  if c.blob is not None and not c.is_symlink and self.in_scope(c.path)])
            yield from chunk

    def _parse_unparsed(self, files: list[tuple[str, str]]) -> None:
        """Parse the (path, blob) pairs not parsed yet, their blobs read in one round trip."""
        wanted = [(path, blob) for path, blob in files
                  if self._cache_key(path, blob) not in self._parsed and not_manifest_notice(path) is None]
        data = self.repo.read_blobs([blob for _, blob in wanted])
        for path, blob in wanted:
            self._parse(path, blob, data[blob])

    def in_scope(self, path: str) -> bool:
        known = self._scope_of.get(path)
        if known is None:
            if len(self._scope_of) > _PARSE_CACHE_LIMIT:
                self._scope_of.clear()
            known = self._scope_of[path] = self.config.in_scope(path)
        return known

    def load(self, sha: str) -> None:
        """Read the whole tree of commit ``sha``."""
        self.tree.clear()
        tree = self.repo.tree(sha)
        self._all = {e.path: e.blob for e in tree if not e.is_symlink}
        self._rendered.clear()
        self.layout = self._kustomizations(self._all)
        entries = [e for e in tree if self.in_scope(e.path)]
        self._parse_unparsed([(e.path, e.blob) for e in entries if not e.is_symlink
                              and not self.layout.is_shadowed(e.path)])
        for entry in entries:
            self.tree.set_file(entry.path, self._read(entry))
        self._render_roots()
        self._rescope()

    def apply(self, changes: list[Change]) -> set[str]:
        """Move the tree from a commit's parent to the commit, by the files it ``changes``;
        the keys of the objects that touched."""
        touched: set[str] = set()
        layout_changed = False
        for change in changes:
            if change.blob is None or change.is_symlink:
                self._all.pop(change.path, None)
            else:
                self._all[change.path] = change.blob
            layout_changed |= posixpath.basename(change.path) in KUSTOMIZATION_FILES
        before = self.layout
        if layout_changed:
            self.layout = self._kustomizations(self._all)
        for change in changes:
            if not self.in_scope(change.path):
                continue
            new = None if change.blob is None else self._read(TreeEntry(change.path, change.blob, change.mode))
            touched |= self.tree.set_file(change.path, new)
        if before.shadowed != self.layout.shadowed:  # folders became (or stopped being) kustomizations
            changed = {c.path for c in changes}
            for path, blob in self._all.items():
                if path not in changed and self.in_scope(path) and \
                        before.is_shadowed(path) != self.layout.is_shadowed(path):
                    touched |= self.tree.set_file(path, self._read(TreeEntry(path, blob, "100644")))
        touched |= self._render_roots()
        return touched | self._rescope()

    def misnamed(self, keys: Iterable[str]) -> list[str]:
        """The kinds (``Kind.group``) of ``keys`` read as namespaced that ``scope`` now says
        are cluster-scoped: the cluster came to serve them after their objects were read
        (until then an unknown kind is taken as namespaced). Kinds the tree's CRDs define are
        named by those. The other way round is never asked: a kind the cluster stops serving
        (its CRD deleted for an upgrade, say) falls back to namespaced, and must not flap."""
        heads = {head for head, _, rest in (key.partition("/") for key in keys) if "/" in rest}
        out = []
        for head in sorted(heads):
            kind, _, group = head.partition(".")
            if (group, kind) not in self._tree_scopes and not self.scope(group, kind):
                out.append(head)
        return out

    def forget_parsed(self) -> None:
        """Drop every parsed file and render: the next read parses under today's scopes."""
        self._parsed.clear()
        self._render_cache.clear()
        self._rendered.clear()

    def _cache_key(self, path: str, blob: str) -> tuple[str, bool, Scopes]:
        """Parsed files are kept by blob, by whether the name makes them JSON or YAML, and by
        the scopes the tree's CRDs gave when they were parsed."""
        return blob, path.endswith(".json"), self._scopes

    def _rescope(self) -> set[str]:
        """Take the scopes the tree's CRDs now define; when they changed, read the files (and
        render the kustomizations) holding objects of the kinds whose scope changed again.
        Returns the keys touched. A CRD's own key never depends on them, so once is enough."""
        now = self.tree.crd_scopes()
        if now == self._tree_scopes:
            return set()
        changed = {_head(g, k) for g, k in now.keys() ^ self._tree_scopes.keys()}
        changed |= {_head(g, k) for (g, k), namespaced in now.items() if self._tree_scopes.get((g, k), namespaced)
                    != namespaced}
        self._tree_scopes.clear()
        self._tree_scopes.update(now)
        self._scopes = frozenset(now.items())
        touched: set[str] = set()
        for path in self.tree.paths_holding(changed):
            if path in self._all:  # a plain file (a rendered root's objects come from _render_roots)
                touched |= self.tree.set_file(path, self._read(TreeEntry(path, self._all[path], "100644")))
        return touched | self._render_roots()

    # ------------------------------------------------------------------ kustomizations

    def _kustomizations(self, tree: Mapping[str, str]) -> Layout:
        """The kustomizations of ``tree`` (path -> blob) that this source renders."""
        if not self.config.kustomize.enabled:
            return Layout()
        # a kustomization file the exclude globs leave out is not one (how to keep reading the
        # plain files beside it)
        files = {p: b for p, b in tree.items()
                 if posixpath.basename(p) not in KUSTOMIZATION_FILES or not self.config.excluded(p)}
        found = layout(files, self.repo.read_blobs, allow_remote=self.config.kustomize.allow_remote)
        # roots under the configured paths are rendered; their bases may lie anywhere
        roots = {r: files for r, files in found.roots.items()
                 if any(p in (".", r) or r.startswith(p + "/") for p in self.config.paths)}
        return Layout(roots, found.shadowed, {r: found.problems[r] for r in roots if r in found.problems})

    @staticmethod
    def _rendered_path(root: str) -> str:
        """Where a root's objects are said to come from: the root folder, with a slash."""
        return "./" if root == "." else root + "/"

    def _render_roots(self) -> set[str]:
        """Render the roots whose inputs changed (or take them from the cache) and put their
        objects in the tree index; drop the roots that are gone. Returns the keys touched."""
        touched: set[str] = set()
        for root in [r for r in self._rendered if r not in self.layout.roots]:
            touched |= self.tree.set_file(self._rendered_path(root), None)
            del self._rendered[root]
        for root in self.layout.roots:
            digest = self.layout.inputs_digest(root, self._all)
            if self._scopes:  # what the render's objects are named by depends on them too
                digest += repr(sorted(self._scopes))
            if self._rendered.get(root) == digest:
                self.render_unchanged += 1
                continue
            parsed = self._render_cache.get(digest)
            if parsed is None:
                self.render_misses += 1
                parsed = self._render(root)
                if len(self._render_cache) > 512:
                    self._render_cache.clear()
                self._render_cache[digest] = parsed
            else:
                self.render_hits += 1
            touched |= self.tree.set_file(self._rendered_path(root), parsed)
            self._rendered[root] = digest
        return touched

    def _render(self, root: str) -> ParsedFile:
        output, problems = self._render_output(self.layout, self._all, root)
        if output is None:
            return ParsedFile((), problems)
        return self._objects(self._rendered_path(root), output, self.config.kustomize.max_output_bytes)

    def _render_output(self, found: Layout, tree: Mapping[str, str],
                       root: str) -> tuple[bytes | None, tuple[ManifestProblem, ...]]:
        """What the renderer prints for ``root`` of ``found``, its inputs read from ``tree``
        (path -> blob); or None and the problems that stopped it."""
        problems = found.problems.get(root)
        if problems:
            return None, problems
        inputs = found.roots[root]
        data = self.repo.read_blobs([tree[p] for p in inputs])
        output, problem = self.renderer.render(root, {p: data[tree[p]] for p in inputs})
        return output, (problem,) if problem is not None else ()

    def _read(self, entry: TreeEntry) -> ParsedFile:
        if entry.is_symlink:
            target = self.repo.read_blob(entry.blob).decode("utf-8", "replace")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(entry.path), target))
            if posixpath.isabs(target) or resolved == ".." or resolved.startswith("../"):
                return ParsedFile((), (ManifestProblem("symlink-escape", f"symlink points out of the repository "
                                                       f"({target})"),))
            return ParsedFile((), ())  # a link inside the repository: its target is read on its own
        if self.layout.is_shadowed(entry.path):  # under a kustomization: its render says what it holds
            return ParsedFile((), ())
        notice = not_manifest_notice(entry.path)
        if notice is not None:
            return ParsedFile((), (notice,))
        cached = self._parsed.get(self._cache_key(entry.path, entry.blob))
        if cached is not None:
            return cached
        return self._parse(entry.path, entry.blob, self.repo.read_blob(entry.blob))

    def _parse(self, path: str, blob: str, data: bytes) -> ParsedFile:
        parsed = self._objects(path, data, self.config.max_file_bytes)
        self._parsed[self._cache_key(path, blob)] = parsed
        return parsed

    def _objects(self, path: str, data: bytes, max_bytes: int) -> ParsedFile:
        result = parse_manifests(path, data, scope=self._scope, default_namespace=self.config.default_namespace,
                                 max_bytes=max_bytes)
        objects = []
        for doc in result.documents:
            manifest = redact(doc.manifest, self.redaction)
            objects.append(TreeObject(format_key(doc.key), content_digest(manifest), manifest, doc.index, doc.line))
        return ParsedFile(tuple(objects), tuple(result.problems))
