"""``gitops rollback``: restore a past desired state through a new Git commit."""

from __future__ import annotations

import re

import click
from rich.console import Console

from gitops.cli.app import Context, cli, pass_ctx
from gitops.cli.ingest_cmds import git_scope, git_source_config
from gitops.model.errors import UsageError
from gitops.model.times import format_time
from gitops.reconcile.rollback import apply_rollback, plan_rollback
from gitops.sources.git import GitIngest

_AUTHOR = re.compile(r"^\s*(.+?)\s*<([^<>\s]+@[^<>\s]+)>\s*$")


@cli.command()
@click.option("--to", "to", required=True, metavar="TIME|SHA",
              help="The moment whose desired state to restore (the last valid commit then), or a commit sha.")
@click.option("--repo", default=None, help="Git repository (default: git.repo in the config).")
@click.option("--branch", default=None, help="Branch (default: the repository's default branch).")
@click.option("--path", "paths", multiple=True, help="Directory inside the repository (repeatable).")
@click.option("--author", default=None, metavar="'NAME <EMAIL>'", help="Author of the commit (default: git config).")
@click.option("--push", is_flag=True, help="Push the commit to the remote (never forced).")
@click.option("--dry-run", is_flag=True, help="Show the files and objects it would change; write nothing.")
@pass_ctx
def rollback(ctx: Context, to: str, repo: str | None, branch: str | None, paths: tuple[str, ...],
             author: str | None, push: bool, dry_run: bool) -> None:
    """Restore the desired state of a past moment with one new commit (history is never rewritten)."""
    identity = None
    if author is not None:
        m = _AUTHOR.match(author)
        if m is None:
            raise UsageError(f"--author {author!r}: expected 'Name <email>'")
        identity = (m.group(1), m.group(2))
    config = git_source_config(ctx, repo, branch, paths)
    # read as every other writer of the log reads it: the log's Secret digest key and the
    # cluster's scopes (without them the pass re-read the last commit as new settings, and
    # stored plain, guessable digests of Secret values)
    redaction, scope = ctx.redaction, git_scope(ctx, Console(stderr=True))
    with ctx.open_log(create=True) as log:
        source = GitIngest(log, config, redaction=redaction, scope=scope)
        try:
            source.run()  # the log knows the branch as it is now
            plan = plan_rollback(log, source, to)
            at = f" (in force at {format_time(plan.in_force_at)})" if plan.in_force_at else ""
            if plan.nothing_to_do:
                click.echo(f"nothing to do: {', '.join(config.paths)} already match {plan.target[:12]}{at}")
                return
            click.echo(f"roll back to {plan.target[:12]} {plan.target_subject!r}{at}")
            for status, path in plan.files:
                click.echo(f"  {status} {path}")
            for op, key in plan.objects:
                click.echo(f"  {op} {key}")
            if dry_run:
                click.echo("dry run: nothing written", err=True)
                return
            args = {"to": to, "target": plan.target, "push": push or None}
            try:
                new = apply_rollback(source, plan, author=identity, push=push)
            except Exception as e:
                ctx.record("rollback", args, "failed", str(e).splitlines()[0] if str(e) else type(e).__name__)
                raise
            ctx.record("rollback", {**args, "commit": new}, "succeeded", "")
            click.echo(f"committed {new[:12]} on {source.branch}")
            if push:
                click.echo(f"pushed to {source.repo.url}")
            elif source.repo.remote:
                click.echo(f"not pushed: git -C {source.repo.git_dir} push {source.repo.url} {new}:refs/heads/"
                           f"{source.branch}", err=True)
            else:
                click.echo(f"not pushed: run git push in {source.repo.url} (or pass --push)", err=True)
        finally:
            source.close()
