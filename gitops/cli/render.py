"""Rendering rows for people (rich tables) and for programs (JSON, YAML, CSV), streamed
where the format allows it."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gitops.query.report_render import cell

__all__ = ["render_rows"]

_NO_WRAP = frozenset({"seq", "time", "type", "revision"})


def render_rows(rows: Iterable[dict[str, Any]], *, columns: Sequence[str], output: str,
                title: str | None = None, table_limit: int | None = None, empty: str | None = None) -> int:
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
        more = False
        for row in rows:
            if table_limit is not None and n >= table_limit:
                more = True
                break
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
        if more:
            console.print(f"[dim]showing the first {table_limit} rows; narrow the query, raise --limit, "
                          "or use -o json/csv for all[/dim]")
    return n
