"""Rendering rows for people (tables) and for programs (JSON, YAML, CSV, names), as kubectl
does: one ``-o`` flag on every command that lists or shows.

- ``table`` (the default) shows the columns that fit 80 characters; ``wide`` adds the rest,
  and cuts nothing: its rows are as long as their values, as kubectl's ``-o wide``.
  In a terminal, rich lays them out to its width (no box, a cut value ends in "…", the last
  column wraps at words), leaving out the command's optional columns, one by one, while
  they do not fit; piped or redirected, plain columns as long as their values, three
  spaces apart, with no box-drawing characters, so that ``grep`` and ``awk`` read them.
  ``NO_COLOR`` turns colour off (rich honours it; so do the diff's colours).
- ``json`` is one document; ``jsonl`` (commands that stream) one object a line; ``yaml``
  one document; ``csv`` a header and a row each, with cells a spreadsheet never runs as
  formulas; ``name`` the one identifying field of each row, a line each.
- ``--no-headers`` leaves the header out of tables and CSV.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from gitops.query.cells import cell

__all__ = ["LISTS", "STREAMS", "TABLE_LIMIT", "Columns", "effective_limit", "newest", "output_options",
           "render_document", "render_rows", "use_colour"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
TABLE_LIMIT = 1000  # rows a table shows when no --limit is given
LISTS = ("table", "wide", "json", "yaml", "csv", "name")  # what every listing command takes
STREAMS = (*LISTS, "jsonl")  # ... and those that stream events


@dataclass(frozen=True)
class Columns:
    """A command's columns: ``narrow`` for the default table, ``wide`` (which starts with
    them) for ``-o wide`` and CSV (unless ``csv`` names others), and the field ``-o name``
    prints."""

    narrow: Sequence[str]
    wide: Sequence[str]
    name: str
    csv: Sequence[str] | None = None
    optional: Sequence[str] = ()  # narrow columns a terminal too narrow for them leaves out, first ones first

    def of(self, output: str) -> Sequence[str]:
        return self.narrow if output == "table" else self.wide


def output_options(*formats: str, default: str = "table") -> Callable[[F], F]:
    """``-o/--output`` (``formats``, the first the default unless ``default``) and
    ``--no-headers``."""

    def deco(f: F) -> F:
        f = click.option("--no-headers", is_flag=True, help="Leave the header out of tables and CSV.")(f)
        return click.option("-o", "--output", type=click.Choice(formats), default=default, show_default=True,
                            help="Output format (wide: every column; name: one name a line).")(f)

    return deco


def use_colour() -> bool:
    """Colour for people: a terminal, and NO_COLOR (https://no-color.org) unset."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


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
    return TABLE_LIMIT if output in ("table", "wide") else None


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _jsonable(row: Any) -> Any:
    return json.loads(json.dumps(row, default=str))


def _yaml(doc: Any) -> str:
    """``doc`` as YAML."""
    from gitops.model.yaml_out import dump  # PyYAML is imported by the commands that write YAML only

    return dump(_jsonable(doc))


def _yaml_items(items: Iterable[Any]) -> int:
    """``items`` (JSON's types) as one YAML list on stdout, one at a time; how many."""
    from gitops.model.yaml_out import dump_items

    return dump_items(items, sys.stdout)


def render_document(doc: Any, output: str) -> None:
    """One document (a dict or list) as JSON or YAML."""
    if output == "yaml":
        sys.stdout.write(_yaml(doc))
    else:
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def stream_document(head: dict[str, Any], lists: dict[str, Iterable[dict[str, Any]] | None], output: str) -> None:
    """``head`` (scalars) and then each of ``lists`` (skipping None) as one JSON or YAML
    document, exactly as ``render_document`` writes it whole, written one item at a time: a
    list of 10,000 objects is never held as one document, nor its text as one string. The
    items hold JSON's types only (what the log's payloads hold)."""
    out = sys.stdout.write
    present = [(k, v) for k, v in lists.items() if v is not None]
    if output == "yaml":
        if head:
            out(_yaml(head))
        for name, items in present:
            it = iter(items)
            first = next(it, None)
            if first is None:
                out(f"{name}: []\n")
                continue
            out(f"{name}:\n")
            _yaml_items(itertools.chain([first], it))
        return
    out("{")
    fields = [json.dumps(k) + ": " + json.dumps(v, default=str) for k, v in head.items()]
    out(",".join("\n  " + f for f in fields))
    for n, (name, items) in enumerate(present):
        out(("," if fields or n else "") + "\n  " + json.dumps(name) + ": [")
        sep = ""
        for item in items:
            body = json.dumps(item, indent=2, default=str).replace("\n", "\n    ")
            out(f"{sep}\n    {body}")
            sep = ","
        out("\n  ]" if sep else "]")
    out("\n}\n" if fields or present else "}\n")


_WRAPS = 16  # the width the last column of a terminal table is given, at least, before columns are left out


def _fitting(columns: Sequence[str], cells: list[list[str]], optional: Sequence[str], width: int) -> list[int]:
    """The indexes of ``columns`` to show in ``width``: all, less the optional ones (in their
    order) while their natural widths do not fit (the last column's at most ``_WRAPS``: it
    wraps)."""
    natural = {i: max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)}
    keep = list(range(len(columns)))

    def wanted() -> int:
        *fixed, last = keep
        return sum(natural[i] for i in fixed) + min(natural[last], max(_WRAPS, len(columns[last]))) + 3 * len(fixed)

    for name in optional:
        if len(keep) < 2 or wanted() <= width:
            break
        if name in columns:
            keep.remove(columns.index(name))
    return keep


