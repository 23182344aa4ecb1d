"""Rendering rows for people (rich tables) and for programs (JSON, YAML, CSV), streamed
where the format allows it."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gitops.query.report_render import cell

__all__ = ["TABLE_LIMIT", "effective_limit", "newest", "render_rows"]

T = TypeVar("T")
TABLE_LIMIT = 1000  # rows a table shows when no --limit is given


def newest(fetch: Callable[[bool, int | None], Iterable[T]], limit: int | None, *, reverse: bool,
           what: str = "rows") -> Iterable[T]:
    """The rows of a query (``fetch(descending, limit)``) that keeps the newest ``limit``
    (all when None), oldest first unless ``reverse``; says on stderr when older ones were
    left out, so that a limit never hides the recent, nor hides that it cut."""
    if limit is None:
        return fetch(reverse, None)
    got = list(fetch(True, limit + 1))
    if len(got) > limit:
        click.echo(f"showing the newest {limit} {what}; older ones were left out (--limit 0 shows all, --since "
                   "narrows)", err=True)
        got = got[:limit]
    return got if reverse else got[::-1]


def effective_limit(limit: int | None, output: str) -> int | None:
    """``--limit`` as given (0: none), else TABLE_LIMIT for a table and none for a format a
    program reads."""
    if limit is not None:
        return limit or None
    return TABLE_LIMIT if output == "table" else None

_NO_WRAP = frozenset({"seq", "time", "type", "revision"})


def render_rows(rows: Iterable[dict[str, Any]], *, columns: Sequence[str], output: str,
                title: str | None = None, empty: str | None = None) -> int:
    """Write ``rows`` in ``output`` format to stdout; returns how many were written.
    Tables show ``columns``; the machine formats carry every key of each row. A table with
    no rows is the line ``empty`` on stderr instead, when given."""
    n = 0
    out = sys.stdout
    if output == "json":
        out.write("[")
        for row in rows:
            out.write(("\n  " if n == 0 else ",\n  ") + json.dumps(row, default=str))
            n += 1
        out.write("\n]\n" if n else "]\n")
    elif output == "yaml":
        for row in rows:
            out.write(yaml.safe_dump([json.loads(json.dumps(row, default=str))], sort_keys=False))
            n += 1
        if n == 0:
            out.write("[]\n")
    elif output == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else cell(row.get(c)) for c in columns])  # no formulas
            n += 1
    else:
        table = Table(title=title, show_lines=False, header_style="bold")
        for c in columns:
            table.add_column(c, overflow="fold", no_wrap=c in _NO_WRAP)
        for row in rows:
            # Text, not str: a value from the log ("containers[name=web]") is never read as rich markup
            table.add_row(*[Text("" if row.get(c) is None else str(row.get(c))) for c in columns])
            n += 1
        if n == 0 and empty is not None:
            Console(stderr=True).print(empty, markup=False, highlight=False)  # as kubectl: "No resources found"
            return 0
        console = Console()
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console = Console(width=1000)  # piped or redirected: rows as long as they are, as kubectl prints them
        console.print(table)
    return n
