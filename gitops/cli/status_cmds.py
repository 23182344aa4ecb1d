"""``gitops status`` and ``gitops diff``: how the cluster differs from Git, now or then."""

from __future__ import annotations

import difflib
import json
import sys
import time
from typing import Any

import click

from gitops.cli.app import Context, cli, pass_ctx
from gitops.cli.clusters import cluster_option, resolve_clusters, resolve_git_source
from gitops.cli.names import namespace_option, resolve_resource
from gitops.cli.render import LISTS, Columns, output_options, render_document, render_rows, use_colour
from gitops.diff import Status
from gitops.events import SourceErrorEvent
from gitops.model.clusters import cluster_name
from gitops.model.selector import parse_selector
from gitops.projections import Moment, desired_at, resolve_at
from gitops.query import ObjectView, views_at
from gitops.query.status import Only, StatusView, status_at

AT_HELP = ("RFC 3339, a local date and time ('2026-12-03 11:00'), a relative time ('2h ago', '2h'), or a commit "
           "(a sha or unique prefix, HEAD, or a branch name).")
STATUS_COLUMNS = Columns(("resource", "status", "health", "differences"),
                         ("resource", "status", "health", "differences", "reason", "commit", "path"), "resource")
STATUS_COLUMNS_CLUSTERS = Columns(("cluster", *STATUS_COLUMNS.narrow), ("cluster", *STATUS_COLUMNS.wide), "resource")
_SHOWN_ERRORS = 5  # of an invalid head, printed above the table


def at_option(f: Any) -> Any:
    f = click.option("--as-recorded", is_flag=True,
                     help="The time means what the log knew then, not what was in effect.")(f)
    return click.option("--at", "at_text", default="now", show_default=True, metavar="TIME|COMMIT", help=AT_HELP)(f)


def _filters(f: Any) -> Any:
    f = click.option("-l", "--selector", default=None, metavar="SELECTOR",
                     help="Only objects whose labels match (kubectl's syntax: app=web,tier!=cache, env in (a,b)).")(f)
    f = namespace_option(f)
    f = click.option("--resource", default=None,
                     help="Only this object: TYPE/NAME (with -n), TYPE/NAMESPACE/NAME or a key.")(f)
    f = cluster_option(f)
    return click.option("--instance", default=None,
                        help="Report live objects labelled as this instance's that Git no longer has (orphans; "
                             "default: diff.instance, else reconcile.instance in the config).")(f)


def _each(clusters: list[str]) -> list[str | None]:
    """The clusters to show one by one; [None] (all, as one) for a log of no cluster yet."""
    return list(clusters) or [None]


def _only(ctx: Context, resource: str | None, namespace: str | None, selector: str | None) -> Only:
    return Only(resolve_resource(ctx, resource, namespace), namespace,
                parse_selector(selector) if selector is not None else None)


def _status_doc(moment: Moment, view: StatusView) -> dict[str, Any]:
    head = view.head
    return {
        **moment.as_json(), "commit_in_force": view.commit,
        "head": None if head is None else {"commit": head.payload.sha, "valid": head.payload.valid,
                                           "errors": head.payload.errors,
                                           "problems": [{"code": e.payload.code, "path": e.payload.path,
                                                         "line": e.payload.line, "message": e.payload.message,
                                                         "commit": e.payload.commit} for e in view.errors]},
        "in_sync": view.in_sync, "healthy": view.healthy, "counts": view.counts,
        "health_counts": view.health_counts, "objects": _status_rows(view),
        "warnings": [{"code": w.payload.code, "path": w.payload.path, "message": w.payload.message,
                      "commit": w.payload.commit} for w in view.warnings],
    }


def _status_rows(view: StatusView) -> list[dict[str, Any]]:
    out = []
    for d, e in view.objects:
        judged = view.health.get(d.key)
        out.append({"resource": d.key, "status": d.status.value,
                    "health": view.health_of(d.key) if e is not None else None, "differences": len(d.items),
                    "reason": (judged.reason or judged.detail) if judged is not None else None,
                    "commit": e.commit if e is not None else None, "path": e.path if e is not None else None})
    return out


def echo_head_errors(errors: list[SourceErrorEvent]) -> None:
    """The errors that make the head invalid, on stderr: the first few, with file, line and
    commit, then how many more."""
    for e in errors[:_SHOWN_ERRORS]:
        click.echo(f"error: {e.payload.where}: {e.payload.message} (commit {(e.payload.commit or '')[:12]})", err=True)
    if len(errors) > _SHOWN_ERRORS:
        click.echo(f"error: and {len(errors) - _SHOWN_ERRORS} more (gitops log --type source.error)", err=True)


