"""Which adapter a log's location names: a ``postgresql://`` URL is a PostgreSQL log
(``gitops.store.postgres``, imported only then: psycopg is not loaded for a SQLite file),
anything else a SQLite file (``gitops.store.log``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gitops.store.log import EventLog

__all__ = ["is_postgresql", "open_log", "where"]


def is_postgresql(db: str | Path) -> bool:
    """Whether ``db`` names a PostgreSQL log (a ``postgresql://`` or ``postgres://`` URL)."""
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


def where(db: str | Path) -> str:
    """How messages name the log: the file, or the server and database (never a password)."""
    if is_postgresql(db):
        from gitops.store.postgres import where as server

        return server(str(db))
    return str(db)


def open_log(db: str | Path, **options: Any) -> EventLog:
    """The event log at ``db`` (a file, or a PostgreSQL URL), with ``EventLog``'s options."""
    if is_postgresql(db):
        from gitops.store.postgres import PostgresEventLog

        return PostgresEventLog(str(db), **options)
    return EventLog(db, **options)
