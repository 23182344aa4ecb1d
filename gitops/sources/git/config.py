"""What to read from Git: one repository, one branch, some paths in it."""

from __future__ import annotations

import fnmatch
import posixpath
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

__all__ = ["GitSourceConfig", "KustomizeSettings"]


def _one_or_many(value: object) -> object:
    """``paths: apps`` in the config file means ``paths: [apps]``."""
    return [value] if isinstance(value, str) else value


# A list of strings, or one string for a list of one; the exported JSON Schema says both.
OneOrMany = Annotated[
    list[str],
    BeforeValidator(_one_or_many),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
]


class KustomizeSettings(BaseModel):
    """How kustomizations in the repository are rendered (``git.kustomize``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="render kustomization folders (false: read plain files only)")
    command: str | None = Field(default=None, description="the renderer, e.g. 'kustomize build' (default: "
                                                          "kustomize on PATH, else 'kubectl kustomize')")
    allow_remote: bool = Field(default=False, description="allow remote bases (fetched by the renderer)")
    timeout: float = Field(default=60.0, gt=0, description="seconds a render may take")
    max_output_bytes: int = Field(default=16 << 20, gt=0, description="largest output of one render")


class GitSourceConfig(BaseModel):
    """A Git source. ``repo`` is a local path or a URL (https, ssh, ``git@host:path``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # optional in the file, since ``--repo`` may give it; a source cannot be built without one
    repo: str | None = Field(default=None, description="local path or URL of the repository (or --repo)")
    branch: str | None = Field(default=None, description="branch to follow (default: the repository's default)")
    paths: OneOrMany = Field(default_factory=lambda: ["."], min_length=1,
                             description="directories inside the repository, relative to its root; a branch "
                                         "read under some paths is a source of its own, git:URL#BRANCH:PATHS")
    include: OneOrMany = Field(default_factory=lambda: ["*.yaml", "*.yml", "*.json"],
                               description="file name globs to read")
    exclude: OneOrMany = Field(default_factory=list, description="globs (name or path) to leave out")
    default_namespace: str = Field(default="default", description="namespace of namespaced objects that name none")
    max_file_bytes: int = Field(default=1 << 20, gt=0, description="larger files are an error")
    poll_interval: float = Field(default=30.0, gt=0, description="seconds between fetches of a remote repository")
    cache_dir: str | None = Field(default=None, description="where remote repositories are cloned")
    batch_commits: int = Field(default=100, gt=0, description="commits written per transaction when back-filling")
    kustomize: KustomizeSettings = Field(default_factory=KustomizeSettings,
                                         description="how kustomization folders are rendered")

    @field_validator("paths")
    @classmethod
    def _inside_the_repository(cls, paths: list[str]) -> list[str]:
        """Each path relative to the repository root, normalised ("/apps/./x/" is "apps/x", the
        root is "."); one that climbs out of the repository is refused."""
        out = []
        for p in paths:
            norm = posixpath.normpath(p.strip().lstrip("/") or ".")
            if norm == ".." or norm.startswith("../"):
                raise ValueError(f"path {p!r} points outside the repository")
            out.append(norm)
        return out

    def in_scope(self, path: str) -> bool:
        """Whether a file at ``path`` (relative to the repository root) is read."""
        name = posixpath.basename(path)
        under = any(p in (".", path) or path.startswith(p + "/") for p in self.paths)
        if not under:
            return False
        if not any(fnmatch.fnmatchcase(name, g) or fnmatch.fnmatchcase(path, g) for g in self.include):
            return False
        return not self.excluded(path)

    def excluded(self, path: str) -> bool:
        """Whether an ``exclude`` glob (matched against the name or the path) leaves ``path`` out."""
        name = posixpath.basename(path)
        return any(fnmatch.fnmatchcase(name, g) or fnmatch.fnmatchcase(path, g) for g in self.exclude)