def _print_status(moment: Moment, views: dict[str, StatusView], output: str, no_headers: bool) -> None:
    """One cluster's status as it always was; a log of many clusters: each cluster's, under its name."""
    if output in ("json", "yaml"):
        if len(views) == 1:
            render_document(_status_doc(moment, next(iter(views.values()))), output)
        else:
            render_document({**moment.as_json(), "clusters": [
                {"cluster": cluster_name(c), **_status_doc(moment, v)} for c, v in views.items()]}, output)
        return
    for n, (cluster, view) in enumerate(views.items()):
        if len(views) > 1 and output in ("table", "wide") and not no_headers:
            click.echo(f"{chr(10) if n else ''}cluster {cluster_name(cluster)}")
        _print_one(moment, view, output, no_headers, cluster if len(views) > 1 else None)


def _print_one(moment: Moment, view: StatusView, output: str, no_headers: bool, cluster: str | None) -> None:
    rows = _status_rows(view)
    if cluster is not None and output not in ("table", "wide"):
        rows = [{"cluster": cluster_name(cluster), **r} for r in rows]
    if output in ("table", "wide") and not no_headers:
        commit = f"commit {view.commit[:12]} in force" if view.commit else "no valid commit in force"
        if view.head is not None:
            n = view.head.payload.errors
            commit += (f"; the newest commit, {view.head.payload.sha[:12]}, is invalid "
                       f"({n} error{'' if n == 1 else 's'})")
        click.echo(f"{moment.describe()}: {commit}")
        echo_head_errors(view.errors)
        click.echo(", ".join(f"{n} {s}" for s, n in view.counts.items()))
        if view.health_counts:
            click.echo("health: " + ", ".join(f"{n} {s}" for s, n in view.health_counts.items()))
        for w in view.warnings:
            click.echo(f"warning: {w.payload.path or '(repository)'}: {w.payload.message} (recorded at commit "
                       f"{(w.payload.commit or '')[:12]})", err=True)
        if rows:
            click.echo("")
    columns = STATUS_COLUMNS if cluster is None or output in ("table", "wide") else STATUS_COLUMNS_CLUSTERS
    render_rows(({**r, "commit": (r["commit"] or "")[:12]} if output in ("table", "wide") else r for r in rows),
                columns=columns, output=output, no_headers=no_headers,
                empty="nothing is desired" if output in ("table", "wide") else None)


@cli.command()
@at_option
@_filters
@click.option("--exit-code", is_flag=True, help="Exit 1 when anything is out of sync, missing or orphaned.")
@click.option("-w", "--watch", is_flag=True, help="Print the status again whenever the log changes (Ctrl-C stops).")
@output_options(*LISTS)
@pass_ctx
def status(ctx: Context, at_text: str, as_recorded: bool, instance: str | None, clusters: tuple[str, ...],
           resource: str | None, namespace: str | None, selector: str | None, exit_code: bool, watch: bool,
           output: str, no_headers: bool) -> None:
    """The commit in force, and the objects in sync, out of sync, missing and orphaned."""
    only = _only(ctx, resource, namespace, selector)
    instance = instance or ctx.config.diff.instance or ctx.config.reconcile.instance
    seen = -1
    try:
        while True:
            with ctx.open_log() as log:
                last = log.last_seq()
                if last != seen:
                    source = resolve_git_source(log, ctx.config.git)
                    moment = resolve_at(log, at_text, as_recorded=as_recorded, origin=source)
                    views = {c or "": status_at(log, moment, only=only, instance=instance, settings=ctx.config.diff,
                                                cluster=c, source=source)
                             for c in _each(resolve_clusters(log, clusters))}
            if last != seen:
                if seen >= 0:
                    click.echo("")
                _print_status(moment, views, output, no_headers)
                sys.stdout.flush()
                seen = last
            if not watch:
                break
            time.sleep(1)
    except KeyboardInterrupt:  # --watch ends with Ctrl-C, as a success (kubectl get -w)
        return
    if exit_code and not all(v.in_sync for v in views.values()):
        sys.exit(1)


@cli.command()
@at_option
@_filters
@click.option("-o", "--output", type=click.Choice(["text", "table", "wide", "json", "yaml", "csv", "name"]),
              default="text", show_default=True,
              help="text: a unified diff; table/wide/csv: a row per differing field; json/yaml: the differing "
                   "fields; name: the objects.")
