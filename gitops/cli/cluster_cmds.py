"""``gitops ingest cluster`` (one list pass) and ``gitops watch`` (everything, continuously)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import click
from pydantic import ValidationError

from gitops.cli.app import Context, cli, pass_ctx
from gitops.cli.ingest_cmds import _describe, _git_config, ingest, warn_missing_paths
from gitops.model.errors import ConfigError, SourceError, StoreError, UsageError
from gitops.model.scope import builtin_scope
from gitops.model.times import utc_now
from gitops.service.config import first_error
from gitops.sources.cluster import ClusterSource, ClusterSourceConfig
from gitops.sources.git import GitIngest, IngestSummary
from gitops.sources.git.watch import GitFollower


def cluster_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options that say which cluster, shared by the commands that read one."""
    for opt in reversed([
        click.option("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)."),
        click.option("--context", default=None, help="kubeconfig context (default: its current context)."),
        click.option("--audit-log", default=None,
                     help="The API server's audit log file, to name real users (env GITOPS_AUDIT_LOG)."),
        click.option("--audit-log-later", is_flag=True, default=None,
                     help="The audit log may not exist yet: read it once it appears."),
        click.option("--kind", "kinds", multiple=True,
                     help="Also watch this kind, as Kind[.group]; '*' for every listable kind (repeatable)."),
    ]):
        f = opt(f)
    return f


def _cluster_config(ctx: Context, kubeconfig: str | None, context: str | None, audit_log: str | None,
                    audit_log_later: bool | None, kinds: tuple[str, ...]) -> ClusterSourceConfig:
    values: dict[str, Any] = ctx.config.cluster.model_dump() if ctx.config.cluster is not None else {}
    for name, value in (("kubeconfig", kubeconfig), ("context", context), ("audit_log", audit_log),
                        ("audit_log_later", audit_log_later)):
        if value is not None:
            values[name] = value
    if values.get("audit_log") is None and os.environ.get("GITOPS_AUDIT_LOG"):
        values["audit_log"] = os.environ["GITOPS_AUDIT_LOG"]
    if kinds:
        values["kinds"] = [*values.get("kinds", []), *kinds]
    try:
        return ClusterSourceConfig.model_validate(values)
    except ValidationError as e:
        raise ConfigError(f"cluster source: {first_error(e)}") from None


@ingest.command("cluster")
@cluster_options
@pass_ctx
def ingest_cluster(ctx: Context, kubeconfig: str | None, context: str | None, audit_log: str | None,
                   audit_log_later: bool | None, kinds: tuple[str, ...]) -> None:
    """List the cluster once and record every object that differs from what the log last saw."""
    config = _cluster_config(ctx, kubeconfig, context, audit_log, audit_log_later, kinds)
    source = ClusterSource(ctx.db_path, config, redaction=ctx.config.redact)  # checks the settings first
    ctx.open_log(create=True).close()
    summary = source.ingest_once()
    unserved = f"; not served: {', '.join(summary.unserved)}" if summary.unserved else ""
    forbidden = f"; refused: {', '.join(summary.forbidden)}" if summary.forbidden else ""
    click.echo(f"{source.origin}: {summary.kinds} kinds listed, {summary.events} events appended, "
               f"{summary.audit_events} audit records{unserved}{forbidden}")
    if summary.kinds and len(summary.forbidden) == summary.kinds:
        raise SourceError(f"the Kubernetes API at {source.client.server} refused to list every kind: check the "
                          "credentials' RBAC rights")


