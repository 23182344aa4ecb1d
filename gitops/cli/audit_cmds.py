"""``gitops audit`` (who changed what), ``gitops blame`` (who set each field) and ``gitops
report`` (the compliance report)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gitops.cli.app import Context, cli, pass_ctx
from gitops.cli.clusters import cluster_option, resolve_clusters
from gitops.cli.follow import Shown, follow
from gitops.cli.names import namespace_option, resolve_kind, resolve_resource
from gitops.cli.render import LISTS, STREAMS, Columns, effective_limit, newest, output_options, render_rows
from gitops.events.names import EVENT_TYPES, EventSource
from gitops.model.errors import CorruptDatabaseError, UsageError
from gitops.model.times import format_time, parse_time, utc_now
from gitops.projections import resolve_at
from gitops.query.audit import UNKNOWN, AuditRow, audit_rows, summary
from gitops.query.blame import blame

if TYPE_CHECKING:
    from gitops.query.report_render import HtmlParts

AUDIT_COLUMNS = Columns(("seq", "time", "actor", "how", "action", "resource", "changes"),
                        ("seq", "time", "cluster", "actor", "via", "source", "how", "action", "resource", "revision",
                         "out_of_band", "changes"), "seq", optional=("how", "seq", "action"))
AUDIT_COLUMNS_CLUSTERS = Columns(("seq", "time", "cluster", "actor", "how", "action", "resource", "changes"),
                                 AUDIT_COLUMNS.wide, "seq", optional=("how", "seq", "action"))
"""A log of many clusters: the table says which cluster each row is of."""
BLAME_COLUMNS = Columns(("side", "path", "value", "actor", "time"),
                        ("side", "path", "value", "actor", "time", "via", "how", "seq"), "path")


def _row(r: AuditRow) -> dict[str, Any]:
    return {"seq": r.seq, "time": format_time(r.time), "cluster": r.cluster, "actor": r.actor or UNKNOWN,
            "via": r.via or "",
            "source": r.source,
            "action": r.action, "resource": r.resource or "", "revision": r.revision or "", "how": r.how,
            "out_of_band": r.out_of_band, "changes": summary(r.changes) or r.detail}


def _json_row(r: AuditRow) -> dict[str, Any]:
    """A JSON line: the table's row, and for programs every changed field (a summary names
    four), with its old and new values (a Secret's as "(changed)"), and the detail."""
    return {**_row(r), "fields": [{"path": c.path, "old": c.old, "new": c.new} for c in r.changes if c.path],
            "detail": r.detail}


@cli.command()
@click.option("--resource", default=None,
              help="TYPE/NAME (with -n), TYPE/NAMESPACE/NAME or a key, or a glob of keys (deploy/shop/*).")
@click.option("--kind", default=None, help="A kind as kubectl takes it: Deployment, deploy, deployments.apps.")
@click.option("-n", "--namespace", default=None, help="Objects in this namespace (and the Namespace itself).")
@click.option("--actor", default=None,
              help="Author e-mail, user or field manager (a glob will do); 'unknown': changes no evidence names "
                   "anyone for.")
@click.option("--source", type=click.Choice([s.value for s in EventSource]), default=None,
              help="Only events from this source.")
@click.option("--type", "types", multiple=True, metavar="T", help="Event type (repeatable).")
@click.option("--since", default=None, metavar="TIME", help="From this time: RFC 3339, a date, '2h ago' or '2h'.")
@click.option("--until", default=None, metavar="TIME", help="Before this time.")
@click.option("--commit", default=None, metavar="SHA", help="Events of this commit (a prefix will do).")
@click.option("--out-of-band", is_flag=True, help="Only cluster changes made neither through Git nor the reconciler.")
@cluster_option
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="At most the newest this many rows (tables default to 1000; 0 means no limit); says on stderr "
                   "when it left older ones out.")
@click.option("--reverse", is_flag=True, help="Newest first.")
@click.option("-w", "--watch", is_flag=True,
              help="After the rows, follow new ones as they are appended (Ctrl-C stops).")