@click.option("--no-headers", is_flag=True, help="Leave the header out of tables and CSV.")
@pass_ctx
def diff(ctx: Context, at_text: str, as_recorded: bool, resource: str | None, namespace: str | None,
         selector: str | None, clusters: tuple[str, ...], instance: str | None, output: str, no_headers: bool) -> None:
    """Show how the cluster differs from Git, as kubectl diff does; exit 1 when it does. Text:
    a unified diff of each object's normalised YAML (--- desired, +++ live); -o json: the
    differing fields."""
    only = _only(ctx, resource, namespace, selector)
    with ctx.open_log() as log:
        source = resolve_git_source(log, ctx.config.git)
        moment = resolve_at(log, at_text, as_recorded=as_recorded, origin=source)
        instance = instance or ctx.config.diff.instance or ctx.config.reconcile.instance
        targets = resolve_clusters(log, clusters)
        desired = None if source is None else desired_at(log, moment, origin=source)
        # each cluster against Git on its own: two clusters' objects are never folded into one
        views = [(c, v) for c in _each(targets)
                 for v in views_at(log, moment, instance=instance, settings=ctx.config.diff, views=output == "text",
                                   only=only, cluster=c, desired=desired)]
    many = len(targets) > 1
    differing = [(c, v) for c, v in views if v.diff.status != Status.IN_SYNC]
    if output in ("json", "yaml"):
        render_document({**moment.as_json(), "objects": [
            {**({"cluster": cluster_name(c)} if many else {}), "resource": v.diff.key, "status": v.diff.status.value,
             "items": [{"op": i.op.value, "path": i.path, "desired": i.desired, "actual": i.actual}
                       for i in v.diff.items]} for c, v in differing]}, output)
    elif output == "name":
        for c, v in differing:
            click.echo(f"{cluster_name(c)}:{v.diff.key}" if many else v.diff.key)
    elif output in ("table", "wide", "csv"):
        render_rows(({**({"cluster": cluster_name(c)} if many else {}), "resource": v.diff.key,
                      "status": v.diff.status.value, "op": i.op.value,
                      "path": i.path or "(the whole object)", "desired": _short(i.desired), "live": _short(i.actual)}
                     for c, v in differing for i in v.diff.items),
                    columns=DIFF_COLUMNS_CLUSTERS if many else DIFF_COLUMNS, output=output,
                    no_headers=no_headers, empty=f"{moment.describe()}: the cluster matches Git")
    else:
        colour = use_colour()
        for c, v in differing:
            if many:
                click.echo(f"# cluster {cluster_name(c)}")
            lines = _unified(v)
            if not colour:  # one write an object, not one a line: 100,000 lines for 9,000 objects
                click.echo("\n".join(lines))
                continue
            for line in lines:
                fg = "red" if line.startswith("-") else "green" if line.startswith("+") else None
                bold = line.startswith(("---", "+++"))
                click.echo(click.style(line, fg=None if bold else fg, bold=bold))
        if not differing:
            click.echo(f"{moment.describe()}: the cluster matches Git", err=True)
    if differing:
        sys.exit(1)


DIFF_COLUMNS = Columns(("resource", "op", "path"), ("resource", "status", "op", "path", "desired", "live"), "resource")
DIFF_COLUMNS_CLUSTERS = Columns(("cluster", *DIFF_COLUMNS.narrow), ("cluster", *DIFF_COLUMNS.wide), "resource")


def _short(value: Any) -> str:
    """A field's value in one cell: JSON for structures."""
    return "" if value is None else value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _yaml_lines(obj: dict[str, Any] | None) -> list[str]:
    from gitops.model.yaml_out import dump  # libyaml's emitter; status, in this module too, writes no YAML

    return [] if obj is None else dump(obj, sort_keys=True).splitlines()


def _unified(v: ObjectView) -> list[str]:
    """The object's unified diff: Git's side (what the live object would be) against the live one."""
    where = f" ({v.diff.status.value})"
    lines = list(difflib.unified_diff(_yaml_lines(v.desired), _yaml_lines(v.live), lineterm="", n=3,
                                      fromfile=f"desired {v.diff.key}", tofile=f"live {v.diff.key}{where}"))
    if not lines:  # equal text, unequal objects: a Secret value, say; say what differs
        lines = [f"--- desired {v.diff.key}", f"+++ live {v.diff.key}{where}",
                 *(f"~ {i.path or '(the whole object)'}: {i.op.value}" for i in v.diff.items)]
    return lines
