"""``gitops init`` and ``gitops log``: the event log itself (``verify``: ``integrity_cmds``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import click

from gitops.cli.app import Context, cli, pass_ctx
from gitops.cli.clusters import cluster_option, resolve_clusters
from gitops.cli.follow import Shown, follow
from gitops.cli.names import namespace_option, resolve_resource
from gitops.cli.render import STREAMS, Columns, effective_limit, newest, output_options, render_rows
from gitops.events.names import EVENT_TYPES, EventSource
from gitops.model.errors import CorruptDatabaseError, UsageError
from gitops.model.times import format_time, parse_time
from gitops.store.damage import find_damage
from gitops.store.migrate import latest_version
from gitops.store.rows import Stored

if TYPE_CHECKING:
    from gitops.events.models import Recorded


@cli.command()
@click.option("--rebuild-projections", is_flag=True,
              help="Also rebuild the projection tables (current state, changes) from the log: the repair for "
                   "what 'gitops verify --projections' finds.")
@pass_ctx
def init(ctx: Context, rebuild_projections: bool) -> None:
    """Create the event log (or upgrade its schema); harmless when it exists."""
    if ctx.db_url:
        with ctx.open_log(create=True) as log:
            n = log.count()
            if rebuild_projections:
                log.rebuild_projections()
        click.echo(f"initialised: {ctx.where} (PostgreSQL, {n} events)")
        if rebuild_projections:
            click.echo("rebuilt the projection tables from the log")
        return
    existed = ctx.db_path.exists()
    if existed and (damage := find_damage(ctx.db_path)) is not None:
        raise CorruptDatabaseError(f"{ctx.db_path} is damaged {damage}; init leaves it as it is (restore it from a "
                                   "copy: 'gitops verify' on the copy says whether it is whole)")
    with ctx.open_log(create=True) as log:
        n = log.count()
        if rebuild_projections:
            log.rebuild_projections()
    verb = "already initialised" if existed else "initialised"
    click.echo(f"{verb}: {ctx.db_path} (schema version {latest_version()}, {n} events)")
    if rebuild_projections:
        click.echo("rebuilt the projection tables from the log")


def _detail(type_: str, p: dict[str, Any]) -> str:
    """One short line saying what an event is about, for tables, from its payload as stored
    (a field an older event lacks is its model's default)."""
    if type_ == "git.rewritten":
        return f"{str(p.get('old_head'))[:12]} -> {str(p.get('new_head'))[:12]}"
    if type_ == "source.error" and p.get("path"):
        where = f"{p['path']}:{p['line']}" if p.get("line") is not None else str(p["path"])
        return f"{where}: {p.get('message')}"
    if type_ == "git.reconfigured":
        previous, settings = p.get("previous") or {}, p.get("settings") or {}
        changed = sorted(k for k in previous.keys() | settings.keys() if previous.get(k) != settings.get(k))
        if changed == ["scopes"]:
            kinds = ", ".join(sorted(settings.get("scopes") or {}))
            return f"the cluster now serves {kinds} as cluster-scoped; {str(p.get('commit'))[:12]} read again"
        return f"settings changed: {', '.join(changed)}; {str(p.get('commit'))[:12]} read again"
    if type_ == "audit":  # a collection-wide request says which collection (its event may name no object)
        what = f" {str(p.get('request_uri')).split('?')[0]}" if p.get("verb") == "deletecollection" else ""
        return f"{p.get('verb')}{what} -> {p.get('response_code')}"
    if type_ == "cluster.observed":
        return f"{p.get('change')}, by {p.get('attribution') or 'unknown'}"
    if type_ == "cluster.deleted":
        return f"{'found gone on relist' if p.get('synthetic') else 'deleted'}, by {p.get('attribution') or 'unknown'}"
    text = p.get("message")
    if isinstance(text, str):
        return text.strip().splitlines()[0] if text.strip() else ""
    path = p.get("path")
    return str(path) if path else ""


LOG_COLUMNS = Columns(("seq", "time", "type", "resource", "actor", "detail"),
                      ("seq", "time", "recorded", "type", "source", "resource", "actor", "revision", "detail"), "seq",
                      csv=("seq", "effective_at", "recorded_at", "type", "source", "resource", "actor", "revision",
                           "detail"), optional=("actor", "seq"))


def _short_row(s: Stored) -> dict[str, Any]:
    """An event for people, read without its model: times to the second, a commit by its
    first 12 digits."""
    return {
        "seq": s.seq,
        "time": s.effective_at[:19] + "Z",
        "recorded": s.recorded_at[:19] + "Z",
        "type": s.type,
        "source": s.source,
        "resource": s.resource,
        "actor": s.actor,
        "revision": (s.revision or "")[:12] or None,
        "detail": _detail(s.type, s.payload),
    }


def _row(r: Recorded) -> dict[str, Any]:
    """An event for programs: whole times, its payload through its model."""
    ev = r.event
    payload = ev.payload.model_dump(mode="json")
    return {
        "seq": r.seq,
        "type": ev.type,
        "effective_at": format_time(ev.effective_at),
        "recorded_at": format_time(r.recorded_at),
        "source": ev.source.value,
        "resource": ev.resource,
        "actor": ev.actor,
        "revision": ev.revision,
        "detail": _detail(ev.type, payload),
        "id": ev.id,
        "payload": payload,
        "hash": r.hash,
    }


@cli.command("log")
@click.option("--since-seq", type=click.IntRange(min=0), default=None, help="Only events after this seq.")
@click.option("--type", "-t", "types", multiple=True, metavar="T",
              help="Only events of this type (repeatable), e.g. git.commit.")
@click.option("--resource", "-r", default=None,
              help="Only events about this object: TYPE/NAME (with -n), TYPE/NAMESPACE/NAME or a key.")
@namespace_option
@click.option("--actor", default=None, help="Only events by this actor.")
@click.option("--source", type=click.Choice([s.value for s in EventSource]), default=None,
              help="Only events from this source.")
@click.option("--since", "since_time", default=None, metavar="TIME",
              help="Only events from this time on: RFC 3339, a date, or e.g. '2h ago' or '2h'.")
@click.option("--until", "until_time", default=None, metavar="TIME", help="Only events before this time.")
@click.option("--as-recorded", is_flag=True,
              help="Times mean when the log learned of an event, not when it took effect.")
@cluster_option
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="At most the newest this many events (tables default to 1000; 0 means no limit); says on "
                   "stderr when it left older ones out.")
