"""The verbs of Argo CD and Flux users: ``history`` (the passes), ``suspend`` / ``resume``
(reconciliation of an instance) and ``wait`` (until in sync, or until a commit is)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import click

from gitops.cli.app import Context, cli, pass_ctx
from gitops.cli.clusters import resolve_git_source
from gitops.cli.render import LISTS, Columns, effective_limit, output_options, render_rows
from gitops.model.errors import GitOpsError, HeadInvalidError, UsageError
from gitops.model.revisions import sha_prefix
from gitops.model.times import format_time, parse_duration, parse_time
from gitops.projections import resolve_at
from gitops.query.history import Pass, passes
from gitops.query.status import StatusView, status_at
from gitops.reconcile.suspension import set_suspended, suspension

HISTORY_COLUMNS = Columns(("seq", "time", "trigger", "commit", "outcome", "changes"),
                          ("seq", "time", "instance", "trigger", "mode", "commit", "outcome", "created", "updated",
                           "pruned", "failed", "out_of_sync", "duration_seconds", "held"), "seq",
                          optional=("trigger", "seq"))


class WaitTimeoutError(GitOpsError):
    """``gitops wait`` ran out of time: exit 1, as ``kubectl wait`` does."""

    exit_code = 1


def _instance(ctx: Context, instance: str | None) -> str:
    return instance or ctx.config.reconcile.instance


def _instance_option(f: Any) -> Any:
    return click.option("--instance", default=None,
                        help="The reconciler instance (default: reconcile.instance in the config).")(f)


def _changes(p: Pass) -> str:
    parts = [f"{n} {what}" for n, what in ((p.created, "created"), (p.updated, "updated"), (p.pruned, "pruned"),
                                           (p.failed, "failed"), (p.out_of_sync, "out of sync")) if n]
    return ", ".join(parts) or ("held: " + p.held if p.held else "no changes")


def _row(p: Pass, *, people: bool) -> dict[str, Any]:
    return {"seq": p.seq, "time": format_time(p.time)[:19] + "Z" if people else format_time(p.time),
            "instance": p.instance, "trigger": p.trigger, "mode": p.mode,
            "commit": (p.commit or "")[:12] if people else p.commit, "outcome": p.outcome,
            "changes": _changes(p), "created": p.created, "updated": p.updated, "pruned": p.pruned,
            "failed": p.failed, "out_of_sync": p.out_of_sync, "duration_seconds": p.duration_seconds,
            "held": p.held}


@cli.command()
@click.option("--instance", default=None, help="Only this reconciler instance's passes.")
@click.option("--since", default=None, metavar="TIME", help="Passes from this time: RFC 3339, a date, '2h ago'.")
@click.option("--until", default=None, metavar="TIME", help="Passes before this time.")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="At most the newest this many passes (tables default to 1000; 0 means no limit).")
@click.option("--reverse", is_flag=True, help="Newest first.")
@output_options(*LISTS)
@pass_ctx
def history(ctx: Context, instance: str | None, since: str | None, until: str | None, limit: int | None,
            reverse: bool, output: str, no_headers: bool) -> None:
    """The reconcile passes: when, why (trigger), the commit each acted on, and how it ended."""
    start = parse_time(since) if since else None
    end = parse_time(until) if until else None
    n = effective_limit(limit, output)
    with ctx.open_log() as log:
        found = passes(log, instance=instance, since=start, until=end, limit=None if n is None else n + 1,
                       descending=True)
    if n is not None and len(found) > n:
        click.echo(f"showing the newest {n} passes; older ones were left out (--limit 0 shows all)", err=True)
        found = found[:n]
    if not reverse:
        found.reverse()
    people = output in ("table", "wide")
    render_rows((_row(p, people=people) for p in found), columns=HISTORY_COLUMNS, output=output,
                no_headers=no_headers, empty="no reconcile passes recorded")


def _reason_option(f: Any) -> Any:
    return click.option("--reason", default="", help="Why, in the operator's words (kept in the log).")(f)


@cli.command()
@_instance_option
@_reason_option
@pass_ctx
def suspend(ctx: Context, instance: str | None, reason: str) -> None:
    """Suspend reconciliation of an instance: a running 'gitops run' holds from its next pass."""
    name = _instance(ctx, instance)
    with ctx.open_log() as log:
        seq, changed = set_suspended(log, name, True, reason)
        state = suspension(log, name)
    click.echo(f"instance {name} suspended (seq {seq})" if changed else
               f"instance {name} was already {state.describe() if state else 'suspended'} (recorded as seq {seq})")


@cli.command()
@_instance_option
@_reason_option
@pass_ctx
def resume(ctx: Context, instance: str | None, reason: str) -> None:
    """Resume reconciliation of a suspended instance, from the next pass of 'gitops run'."""
    name = _instance(ctx, instance)
    with ctx.open_log() as log:
        seq, changed = set_suspended(log, name, False, reason)
    click.echo(f"instance {name} resumed (seq {seq})" if changed else
               f"instance {name} was not suspended (recorded as seq {seq})")


def _condition(text: str) -> tuple[str, str | None]:
    kind, _, value = text.partition("=")
    if kind in ("synced", "healthy") and not value:
        return kind, None
    if kind == "commit" and value:
        if value != "HEAD" and sha_prefix(value) is None:
            raise UsageError(f"--for {text!r}: expected commit=SHA (4 to 64 hex digits) or commit=HEAD")
        return "commit", value
    raise UsageError(f"--for {text!r}: expected synced, healthy or commit=SHA")


@cli.command()
@click.option("--for", "condition", required=True, metavar="synced|healthy|commit=SHA",
              help="synced: every desired object in sync; healthy: every one judged Healthy by the last pass; "
                   "commit=SHA: that commit in force and in sync.")
@click.option("--timeout", default="5m", show_default=True, help="How long to wait (30s, 5m, 1h).")
@click.option("--instance", default=None,
              help="Whose orphans count (default: diff.instance, else reconcile.instance in the config).")
@pass_ctx
def wait(ctx: Context, condition: str, timeout: str, instance: str | None) -> None:
    """Wait until the log shows the condition, as kubectl wait does: exit 0 when it holds,
    1 on timeout (saying what still differs).

    Waiting for a commit the log read as invalid fails at once, naming its first error: it
    will never be in force."""
    what, value = _condition(condition)
    limit = parse_duration(timeout)
    deadline = time.monotonic() + limit.total_seconds()
    instance = instance or ctx.config.diff.instance or ctx.config.reconcile.instance
    seen, why = -1, "nothing read yet"
    while True:
        with ctx.open_log() as log:
            last = log.last_seq()
            if last != seen:
                seen = last
                source = resolve_git_source(log, ctx.config.git)
                view = status_at(log, resolve_at(log, "now"), instance=instance, settings=ctx.config.diff,
                                 source=source)
                if what == "commit":
                    target = value if value != "HEAD" else _head(log, source)
                    _never(view, target)
                    ok = bool(view.commit and target and view.commit.startswith(target.lower())) and view.in_sync
                    why = (f"commit {(view.commit or 'none')[:12]} is in force, not {target}"
                           if not (view.commit and target and view.commit.startswith(target.lower())) else "")
                elif what == "healthy":
                    ok = view.healthy
                    why = ", ".join(f"{n} {s}" for s, n in view.health_counts.items() if s != "Healthy") or \
                        "nothing judged yet"
                else:
                    ok = view.in_sync
                if ok:
                    click.echo(f"condition met: {condition}")
                    return
                if not view.in_sync and what != "healthy":
                    counts = ", ".join(f"{n} {s}" for s, n in view.counts.items() if n and s != "in-sync")
                    why = f"{why}; {counts}" if why and what == "commit" else counts
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(f"timed out after {_span(limit)} waiting for {condition}: {why}")
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _never(view: StatusView, target: str | None) -> None:
    """Fail at once when the commit waited for is the newest one read and is invalid: it will
    never be in force (a later commit may be; wait for that one)."""
    head = view.head
    if head is None or not target or not head.payload.sha.startswith(target.lower()):
        return
    first = view.errors[0].payload if view.errors else None
    why = f": {first.where}: {first.message}" if first else ""
    more = f" (and {len(view.errors) - 1} more)" if len(view.errors) > 1 else ""
    raise HeadInvalidError(f"commit {head.payload.sha[:12]} is invalid ({head.payload.errors} error"
                           f"{'' if head.payload.errors == 1 else 's'}{why}{more}); it will never be in force: "
                           f"commit {(view.commit or 'none')[:12]} stays")


def _head(log: Any, source: str | None) -> str | None:
    try:
        return resolve_at(log, "HEAD", origin=source).commit
    except UsageError:
        return None


def _span(d: timedelta) -> str:
    return f"{int(d.total_seconds())}s"

