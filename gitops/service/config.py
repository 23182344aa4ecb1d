"""The configuration file (``--config FILE``, YAML): one pydantic model, validated on load.

Flags on the command line override what the file says; the file overrides defaults.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gitops.diff import DiffSettings
from gitops.events.redaction import RedactionRule
from gitops.model.errors import ConfigError, first_error
from gitops.query.integrity_settings import IntegritySettings
from gitops.query.report_policy import ReportSettings
from gitops.reconcile.settings import ReconcileSettings
from gitops.service.notify_settings import SinkSettings
from gitops.sources.cluster.config import ClusterSourceConfig
from gitops.sources.git.config import GitSourceConfig

__all__ = ["Config", "config_json_schema", "first_error", "load_config"]


class Config(BaseModel):
    """The configuration file of gitops (YAML). Flags on the command line override it."""

    model_config = ConfigDict(extra="forbid")

    db: str | None = Field(default=None, description="path of the SQLite event log")
    redact: list[RedactionRule] = Field(
        default_factory=list,
        description="extra paths to digest; recorded in the log, and applied by every later writer of it, "
                    "with this file or without")
    git: GitSourceConfig | None = Field(default=None, description="the Git source of desired state")
    cluster: ClusterSourceConfig | None = Field(default=None, description="the cluster source of actual state")
    diff: DiffSettings = Field(default_factory=DiffSettings, description="what the diff leaves out, and orphans of "
                                                                         "which instance it reports")
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings,
                                         description="what the reconciler does, when, and as whom")
    integrity: IntegritySettings = Field(default_factory=IntegritySettings,
                                         description="keys, signed checkpoints and where they are published")
    report: ReportSettings = Field(default_factory=ReportSettings,
                                   description="the approval policy compliance reports check changes against")
    notify: list[SinkSettings] = Field(default_factory=list, description="webhooks gitops run notifies (drift, "
                                                                         "failures, health, tamper)")


def config_json_schema() -> str:
    """The JSON Schema of the configuration file, for editors (``make schema``)."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "gitops configuration file"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    import yaml  # here: a command given no config file imports no YAML parser

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path}{line}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"config file {path}: {first_error(e)}") from None


if __name__ == "__main__":  # make schema
    import sys

    Path(sys.argv[1]).write_text(config_json_schema())
