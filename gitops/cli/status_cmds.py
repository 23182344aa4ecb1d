"""``gitops status`` and ``gitops diff``: how the cluster differs from Git, now or then."""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

import click

from gitops.cli.app import Context, cli, output_option, pass_ctx
from gitops.cli.render import render_rows
from gitops.diff import ObjectDiff, Op, Status
from gitops.model.keys import format_key, parse_key
from gitops.projections import resolve_at
from gitops.query import diff_at


def _at_option(f: Any) -> Any:
    f = click.option("--as-recorded", is_flag=True,
                     help="The time means what the log knew then, not what was in effect.")(f)
    return click.option("--at", "at_text", default="now", show_default=True, metavar="TIME|SHA",
                        help="RFC 3339, a date, a relative time ('2h ago', '2h'), or a commit sha.")(f)


def _instance_option(f: Any) -> Any:
    return click.option("--instance", default=None,
                        help="Report live objects labelled as this instance's that Git no longer has (orphans; "
                             "default: diff.instance, else reconcile.instance in the config).")(f)


def _diffs(ctx: Context, at_text: str, as_recorded: bool, resource: str | None,
           instance: str | None) -> tuple[str, list[ObjectDiff]]:
    key = format_key(parse_key(resource)) if resource is not None else None
    with ctx.open_log() as log:
        moment = resolve_at(log, at_text, as_recorded=as_recorded)
        instance = instance or ctx.config.diff.instance or ctx.config.reconcile.instance
        return moment.describe(), diff_at(log, moment, resource=key, instance=instance, settings=ctx.config.diff)


def _value(v: object) -> str:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)


@cli.command()
@_at_option
@_instance_option
@output_option("table", "json")
@pass_ctx
def status(ctx: Context, at_text: str, as_recorded: bool, instance: str | None, output: str) -> None:
    """Count the objects in sync, out of sync, missing and orphaned, and list them."""
    when, diffs = _diffs(ctx, at_text, as_recorded, None, instance)
    counts = Counter(d.status.value for d in diffs)
    rows = [{"resource": d.key, "status": d.status.value, "differences": len(d.items)} for d in diffs]
    if output == "json":
        sys.stdout.write(json.dumps({"at": when, "counts": {s.value: counts.get(s.value, 0) for s in Status},
                                     "objects": rows}, indent=2) + "\n")
        return
    render_rows(rows, columns=("resource", "status", "differences"), output="table", empty="nothing is desired")
    click.echo(f"{when}: " + ", ".join(f"{counts.get(s.value, 0)} {s.value}" for s in Status))


@cli.command()
@_at_option
@click.option("--resource", default=None, help="Only this object (a ResourceKey).")
@_instance_option
@output_option("text", "json")
@pass_ctx
def diff(ctx: Context, at_text: str, as_recorded: bool, resource: str | None, instance: str | None,
         output: str) -> None:
    """Show how the cluster differs from Git; exit 1 when it does (as kubectl diff)."""
    when, diffs = _diffs(ctx, at_text, as_recorded, resource, instance)
    differing = [d for d in diffs if d.status != Status.IN_SYNC]
    if output == "json":
        sys.stdout.write(json.dumps({"at": when, "objects": [
            {"resource": d.key, "status": d.status.value,
             "items": [{"op": i.op.value, "path": i.path, "desired": i.desired, "actual": i.actual}
                       for i in d.items]} for d in differing]}, indent=2, default=str) + "\n")
    else:
        for d in differing:
            click.secho(f"--- desired {d.key}\n+++ live {d.key} ({d.status.value})", bold=True)
            for i in d.items:  # unified: what Git wants (-, red), what runs (+, green)
                path = i.path or "(the whole object)"
                if (i.desired, i.actual) == (None, None):  # a Secret's value, or a whole object
                    click.secho(f"~ {path}: {i.op.value}", fg="yellow")
                    continue
                if i.op in (Op.CHANGED, Op.MISSING):
                    click.secho(f"- {path}: {_value(i.desired)}", fg="red")
                if i.op in (Op.CHANGED, Op.EXTRA):
                    click.secho(f"+ {path}: {_value(i.actual)}", fg="green")
        if not differing:
            click.echo(f"{when}: the cluster matches Git", err=True)
    if differing:
        sys.exit(1)
