"""How the database file is opened when it must not be written: the one place that knows
which SQLite URI leaves no ``-wal``/``-shm`` beside a read-only copy."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["read_only_uri", "writable"]


def writable(path: Path) -> bool:
    """Whether the file and its directory (where SQLite keeps ``-wal`` and ``-shm``) can be written."""
    return os.access(path, os.W_OK) and os.access(path.absolute().parent, os.W_OK)


def read_only_uri(path: Path, immutable: bool = False) -> str:
    """The URI that opens ``path`` read-only without creating ``-wal``/``-shm`` beside it:
    ``immutable=1`` (SQLite takes no locks and reads no WAL) when asked, or when no ``-wal``
    exists, so that the file holds everything committed; else ``mode=ro``, which reads the
    ``-wal`` there is (and uses its ``-shm``). A read-only copy is read as it is; a log that
    a process is writing is read without ``--read-only``."""
    wal = path.with_name(path.name + "-wal")
    return f"{path.absolute().as_uri()}?mode=ro" + ("&immutable=1" if immutable or not wal.exists() else "")
