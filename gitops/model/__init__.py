"""The shared vocabulary: ResourceKey, times, manifests and the error tree."""

from gitops.model.errors import (
    ClusterUnavailableError,
    ConfigError,
    CorruptDatabaseError,
    DatabaseLockedError,
    GitOpsError,
    GitSourceError,
    InvalidResourceKeyError,
    InvalidTimeError,
    ManifestError,
    NotAGitOpsDatabaseError,
    SchemaTooNewError,
    SourceError,
    StoreError,
    UsageError,
)
from gitops.model.keys import ResourceKey, format_key, key_of, parse_key
from gitops.model.times import format_time, parse_time, utc_now

__all__ = [
    "ClusterUnavailableError",
    "ConfigError",
    "CorruptDatabaseError",
    "DatabaseLockedError",
    "GitOpsError",
    "GitSourceError",
    "InvalidResourceKeyError",
    "InvalidTimeError",
    "ManifestError",
    "NotAGitOpsDatabaseError",
    "ResourceKey",
    "SchemaTooNewError",
    "SourceError",
    "StoreError",
    "UsageError",
    "format_key",
    "format_time",
    "key_of",
    "parse_key",
    "parse_time",
    "utc_now",
]