@output_options(*STREAMS)
@pass_ctx
def audit(ctx: Context, resource: str | None, kind: str | None, namespace: str | None, actor: str | None,
          source: str | None, types: tuple[str, ...], since: str | None, until: str | None, commit: str | None,
          out_of_band: bool, clusters: tuple[str, ...], limit: int | None, reverse: bool, watch: bool, output: str,
          no_headers: bool) -> None:
    """Who changed what: Git, cluster, audit-log and reconciler events in one timeline."""
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise UsageError(f"unknown event type {unknown[0]!r}; known types: {', '.join(EVENT_TYPES)}")
    resource = resolve_resource(ctx, resource, namespace, glob=True)
    kind = resolve_kind(ctx, kind)
    start = parse_time(since) if since else None
    end = parse_time(until) if until else None
    args = {"resource": resource, "kind": kind, "namespace": namespace, "actor": actor, "source": source,
            "types": ",".join(types), "since": since, "until": until, "commit": commit,
            "out_of_band": out_of_band or None, "clusters": ",".join(clusters) or None, "output": output}
    with ctx.accessed("audit", **args), ctx.open_log() as log:
        only = resolve_clusters(log, clusters) if clusters else []
        columns = AUDIT_COLUMNS_CLUSTERS if len(only or log.clusters()) > 1 else AUDIT_COLUMNS

        def fetch(descending: bool, n: int | None) -> Iterator[AuditRow]:
            return audit_rows(log, resource=resource, kind=kind, namespace=namespace, actor=actor, source=source,
                              types=types, since=start, until=end, commit=commit, out_of_band=out_of_band,
                              limit=n, descending=descending, clusters=only)

        shown = Shown(log.last_seq())
        checked = _Checked(log)
        found = shown.passing(newest(fetch, effective_limit(limit, output), reverse=reverse), lambda r: r.seq)
        people = output in ("table", "wide")
        render_rows((_table_row(r) if people else _json_row(r) for r in checked(found)), columns=columns,
                    output=output, no_headers=no_headers, empty=None if watch else "nothing matches")
        if watch:
            follow(lambda after: audit_rows(log, resource=resource, kind=kind, namespace=namespace, actor=actor,
                                            source=source, types=types, since=start, until=end, commit=commit,
                                            out_of_band=out_of_band, since_seq=after, clusters=only),
                   shown.last, lambda rows: render_rows((_table_row(r) if people else _json_row(r)
                                                         for r in checked(rows)),
                                                        columns=columns, output=output, no_headers=True),
                   seq_of=lambda r: r.seq)
        checked.say_unchecked()


class _Checked:
    """The rows an audit prints, their changed fields checked against the log first: they
    are read from the change projection, which the hash chain does not cover, so a row
    rewritten there would show fields that never changed. The first ``CHECKED_ROWS`` rows
    (every table: 1,000 by default) are checked, 500 at a time, about 40 µs a row; a longer
    output says on stderr that the rest were not (``gitops verify --projections`` checks
    the whole table, as the report's ``--verify-projections`` does)."""

    CHECKED_ROWS = 10_000
    _BATCH = 500

    def __init__(self, log: Any) -> None:
        self.log, self.count, self.unchecked = log, 0, 0

    def __call__(self, rows: Iterable[AuditRow]) -> Iterator[AuditRow]:
        it = iter(rows)
        while chunk := list(islice(it, self._BATCH)):
            todo = chunk[:max(0, self.CHECKED_ROWS - self.count)]
            self.count += len(chunk)
            self.unchecked += len(chunk) - len(todo)
            problems = self.log.check_changes([r.seq for r in todo]) if todo else []
            if problems:
                raise CorruptDatabaseError(
                    f"the change projection does not match the log: {problems[0]}"
                    f"{f' (and {len(problems) - 1} more in these rows)' if len(problems) > 1 else ''}; "
                    "'gitops verify --projections' lists every difference, 'gitops init --rebuild-projections' "
                    "rebuilds the table from the log")
            yield from chunk

    def say_unchecked(self) -> None:
        if self.unchecked:
            click.echo(f"note: the changed fields of the {self.unchecked:,} rows after the first "
                       f"{self.CHECKED_ROWS:,} were not checked against the log ('gitops verify --projections' "
                       "checks them all)", err=True)


def _table_row(r: AuditRow) -> dict[str, Any]:
    """A row for people: the time to the second, a commit by its first 12 digits (as
    gitops log shows it; the machine formats carry both whole), "via" beside the actor."""
    row = _row(r)
    return {**row, "time": row["time"][:19] + "Z", "revision": row["revision"][:12],
            "actor": f"{row['actor']} (via {row['via']})" if row["via"] else row["actor"]}


@cli.command("blame")
@click.argument("resource")
@namespace_option
@click.option("--at", "at_text", default="now", show_default=True, metavar="TIME|SHA",
              help="RFC 3339, a date, a relative time, or a commit sha.")
@click.option("--side", type=click.Choice(["desired", "live", "both"]), default="both", show_default=True,
              help="Git's fields, the cluster's, or both.")
