"""``gitops compact``: pack the payloads of a log written before packing, every event and
hash unchanged (``gitops.store.compact``)."""

from __future__ import annotations

import os

import click

from gitops.cli.app import Context, cli, pass_ctx
from gitops.model.errors import StoreError


@cli.command("compact")
@click.option("--batch", type=click.IntRange(1), default=2_000, show_default=True,
              help="Events per transaction: writers wait at most one batch.")
@click.option("--no-vacuum", is_flag=True,
              help="SQLite: do not vacuum the file after (the space freed is then reused by new events, and the "
                   "file keeps its size).")
@pass_ctx
def compact_command(ctx: Context, batch: int, no_vacuum: bool) -> None:
    """Store the log's old payloads packed as new ones are (deltas of each object's versions); the events, the
    hashes and the chain's head do not change, and the log must verify before and after."""
    from gitops.store.compact import compact_log

    if not ctx.db_url and not ctx.db_path.exists():
        raise StoreError(f"no gitops database at {ctx.db_path}; create one with 'gitops init'")
    with ctx.accessed("compact", batch=batch), ctx.open_log(create=True) as log:  # create: the schema upgraded
        size = _size(log.location) if not log.postgresql else None
        result = compact_log(log, batch=batch, vacuum=not no_vacuum)
    after = _size(log.location) if size is not None else None  # closed: the WAL copied back into the file
    head = f"head seq {result.head[0]} {result.head[1]} unchanged" if result.head else "no events"
    line = (f"packed {result.packed} payloads: {result.before / 1e6:.1f} MB -> {result.after / 1e6:.1f} MB; "
            f"verified before and after, {head}")
    if size is not None and after is not None:
        line += f"; file {size / 1e6:.1f} MB -> {after / 1e6:.1f} MB"
    elif ctx.db_url:
        line += "; PostgreSQL reuses the space freed ('VACUUM FULL events' gives it back, with the table locked)"
    click.echo(line)


def _size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))
