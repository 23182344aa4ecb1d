"""``gitops status`` and ``gitops diff``: how the cluster differs from Git, now or then."""

from __future__ import annotations

import difflib
import json
import sys
from collections import Counter
from typing import Any

import click
import yaml

from gitops.cli.app import Context, cli, output_option, pass_ctx
from gitops.cli.render import render_rows
from gitops.diff import ObjectDiff, Status
from gitops.model.keys import format_key, parse_key
from gitops.projections import resolve_at
from gitops.query import ObjectView, diff_at, views_at


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
    """Show how the cluster differs from Git, as kubectl diff does; exit 1 when it does. Text:
    a unified diff of each object's normalised YAML (--- desired, +++ live); -o json: the
    differing fields."""
    key = format_key(parse_key(resource)) if resource is not None else None
    with ctx.open_log() as log:
        moment = resolve_at(log, at_text, as_recorded=as_recorded)
        instance = instance or ctx.config.diff.instance or ctx.config.reconcile.instance
        views = views_at(log, moment, resource=key, instance=instance, settings=ctx.config.diff,
                         views=output != "json")
    when = moment.describe()
    differing = [v for v in views if v.diff.status != Status.IN_SYNC]
    if output == "json":
        sys.stdout.write(json.dumps({"at": when, "objects": [
            {"resource": v.diff.key, "status": v.diff.status.value,
             "items": [{"op": i.op.value, "path": i.path, "desired": i.desired, "actual": i.actual}
                       for i in v.diff.items]} for v in differing]}, indent=2, default=str) + "\n")
    else:
        for v in differing:
            for line in _unified(v):
                colour = "red" if line.startswith("-") else "green" if line.startswith("+") else None
                bold = line.startswith(("---", "+++"))
                click.secho(line, fg=None if bold else colour, bold=bold)
        if not differing:
            click.echo(f"{when}: the cluster matches Git", err=True)
    if differing:
        sys.exit(1)


def _yaml_lines(obj: dict[str, Any] | None) -> list[str]:
    return [] if obj is None else yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).splitlines()


def _unified(v: ObjectView) -> list[str]:
    """The object's unified diff: Git's side (what the live object would be) against the live one."""
    where = f" ({v.diff.status.value})"
    lines = list(difflib.unified_diff(_yaml_lines(v.desired), _yaml_lines(v.live), lineterm="", n=3,
                                      fromfile=f"desired {v.diff.key}", tofile=f"live {v.diff.key}{where}"))
    if not lines:  # equal text, unequal objects: a Secret value, say; say what differs
        lines = [f"--- desired {v.diff.key}", f"+++ live {v.diff.key}{where}",
                 *(f"~ {i.path or '(the whole object)'}: {i.op.value}" for i in v.diff.items)]
    return lines