def _follow_git(source: GitIngest, cluster: ClusterSource | None, *, refused: list[UsageError],
                stop: Callable[[], None]) -> tuple[GitFollower, threading.Thread]:
    """Start following ``source`` in a thread of its own, reporting each pass that appends.
    Settings the source refuses go to ``refused``, and ``stop`` is called."""
    origin = source.origin
    first_pass = [True]

    def on_pass(s: IngestSummary) -> None:
        if first_pass[0]:
            first_pass[0] = False
            warn_missing_paths(source, s)
        if s.commits or s.rewritten or s.reconfigured:
            click.echo(f"{utc_now():%H:%M:%S} {origin}: {_describe(s)}")
        if s.applied and cluster is not None:
            for name in cluster.refresh():  # new kinds in the desired state are watched too
                click.echo(f"{utc_now():%H:%M:%S} now watching {name}", err=True)

    def on_git_error(e: Exception) -> None:
        if isinstance(e, UsageError):  # settings that cannot work: trying again would not help
            refused.append(e)
            stop()
            return
        click.echo(f"{utc_now():%H:%M:%S} {origin}: {e}; trying again at the next change or poll", err=True)

    follower = GitFollower(source, on_pass=on_pass, on_error=on_git_error)
    follower.start()
    thread = threading.Thread(target=follower.run, name="git", daemon=True)
    thread.start()
    click.echo(f"following {origin}", err=True)
    return follower, thread


@cli.command()
@click.option("--repo", default=None, help="Git repository to follow (default: git.repo in the config; none: no Git).")
@click.option("--branch", default=None, help="Branch to follow (default: the repository's default branch).")
@click.option("--path", "paths", multiple=True, help="Directory inside the repository to read (repeatable).")
@click.option("--no-cluster", is_flag=True, help="Follow Git only.")
@cluster_options
@pass_ctx
def watch(ctx: Context, repo: str | None, branch: str | None, paths: tuple[str, ...], no_cluster: bool,
          kubeconfig: str | None, context: str | None, audit_log: str | None, audit_log_later: bool | None,
          kinds: tuple[str, ...]) -> None:
    """Follow Git, the cluster and its audit log into the log until SIGINT or SIGTERM."""
    if no_cluster and repo is None and ctx.config.git is None:
        raise ConfigError("nothing to watch: --no-cluster leaves only Git; pass --repo, or set git.repo in the config "
                          "file")
    git_config = _git_config(ctx, repo, branch, paths) if repo is not None or ctx.config.git is not None else None
    cluster_config = None if no_cluster else _cluster_config(ctx, kubeconfig, context, audit_log, audit_log_later,
                                                             kinds)
    cluster = None if cluster_config is None else ClusterSource(ctx.db_path, cluster_config,
                                                                redaction=ctx.config.redact)
    ctx.open_log(create=True).close()  # the settings were checked: only now is a database made
    stopped = threading.Event()
    stoppers: list[Callable[[], None]] = []
    refused: list[UsageError] = []

    def on_signal(signum: int, frame: Any) -> None:
        stopped.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    git_thread = None
    git_source = None
    if cluster is not None:
        cluster.start(on_error=lambda e: stopped.set())
        stoppers.append(cluster.stop)
        audit = f" and its audit log {cluster.config.audit_log}" if cluster.config.audit_log else ""
        click.echo(f"watching {cluster.origin}{audit}", err=True)
    if git_config is not None:
        # the cluster source's own discovery (no second one), kept current as it refreshes
        scope = cluster.scope() if cluster is not None else builtin_scope
        git_source = GitIngest(ctx.open_log(), git_config, redaction=ctx.config.redact, scope=scope)
        follower, git_thread = _follow_git(git_source, cluster, refused=refused, stop=stopped.set)
        stoppers.append(follower.stop)
    click.echo("Ctrl-C or SIGTERM stops", err=True)
    stopped.wait()
    for stop in reversed(stoppers):  # Git first: it may ask the cluster source to watch more
        stop()
    if git_thread is not None:
        git_thread.join(30)
    if git_source is not None:
        git_source.close()
        git_source.log.close()
    if refused:
        raise refused[0]
    if cluster is not None and cluster.error is not None:
        if isinstance(cluster.error, SourceError):
            raise SourceError(f"the cluster source stopped: {cluster.error}")
        if isinstance(cluster.error, StoreError):
            raise StoreError(f"the cluster source stopped: could not write to {ctx.db_path}: {cluster.error}")
        raise cluster.error  # a bug, not the user's nor the cluster's doing: with its traceback
    click.echo("stopped; everything seen was written", err=True)
