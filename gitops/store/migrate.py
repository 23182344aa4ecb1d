"""Numbered SQL migrations from ``schema/migrations`` and the checks made on open.

A gitops database is marked by SQLite's ``application_id`` header field; its schema
version is ``user_version``, the number of the last migration applied. Each migration
runs in its own write transaction and re-reads the version under the lock, so two
processes opening a new file at once apply it once.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from gitops.model.errors import NotAGitOpsDatabaseError, SchemaTooNewError

__all__ = ["APPLICATION_ID", "MIGRATIONS_DIR", "latest_version", "migrate"]

APPLICATION_ID = 0x6769746F  # "gito"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql\Z")


def _migrations() -> list[tuple[int, Path]]:
    found = sorted((int(m.group(1)), p) for p in MIGRATIONS_DIR.iterdir() if (m := _NAME.match(p.name)))
    numbers = [n for n, _ in found]
    if numbers != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations in {MIGRATIONS_DIR} are not numbered 1..n: {numbers}")
    return found


def latest_version() -> int:
    return len(_migrations())


def _statements(sql: str) -> list[str]:
    """Split a script into statements the way SQLite sees them (triggers included)."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf)
            buf = ""
    if buf.strip() and not all(ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()):
        raise RuntimeError(f"incomplete SQL statement at the end of a migration: {buf!r}")
    return out


def _header(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """(application_id, user_version, tables), read in one statement, so in one snapshot:
    read one by one, a process that made the file's first tables between two reads made it
    look like another program's database (no id yet, but tables)."""
    app, version, tables = conn.execute(
        "SELECT a.application_id, v.user_version, (SELECT count(*) FROM sqlite_master) "
        "FROM pragma_application_id() AS a, pragma_user_version() AS v").fetchone()
    return int(app), int(version), int(tables)


def check(conn: sqlite3.Connection, where: str) -> int:
    """The schema version of an existing gitops database (0 for an empty file)."""
    app, version, tables = _header(conn)
    if app != APPLICATION_ID and (tables or version):
        raise NotAGitOpsDatabaseError(f"{where} is an SQLite database of another program, not a gitops database")
    latest = latest_version()
    if version > latest:
        raise SchemaTooNewError(
            f"{where} has schema version {version}, newer than this gitops knows ({latest}); upgrade gitops"
        )
    return version


def migrate(conn: sqlite3.Connection, where: str) -> int:
    """Bring the schema to the latest version; returns the number of migrations applied."""
    applied = 0
    for number, path in _migrations():
        if check(conn, where) >= number:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if check(conn, where) >= number:  # another process got here first
                conn.execute("COMMIT")
                continue
            for stmt in _statements(path.read_text()):
                conn.execute(stmt)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
            applied += 1
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return applied