@click.option("--reverse", is_flag=True, help="Newest first.")
@click.option("-w", "--watch", is_flag=True,
              help="After the events, follow new ones as they are appended (Ctrl-C stops).")
@output_options(*STREAMS)
@pass_ctx
def log_cmd(ctx: Context, since_seq: int | None, types: tuple[str, ...], resource: str | None, namespace: str | None,
            actor: str | None, source: str | None, since_time: str | None, until_time: str | None,
            as_recorded: bool, clusters: tuple[str, ...], limit: int | None, reverse: bool, watch: bool, output: str,
            no_headers: bool) -> None:
    """Show the event log in order, filtered."""
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise UsageError(f"unknown event type {unknown[0]!r}; known types: {', '.join(EVENT_TYPES)}")
    resource = resolve_resource(ctx, resource, namespace)
    start = parse_time(since_time) if since_time is not None else None
    end = parse_time(until_time) if until_time is not None else None
    if start is not None and end is not None and end <= start:
        raise UsageError(f"--until ({format_time(end)}) is not after --since ({format_time(start)})")
    short = output in ("table", "wide", "name")
    export = ctx.accessed("export", output=output, since=since_time, until=until_time, types=",".join(types),
                          resource=resource, actor=actor, source=source) if not short else nullcontext()
    with export, ctx.open_log() as log:
        only = resolve_clusters(log, clusters) if clusters else []

        filters = {"types": types, "resource": resource, "actor": actor, "source": source, "start": start,
                   "end": end, "time_axis": "recorded" if as_recorded else "effective", "clusters": only}
        # a table needs no event's model (and so imports none: a quarter of the command's start)
        read: Callable[..., Iterator[Any]] = log.read_stored if short else log.read
        row: Callable[[Any], dict[str, Any]] = _short_row if short else _row

        def fetch(descending: bool, n: int | None) -> Iterator[Any]:
            return read(since_seq=since_seq, limit=n, descending=descending, **filters)

        shown = Shown(log.last_seq())
        rows = map(row, shown.passing(newest(fetch, effective_limit(limit, output), reverse=reverse, what="events"),
                                      lambda r: int(r.seq)))
        render_rows(rows, output=output, columns=LOG_COLUMNS, no_headers=no_headers,
                    empty=None if watch else "no events match")
        if watch:
            follow(lambda after: read(since_seq=max(after, since_seq or 0), **filters), shown.last,
                   lambda found: render_rows(map(row, found), output=output, columns=LOG_COLUMNS, no_headers=True),
                   seq_of=lambda r: int(r.seq))
