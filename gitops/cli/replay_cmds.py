"""``gitops replay``: the desired and the actual state as they were at any moment."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from gitops.cli.app import Context, cli, pass_ctx
from gitops.cli.clusters import cluster_option, resolve_clusters, resolve_git_source
from gitops.cli.names import namespace_option, resolve_resource
from gitops.cli.render import LISTS, Columns, output_options, render_rows, stream_document
from gitops.cli.status_cmds import AT_HELP
from gitops.model.clusters import cluster_name
from gitops.projections import (
    ActualEntry,
    DesiredEntry,
    actual_at,
    actual_entries,
    desired_at,
    desired_entries,
    resolve_at,
)
from gitops.projections.export import write_manifests

REPLAY_COLUMNS = Columns(("side", "resource", "revision", "by"),
                         ("side", "resource", "revision", "by", "path", "attribution", "seq"), "resource")


def _safe(name: str) -> str:
    """A cluster's name as a folder's (its URL's slashes and colons replaced)."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)


def _desired_row(key: str, e: DesiredEntry) -> dict[str, Any]:
    return {"key": key, "seq": e.seq, "commit": e.commit, "author": e.author, "path": e.path, "manifest": e.manifest}


def _actual_row(key: str, e: ActualEntry) -> dict[str, Any]:
    return {"key": key, "seq": e.seq, "resource_version": e.resource_version, "actor": e.actor,
            "attribution": e.attribution, "manifest": e.manifest}


@cli.command()
@click.option("--at", "at_text", required=True, metavar="TIME|COMMIT", help=AT_HELP)
@click.option("--side", type=click.Choice(["desired", "actual", "both"]), default="both", show_default=True,
              help="Which state to show.")
@click.option("--resource", default=None,
              help="Only this object: TYPE/NAME (with -n), TYPE/NAMESPACE/NAME or a key (Deployment.apps/shop/web).")
@namespace_option
@click.option("--as-recorded", is_flag=True, help="The time means what the log knew then, not what was in effect.")
@cluster_option
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write one manifest per object here, ready for 'kubectl apply -f DIR -R' (server fields "
                   "stripped; one folder per side when both).")
@output_options(*LISTS, default="yaml")
@pass_ctx
def replay(ctx: Context, at_text: str, side: str, resource: str | None, namespace: str | None, as_recorded: bool,
           clusters: tuple[str, ...], output_dir: Path | None, output: str, no_headers: bool) -> None:
    """Show the desired state, the actual state, or both, as they were at a past moment."""
    key = resolve_resource(ctx, resource, namespace)
    with ctx.accessed("replay", at=at_text, side=side, resource=key, output_dir=output_dir,
                      clusters=",".join(clusters) or None), ctx.open_log() as log:
        source = resolve_git_source(log, ctx.config.git)  # the config's reading of Git, else every one
        moment = resolve_at(log, at_text, as_recorded=as_recorded, origin=source)
        targets: list[str | None] = [*resolve_clusters(log, clusters)] or [None]
        many = len(targets) > 1  # each cluster's objects apart, named by cluster: never folded into one

        def named(c: str | None, row: dict[str, Any]) -> dict[str, Any]:
            return {"cluster": cluster_name(c), **row} if many else row

        if output in ("json", "yaml") and output_dir is None:
            # one object at a time, from the log to the output: 10,000 objects in bounded memory
            desired_rows = None if side == "actual" else (
                _desired_row(k, e) for k, e in desired_entries(log, moment, origin=source) if key is None or k == key)
            actual_rows = None if side == "desired" else (
                named(c, _actual_row(k, e)) for c in targets for k, e in actual_entries(log, moment, origin=c)
                if key is None or k == key)
            stream_document(moment.as_json(), {"desired": desired_rows, "actual": actual_rows}, output)
            return
        desired = desired_at(log, moment, origin=source) if side in ("desired", "both") else None
        actuals = {c: actual_at(log, moment, origin=c) for c in targets} if side in ("actual", "both") else {}
    if key is not None:
        desired = None if desired is None else {k: v for k, v in desired.items() if k == key}
        actuals = {c: {k: v for k, v in a.items() if k == key} for c, a in actuals.items()}
    if output_dir is not None:
        states: list[tuple[str, Mapping[str, DesiredEntry | ActualEntry] | None, Path]] = [
            ("desired", desired, output_dir / "desired" if side == "both" else output_dir)]
        for c, a in actuals.items():
            folder = output_dir / "actual" if side == "both" else output_dir
            states.append(("actual", a, folder / _safe(cluster_name(c)) if many else folder))
        for name, state, target in states:
            if state is None:
                continue
            written, skipped = write_manifests({k: e.manifest for k, e in state.items()}, target)
            click.echo(f"{name}: {len(written)} manifests in {target}", err=True)
            for k in skipped:
                click.echo(f"  {k} left out: the log holds digests of a Secret's values, not the values", err=True)
        return
    listed = [*((_desired_row(k, e), "desired") for k, e in sorted((desired or {}).items())),
              *((named(c, _actual_row(k, e)), f"actual@{cluster_name(c)}" if many else "actual")
                for c, a in actuals.items() for k, e in sorted(a.items()))]
    rows = [{"side": name, "resource": r["key"], "revision": (r.get("commit") or r.get("resource_version") or ""),
             "by": r.get("author") or r.get("actor") or "unknown", "path": r.get("path"),
             "attribution": r.get("attribution"), "seq": r["seq"]} for r, name in listed]
    if output in ("table", "wide"):
        rows = [{**r, "revision": r["revision"][:12]} for r in rows]
    render_rows(rows, columns=REPLAY_COLUMNS, output=output, no_headers=no_headers,
                empty=f"{moment.describe()}: nothing was desired or running")
