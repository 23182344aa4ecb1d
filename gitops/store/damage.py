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

__all__ = ["damaged_page", "find_damage"]

_PAGE = re.compile(r"\bpage (\d+)", re.IGNORECASE)


def damaged_page(path: str | Path) -> tuple[int, str] | None:
    """(page, the table or index on it) of the first damaged page SQLite finds, or None."""
    try:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        try:
            row = conn.execute("SELECT pageno, name FROM dbstat WHERE pagetype = 'corrupted' "
                               "ORDER BY pageno LIMIT 1").fetchone()
            if row is not None:
                return int(row[0]), str(row[1])
        except sqlite3.Error:
            pass
        try:
            report = "\n".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check(10)"))
        except sqlite3.Error:
            return None
        m = _PAGE.search(report)
        return (int(m.group(1)), "") if m else None
    finally:
        conn.close()


def find_damage(path: str | Path) -> str | None:
    """What is damaged in the file (``at page N (of TABLE): ...``), or None when SQLite
    finds it whole."""
    found = damaged_page(path)
    if found is not None:
        page, name = found
        return f"at page {page}{f' (of {name})' if name else ''}"
    try:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(10)")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        code = getattr(e, "sqlite_errorcode", 0) & 0xFF
        if code != sqlite3.SQLITE_CORRUPT:  # not an SQLite file at all, or not readable: not a damage
            return None
        return f"(SQLite cannot say where): {e}"
    return None if rows == ["ok"] else f"(SQLite cannot say at which page): {'; '.join(rows)}"
