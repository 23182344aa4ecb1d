"""The ``integrity:`` section of the config file: where keys are, where checkpoints are
published and how often ``gitops run`` signs one. Apart from ``gitops.query.integrity``
so that reading the config file (every command) imports no cryptography."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CheckpointEvery", "GitPublish", "IntegritySettings"]


class GitPublish(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    repo: str = Field(description="local path or URL of the repository checkpoints are committed to")
    ref: str = Field(default="refs/gitops/checkpoints", pattern=r"^refs/", description="the ref they go on")


class CheckpointEvery(BaseModel):
    """``gitops run`` signs a checkpoint when either is reached (and events came since the last)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    events: int = Field(default=10_000, ge=0, description="after this many events (0: never by count)")
    minutes: float = Field(default=60.0, ge=0, description="at least this often, when events came (0: never by "
                                                           "time)")


class IntegritySettings(BaseModel):
    """The ``integrity:`` section of the config file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_dir: str | None = Field(default=None, description="where the keys are (default: DATABASE.keys, beside the "
                                                          "log; keep it out of any copy of the log you hand out)")
    origin: str | None = Field(default=None, description="the log's name in its checkpoints (default: an id "
                                                         "the log is given the first time)")
    publish_dir: str | None = Field(default=None, description="a directory each checkpoint is written to")
    publish_git: GitPublish | None = Field(default=None, description="a Git ref each checkpoint is committed to")
    checkpoint_every: CheckpointEvery = Field(default_factory=CheckpointEvery,
                                              description="how often gitops run signs and publishes a checkpoint")
