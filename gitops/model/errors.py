"""The whole exception tree of gitops, drawn once.

Every error the library raises on purpose is a ``GitOpsError``; the CLI turns each into
one readable line and a non-zero exit code, never a traceback::

    GitOpsError                      anything gitops raises on purpose
    ├── UsageError                   the user's input is wrong (exit code 2)
    │   ├── InvalidTimeError         a time that cannot be parsed
    │   ├── InvalidResourceKeyError  a ResourceKey string that cannot be parsed
    │   └── ConfigError              a config file or flag that cannot be used
    ├── StoreError                   the event log cannot be used as asked
    │   ├── NotAGitOpsDatabaseError  the file is not SQLite, or SQLite of another program
    │   ├── SchemaTooNewError        written by a newer gitops than this one
    │   ├── DatabaseLockedError      another process held the write lock too long
    │   ├── CorruptDatabaseError     SQLite reports the file damaged
    │   ├── TamperedLogError         the log's end disagrees with its recorded head: no writes
    │   └── ReadOnlyLogError         the file cannot be written (a read-only copy)
    ├── ManifestError                a document that is not a usable Kubernetes object
    ├── SourceError                  a source of events failed (not its content)
    │   ├── GitSourceError           a repository that cannot be read or fetched
    │   └── ClusterUnavailableError  the Kubernetes API cannot be reached or refused us
    └── HeadInvalidError             ingest worked, but the branch head is not valid desired state

Errors in *content* (bad YAML in a commit, a malformed manifest) are not raised past the
source that met them: they become ``source.error`` events, because the log must record
them and ingest must go on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "CheckpointMovedError",
    "ClusterIdentityError",
    "ClusterUnavailableError",
    "ConfigError",
    "CorruptDatabaseError",
    "DatabaseLockedError",
    "GitOpsError",
    "GitSourceError",
    "HeadInvalidError",
    "InvalidResourceKeyError",
    "InvalidTimeError",
    "ManifestError",
    "NotAGitOpsDatabaseError",
    "ProofError",
    "ReadOnlyLogError",
    "SchemaTooNewError",
    "SourceError",
    "StoreError",
    "TamperedLogError",
    "UsageError",
    "first_error",
]


class GitOpsError(Exception):
    """Base of every error gitops raises on purpose."""

    exit_code = 1


class UsageError(GitOpsError):
    """The user's input (flag, argument, config) is wrong."""

    exit_code = 2


class InvalidTimeError(UsageError):
    """A time string that is not RFC 3339, a date, or a relative time."""


class InvalidResourceKeyError(UsageError):
    """A string that is not a canonical ResourceKey."""


class ConfigError(UsageError):
    """A configuration file or option that cannot be used."""


class ClusterIdentityError(ConfigError):
    """The API server is another cluster than the one the log records under that cluster's
    origin (a kubeconfig or context that now points elsewhere)."""


class StoreError(GitOpsError):
    """The event log cannot be opened, read or written as asked."""


class NotAGitOpsDatabaseError(StoreError):
    """The file is not SQLite, or is an SQLite database of another program."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer gitops; this one will not touch it."""


class DatabaseLockedError(StoreError):
    """Another process held the write lock for longer than the busy timeout."""


class CorruptDatabaseError(StoreError):
    """SQLite reports the database file as damaged, or a row in it is not what gitops wrote."""

    @classmethod
    def unreadable_event(cls, seq: int, why: str) -> CorruptDatabaseError:
        """Event ``seq``'s row cannot be read (``why``): it was changed outside gitops, which
        ``gitops verify`` finds (the first row that no longer matches its hash)."""
        return cls(f"event seq {seq} cannot be read: {why}; was the log changed outside gitops? "
                   "'gitops verify' checks it")


class TamperedLogError(StoreError):
    """The log's last event and its recorded head disagree (rows cut off the end, or the head
    changed): every writer refuses, so that no append re-anchors the chain and erases the
    evidence, until an operator records the finding (``gitops verify --acknowledge``)."""


class CheckpointMovedError(StoreError):
    """An append made on the condition that a checkpoint still held what its writer read
    found another writer had moved it: nothing was written; the writer reads again."""


class ReadOnlyLogError(StoreError):
    """The database was opened read-only (a read-only copy, or ``--read-only``): it is read,
    never written."""


class ProofError(GitOpsError):
    """A proof or checkpoint that does not hold: the evidence says the log is not what was
    signed (exit 1, as a failed ``verify``), not that the command was misused."""


class ManifestError(GitOpsError):
    """A document that is not a usable Kubernetes object."""


class SourceError(GitOpsError):
    """A source of events (Git, the cluster, the audit log) failed."""


class GitSourceError(SourceError):
    """A repository that cannot be opened, read or fetched."""


class ClusterUnavailableError(SourceError):
    """The Kubernetes API cannot be reached, or refused our credentials."""


class HeadInvalidError(GitOpsError):
    """The pass was recorded, but the branch head holds errors: the desired state stays at
    the last valid commit. Not a failure of gitops; an exit code that scripts can see."""


def first_error(e: ValidationError) -> str:
    """A validation failure as one line: where, what, and how many more."""
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    msg = str(err["msg"]).removeprefix("Value error, ")  # pydantic's prefix for a validator's own words
    return f"{where}: {msg}{more}"
