"""What a notification sink is (``notify:`` in the config), apart from sending to it
(``gitops.service.notify``): reading the configuration needs no HTTP client."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from gitops.model.errors import ConfigError

__all__ = ["TRIGGERS", "SinkSettings", "Trigger"]

Trigger = Literal["drift-opened", "drift-closed", "out-of-band", "action-failed", "health-degraded",
                  "health-recovered", "mass-prune-held", "commit-invalid", "tamper"]
TRIGGERS: tuple[Trigger, ...] = ("drift-opened", "drift-closed", "out-of-band", "action-failed", "health-degraded",
                                  "health-recovered", "mass-prune-held", "commit-invalid", "tamper")


class SinkSettings(BaseModel):
    """One webhook to notify."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="its name in the log")
    url: str = Field(pattern=r"^https?://", description="the webhook's URL (its path and query are never logged)")
    format: Literal["generic", "slack"] = Field(default="generic", description="generic JSON, or Slack's body")
    secret_file: str | None = Field(default=None, description="a file holding the HMAC secret (generic)")
    secret_env: str | None = Field(default=None, description="an environment variable holding the HMAC secret")
    triggers: list[Trigger] = Field(default_factory=lambda: list(TRIGGERS), description="what to send")
    timeout: float = Field(default=5.0, gt=0, description="seconds a delivery may take")
    retries: int = Field(default=5, ge=0, le=20, description="tries after the first, with exponential backoff")
    backoff: float = Field(default=1.0, gt=0, description="seconds before the first retry (doubled each time)")
    max_pending: int = Field(default=1000, gt=0, description="events it may fall behind before skipping the oldest")

    def secret(self) -> bytes | None:
        if self.secret_file:
            try:
                return Path(self.secret_file).read_bytes().strip()
            except OSError as e:
                raise ConfigError(f"notify sink {self.name}: cannot read secret_file {self.secret_file}: "
                                  f"{e.strerror}") from None
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if not value:
                raise ConfigError(f"notify sink {self.name}: the environment variable {self.secret_env} is not set")
            return value.encode()
        return None

    @property
    def endpoint(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