@cluster_option
@output_options(*LISTS)
@pass_ctx
def blame_cmd(ctx: Context, resource: str, namespace: str | None, at_text: str, side: str,
              clusters: tuple[str, ...], output: str, no_headers: bool) -> None:
    """For each field of RESOURCE (TYPE/NAME, TYPE/NAMESPACE/NAME or a key), who last set
    it, when, and through what."""
    key = resolve_resource(ctx, resource, namespace)
    with ctx.accessed("blame", resource=key, at=at_text), ctx.open_log() as log:
        moment = resolve_at(log, at_text)
        only = resolve_clusters(log, clusters) if clusters else []
        lines = [b for b in blame(log, key, moment, clusters=only) if side in ("both", b.side.split("@")[0])]
        if not lines:
            raise UsageError(f"the log holds nothing about {key} at {moment.describe()}")
    rows = [{"side": b.side, "path": b.path, "value": b.value, "actor": b.actor or UNKNOWN,
             "time": format_time(b.time), "via": b.via, "how": b.how, "seq": b.seq} for b in lines]
    people = output in ("table", "wide", "csv", "name")
    render_rows(({**r, "value": json.dumps(r["value"]) if not isinstance(r["value"], str) else r["value"]}
                 if people else r for r in rows), output=output, columns=BLAME_COLUMNS, no_headers=no_headers)


@cli.command()
@click.option("--since", required=True, metavar="TIME",
              help="Start of the range: RFC 3339, a date, '30d ago' or '30d'.")
@click.option("--until", default=None, metavar="TIME", help="End of the range (default: now).")
@click.option("--format", "-o", "--output", "fmt", type=click.Choice(["html", "json", "csv"]), default="html",
              show_default=True,
              help="html: one self-contained page; json: the documented model; csv: one file per section.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="File to write (a directory for csv); default, or -: stdout for html and json.")
@click.option("--verify-projections", is_flag=True,
              help="Also compare the projection tables the report reads (which objects Git manages, each change's "
                   "fields) with the log: the hash chain does not cover them (config: report.verify_projections; "
                   "about 45 s for a million events).")
@cluster_option
@pass_ctx
def report(ctx: Context, since: str, until: str | None, fmt: str, out: Path | None, verify_projections: bool,
           clusters: tuple[str, ...]) -> None:
    """The compliance report over a time range: changes, out-of-band changes, drift, failures,
    integrity and coverage."""
    start = parse_time(since)
    end = parse_time(until) if until else utc_now()
    if out is not None and str(out) == "-":  # standard output, as kubectl -f - and most tools read "-"
        if fmt == "csv":
            raise UsageError("--format csv writes one file per section: give --out a directory, not -")
        out = None
    if fmt == "csv" and out is None:
        raise UsageError("--format csv writes one file per section: give a directory with --out")
    if out is not None:
        _check_writable(out, directory=fmt == "csv")
    from gitops.query.report import build_report  # the report's models and templates: for this command only
    from gitops.query.report_render import prepare_html, render_html, write_csv

    policy = ctx.config.report.model_copy(update={"verify_projections": True}) if verify_projections \
        else ctx.config.report
    with ctx.accessed("report", since=format_time(start), until=format_time(end), format=fmt,
                      out=out, clusters=",".join(clusters) or None,
                      verify_projections=policy.verify_projections or None), ctx.open_log() as log:
        parts: list[HtmlParts] = []  # the HTML page but its integrity section, made while the check runs
        r = build_report(log, start, end, policy,
                         clusters=resolve_clusters(log, clusters) if clusters else (),
                         meanwhile=(lambda body: parts.append(prepare_html(body))) if fmt == "html" else None)
    if not r.integrity.ok:
        click.secho(f"WARNING: the log failed verification: {r.integrity.problem}", fg="red", err=True, bold=True)
    if fmt == "csv":
        assert out is not None
        files = write_csv(r, out)
        click.echo(f"{len(files)} CSV files in {out}", err=True)
        sys.exit(0 if r.integrity.ok else 1)
    text = render_html(r, parts[0] if parts else None) if fmt == "html" else r.model_dump_json(indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"report written to {out}", err=True)
    if not r.integrity.ok:  # the report is evidence of it; its exit code says so too
        sys.exit(1)


def _check_writable(out: Path, *, directory: bool) -> None:
    """Refuse an --out that cannot be written before any work is done (one line, exit 2)."""
    if directory:
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: not a directory")
        parent = out if out.exists() else out.parent
    else:
        if out.is_dir():
            raise UsageError(f"--out {out}: is a directory")
        parent = out.parent
    if not parent.exists():
        raise UsageError(f"--out {out}: {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--out {out}: {parent} is not writable")