def _table(rows: Iterable[dict[str, Any]], columns: Sequence[str], *, headers: bool, title: str | None,
           empty: str | None, optional: Sequence[str] = (), whole: bool = False) -> int:
    cells = [[_plain(row.get(c)) for c in columns] for row in rows]
    if not cells and empty is not None:
        click.echo(empty, err=True)
        return 0
    console = None
    if not whole and (sys.stdout.isatty() or os.environ.get("FORCE_TERMINAL")):
        from rich.console import Console  # a terminal only: a pipe never pays for rich

        console = Console()
    if console is None or not console.is_terminal:  # piped, or -o wide: plain columns, nothing cut, as kubectl
        widths = [max([len(c) if headers else 0, *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        out = sys.stdout
        if title:
            out.write(title + "\n")
        for line in ([[c.upper() for c in columns]] if headers else []) + cells:
            out.write("   ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")
        return len(cells)
    from rich.table import Table
    from rich.text import Text

    keep = _fitting(columns, cells, optional, console.width)
    table = Table(title=title, box=None, show_header=headers, header_style="" if os.environ.get("NO_COLOR") else
                  "bold", pad_edge=False, padding=(0, 3, 0, 0))
    for n, i in enumerate(keep):
        last = n == len(keep) - 1
        # the last column wraps at words; a word longer than its width ends in "…", never split letter by letter
        table.add_column(columns[i].upper(), overflow="ellipsis", no_wrap=not last, min_width=len(columns[i]))
    for line in cells:
        table.add_row(*(Text(line[i]) for i in keep))  # Text: a value from the log is never read as rich markup
    console.print(table)
    return len(cells)


def render_rows(rows: Iterable[dict[str, Any]], *, columns: Columns | Sequence[str], output: str,
                no_headers: bool = False, title: str | None = None, empty: str | None = None) -> int:
    """Write ``rows`` in ``output`` format to stdout; returns how many were written. Tables
    and CSV show ``columns``; JSON, JSONL and YAML carry every key of each row. A table with
    no rows is the line ``empty`` on stderr instead, when given (as kubectl's "No
    resources found")."""
    cols = columns if isinstance(columns, Columns) else Columns(columns, columns, columns[0])
    n = 0
    out = sys.stdout
    if output == "json":
        out.write("[")
        for row in rows:
            out.write(("\n  " if n == 0 else ",\n  ") + json.dumps(row, default=str))
            n += 1
        out.write("\n]\n" if n else "]\n")
    elif output == "jsonl":
        for row in rows:
            out.write(json.dumps(row, default=str) + "\n")
            n += 1
    elif output == "yaml":  # on libyaml's emitter: PyYAML's own took 1 ms a row (98 s for 100,000 events)
        n = _yaml_items(map(_jsonable, rows))
    elif output == "name":
        for row in rows:
            out.write(_plain(row.get(cols.name)) + "\n")
            n += 1
    elif output == "csv":
        writer = csv.writer(out)
        names = cols.csv or cols.wide
        if not no_headers:
            writer.writerow(names)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else cell(row.get(c)) for c in names])  # no formulas
            n += 1
    else:
        n = _table(rows, cols.of(output), headers=not no_headers, title=title, empty=empty,
                   optional=cols.optional if output == "table" else (), whole=output == "wide")
    return n
