"""``gitops ingest git``: a repository's history into the log, once or following it."""

from __future__ import annotations

import shlex
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gitops.cli.app import DEFAULT_DB, Context, cli, pass_ctx
from gitops.cli.follow import Reporter, describe, run_until_stopped, warn_missing_paths
from gitops.events import SourceErrorPayload
from gitops.model.errors import ClusterUnavailableError, ConfigError, HeadInvalidError
from gitops.model.scope import Scope, builtin_scope
from gitops.service.config import first_error
from gitops.service.watch import WatchService
from gitops.sources.cluster import ClusterSourceConfig, discovery_scope
from gitops.sources.git import GitIngest, GitSourceConfig
from gitops.store import EventLog


@cli.group()
def ingest() -> None:
    """Read a source into the event log."""


def git_source_config(ctx: Context, repo: str | None, branch: str | None, paths: tuple[str, ...]) -> GitSourceConfig:
    base = ctx.config.git
    if repo is None and base is None:
        raise ConfigError("no repository: pass --repo, or set git.repo in the config file")
    values: dict[str, Any] = base.model_dump() if base is not None else {}
    if repo is not None:
        values["repo"] = repo
    if branch is not None:
        values["branch"] = branch
    if paths:
        values["paths"] = list(paths)
    try:
        config = GitSourceConfig.model_validate(values)
    except ValidationError as e:
        raise ConfigError(f"git source: {first_error(e)}") from None
    if config.repo is None:
        raise ConfigError("no repository: pass --repo, or set git.repo in the config file")
    return config


def git_scope(ctx: Context, console: Console, cluster: ClusterSourceConfig | None = None) -> Scope:
    """Namespaced or not: from the cluster's discovery when one is configured, else the
    built-in table of standard kinds."""
    config = cluster or ctx.config.cluster
    if config is None:
        return builtin_scope
    try:
        return discovery_scope(config)
    except ClusterUnavailableError as e:
        console.print(f"warning: {e}; kinds' scope comes from the built-in table", markup=False)
        return builtin_scope


class _RateColumn(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task: Any) -> Any:
        from rich.text import Text

        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} commits/s" if speed else "", style="progress.data.speed")


SHOWN = 10  # errors printed by ingest itself; the log holds them all


def show_problems(log: EventLog, after: int) -> None:
    """The problems this ingest recorded (after seq ``after``), on stderr: each warning (what
    was left unread, a Helm chart), and the first ``SHOWN`` errors with file, line and
    commit, then how many more."""
    errors = 0
    for r in log.read(since_seq=after, types=["source.error"]):
        p = r.event.payload
        assert isinstance(p, SourceErrorPayload)
        commit = f" (commit {p.commit[:12]})" if p.commit else ""
        if p.severity == "warning":
            click.echo(f"warning: {p.where}: {p.message}{commit}", err=True)
            continue
        errors += 1
        if errors <= SHOWN:
            click.echo(f"error: {p.where}: {p.message}{commit}", err=True)
    if errors > SHOWN:
        click.echo(f"... and {errors - SHOWN} more errors", err=True)


@ingest.command("git")
@click.option("--repo", default=None, help="Local path or URL of the repository (default: git.repo in the config).")
@click.option("--branch", default=None, help="Branch to follow (default: the repository's default branch).")
@click.option("--path", "paths", multiple=True, help="Directory inside the repository to read (repeatable).")
@click.option("--watch", is_flag=True, help="Keep running and ingest each new commit as it lands (Ctrl-C stops).")
@pass_ctx
def ingest_git(ctx: Context, repo: str | None, branch: str | None, paths: tuple[str, ...], watch: bool) -> None:
    """Append the branch's history (first-parent, oldest first) to the log; re-running appends nothing."""
    config = git_source_config(ctx, repo, branch, paths)
    console = Console(stderr=True)
    with ctx.open_log(create=True) as log:
        source = GitIngest(log, config, redaction=ctx.redaction, scope=git_scope(ctx, console))
        try:
            with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
                          TimeElapsedColumn(), console=console, transient=True,
                          disable=not console.is_terminal) as bar:  # no bar (nor its blank line) in a pipe
                task = bar.add_task(f"ingesting {source.origin}", total=None)
                before = log.last_seq()
                summary = source.run(progress=lambda done, total: bar.update(task, completed=done, total=total))
            click.echo(f"{source.origin}: {describe(summary)}")
            show_problems(log, before)
            if summary.errors or summary.head_errors:
                db = "" if ctx.db == DEFAULT_DB else f" --db {shlex.quote(ctx.where)}"
                click.echo(f"every error, with file and line: gitops{db} log --type source.error", err=True)
            warn_missing_paths(source, summary)
            if watch:
                service = WatchService(git=source, cluster=None, reporter=Reporter(first_pass_done=True))
                run_until_stopped(service, db=ctx.where)
            elif summary.head_errors and summary.head is not None:
                raise HeadInvalidError(f"the head of {source.branch} ({summary.head[:12]}) is invalid: "
                                       f"{summary.head_errors} errors; the last valid commit stays desired")
        finally:
            source.close()
