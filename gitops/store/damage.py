"""Where an SQLite file is damaged: the page SQLite itself finds unreadable.

SQLite's error for a damaged file ("database disk image is malformed") does not say where.
Its ``dbstat`` virtual table walks every b-tree page and types the ones it cannot read as
``corrupted``; where ``dbstat`` is not compiled in, ``PRAGMA integrity_check`` names the
page in its report. Both read the whole file: they run only once a damage was met, and
when ``gitops init`` meets an existing file.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from gitops.store.files import read_only_uri

__all__ = ["find_damage"]

_PAGE = re.compile(r"\bpage (\d+)", re.IGNORECASE)


def find_damage(path: str | Path) -> str | None:
    """What is damaged in the file (``at page N (of TABLE)``, or what SQLite reports when it
    cannot say where), or None when SQLite finds it whole, or it is no SQLite file at all.
    One read-only connection, which leaves no ``-wal``/``-shm`` beside the file."""
    try:
        conn = sqlite3.connect(read_only_uri(Path(path)), uri=True)
    except sqlite3.Error:
        return None
    try:
        try:
            row = conn.execute("SELECT pageno, name FROM dbstat WHERE pagetype = 'corrupted' "
                               "ORDER BY pageno LIMIT 1").fetchone()
            if row is not None:
                return f"at page {int(row[0])} (of {row[1]})"
        except sqlite3.Error:
            pass  # no dbstat in this SQLite, or the schema itself is unreadable: integrity_check says more
        try:
            report = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(10)")]
        except sqlite3.DatabaseError as e:
            code = getattr(e, "sqlite_errorcode", 0) & 0xFF
            if code != sqlite3.SQLITE_CORRUPT:  # not an SQLite file at all, or not readable: not a damage
                return None
            return f"(SQLite cannot say where): {e}"
        if report == ["ok"]:
            return None
        m = _PAGE.search("\n".join(report))
        return f"at page {m.group(1)}" if m else f"(SQLite cannot say at which page): {'; '.join(report)}"
    finally:
        conn.close()
