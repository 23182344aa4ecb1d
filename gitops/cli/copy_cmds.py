"""``gitops copy``: move a log to another store (a SQLite file up to PostgreSQL) with every
hash unchanged; resumable (``gitops.store.copy``)."""

from __future__ import annotations

import click

from gitops.cli.app import cli
from gitops.model.errors import UsageError


@cli.command("copy")
@click.option("--from", "source", required=True, metavar="FILE|URL", help="The log to copy (it is only read).")
@click.option("--to", "target", required=True, metavar="FILE|URL",
              help="Where to copy it: a PostgreSQL URL postgresql://USER@HOST:PORT/DB or a SQLite file; made when "
                   "it does not exist; a copy that was stopped goes on where it stopped.")
@click.option("--batch", type=click.IntRange(1), default=5_000, show_default=True,
              help="Events per transaction of the target.")
def copy_command(source: str, target: str, batch: int) -> None:
    """Copy an event log to another store, every event and hash unchanged (verify of both gives the same head)."""
    from gitops.store.copy import copy_log
    from gitops.store.locate import open_log, where

    if where(source) == where(target):
        raise UsageError(f"--from and --to are the same log ({where(source)})")
    with open_log(source, create=False, read_only=True) as src, open_log(target, create=True) as dst:
        result = copy_log(src, dst, batch=batch)
    resumed = f" (resumed after seq {result.resumed_after})" if result.resumed_after else ""
    head = f"head seq {result.head[0]} {result.head[1]}" if result.head else "no events"
    click.echo(f"copied {result.copied} events{resumed} from {where(source)} to {where(target)}: {head}")
