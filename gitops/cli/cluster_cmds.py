"""``gitops ingest cluster`` (one list pass) and ``gitops watch`` (everything, continuously)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import click
from pydantic import ValidationError

from gitops.cli.app import Context, cli, pass_ctx
from gitops.cli.follow import Reporter, run_until_stopped
from gitops.cli.ingest_cmds import git_source_config, ingest
from gitops.cli.runlog import log_format_option
from gitops.model.errors import ConfigError, SourceError
from gitops.service.config import first_error
from gitops.service.watch import WatchService
from gitops.sources.cluster import ClusterSource, ClusterSourceConfig


def cluster_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options that say which cluster, shared by the commands that read one."""
    for opt in reversed([
        click.option("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)."),
        click.option("--context", default=None, help="kubeconfig context (default: its current context)."),
        click.option("--cluster-name", default=None, envvar="GITOPS_CLUSTER_NAME",
                     help="This cluster's name in the log, where one log holds many clusters (env "
                          "GITOPS_CLUSTER_NAME; default: the API server's URL)."),
        click.option("--audit-log", default=None,
                     help="The API server's audit log file, to name real users (env GITOPS_AUDIT_LOG)."),
        click.option("--audit-log-later", is_flag=True, default=None,
                     help="The audit log may not exist yet: read it once it appears."),
        click.option("--kind", "kinds", multiple=True,
                     help="Also watch this kind, as Kind[.group]; '*' for every listable kind (repeatable)."),
    ]):
        f = opt(f)
    return f


WEBHOOK_FLAGS = {"address": "--audit-webhook", "cert_file": "--audit-webhook-cert", "key_file": "--audit-webhook-key",
                 "client_ca_file": "--audit-webhook-client-ca", "token_file": "--audit-webhook-token-file"}


def audit_webhook_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The audit webhook receiver's options, for the commands that keep running (watch, run):
    gathered into one ``audit_webhook`` argument."""
    helps = {
        "address": "Serve the API server's audit webhook backend on HOST:PORT (TLS), to name real users where "
                   "its audit log file cannot be read.",
        "cert_file": "The webhook's TLS certificate (PEM).",
        "key_file": "The webhook's TLS private key (PEM).",
        "client_ca_file": "Accept the API server's client certificates signed by this CA.",
        "token_file": "Accept the bearer token in this file (or $GITOPS_AUDIT_WEBHOOK_TOKEN).",
    }
    for name, flag in reversed(WEBHOOK_FLAGS.items()):
        f = click.option(flag, f"webhook_{name}", default=None, metavar="HOST:PORT" if name == "address" else "FILE",
                         help=helps[name])(f)

    def gather(*args: Any, **kwargs: Any) -> Any:
        kwargs["audit_webhook"] = {name: kwargs.pop(f"webhook_{name}") for name in WEBHOOK_FLAGS}
        return f(*args, **kwargs)

    return functools.update_wrapper(gather, f)


def cluster_source_config(ctx: Context, kubeconfig: str | None, context: str | None, cluster_name: str | None,
                          audit_log: str | None, audit_log_later: bool | None, kinds: tuple[str, ...], *,
                          audit_webhook: dict[str, str | None] | None = None) -> ClusterSourceConfig:
    values: dict[str, Any] = ctx.config.cluster.model_dump() if ctx.config.cluster is not None else {}
    for name, value in (("kubeconfig", kubeconfig), ("context", context), ("name", cluster_name),
                        ("audit_log", audit_log), ("audit_log_later", audit_log_later)):
        if value is not None:
            values[name] = value
    given = {k: v for k, v in (audit_webhook or {}).items() if v is not None}
    if given:
        if "address" not in given and values.get("audit_webhook") is None:
            raise ConfigError(f"{', '.join(WEBHOOK_FLAGS[k] for k in given)} without --audit-webhook HOST:PORT")
        values["audit_webhook"] = {**(values.get("audit_webhook") or {}), **given}
        missing = [WEBHOOK_FLAGS[k] for k in ("cert_file", "key_file") if not values["audit_webhook"].get(k)]
        if missing:
            raise ConfigError(f"--audit-webhook serves TLS: it needs {' and '.join(missing)} (or "
                              "cluster.audit_webhook.cert_file and key_file in the config)")
    if values.get("audit_log") is None and os.environ.get("GITOPS_AUDIT_LOG"):
        values["audit_log"] = os.environ["GITOPS_AUDIT_LOG"]
    if kinds:
        values["kinds"] = [*values.get("kinds", []), *kinds]
    try:
        config = ClusterSourceConfig.model_validate(values)
        # what the diff leaves to other managers is theirs: their changes are not out-of-band either
        managers = [*config.control_plane_managers,
                    *(m for m in ctx.config.diff.ignore_managers if m not in config.control_plane_managers)]
        return config.model_copy(update={"control_plane_managers": managers})
    except ValidationError as e:
        raise ConfigError(f"cluster source: {first_error(e)}") from None


@ingest.command("cluster")
@cluster_options
@pass_ctx
def ingest_cluster(ctx: Context, kubeconfig: str | None, context: str | None, cluster_name: str | None,
                   audit_log: str | None, audit_log_later: bool | None, kinds: tuple[str, ...]) -> None:
    """List the cluster once and record every object that differs from what the log last saw."""
    config = cluster_source_config(ctx, kubeconfig, context, cluster_name, audit_log, audit_log_later, kinds)
    source = ClusterSource(ctx.db, config, redaction=ctx.redaction)  # checks the settings first
    ctx.open_log(create=True).close()
    summary = source.ingest_once()
    unserved = f"; not served: {', '.join(summary.unserved)}" if summary.unserved else ""
    forbidden = f"; refused: {', '.join(summary.forbidden)}" if summary.forbidden else ""
    click.echo(f"{source.origin}: {summary.kinds} kinds listed, {summary.events} events appended, "
               f"{summary.audit_events} audit records read{unserved}{forbidden}")
    if summary.kinds and len(summary.forbidden) == summary.kinds:
        raise SourceError(f"the Kubernetes API at {source.client.server} refused to list every kind: check the "
                          "credentials' RBAC rights")


@cli.command()
@click.option("--repo", default=None, help="Git repository to follow (default: git.repo in the config; none: no Git).")
@click.option("--branch", default=None, help="Branch to follow (default: the repository's default branch).")
@click.option("--path", "paths", multiple=True, help="Directory inside the repository to read (repeatable).")
@click.option("--no-cluster", is_flag=True, help="Follow Git only.")
@cluster_options
@audit_webhook_options
@log_format_option
@pass_ctx
def watch(ctx: Context, repo: str | None, branch: str | None, paths: tuple[str, ...], no_cluster: bool,
          kubeconfig: str | None, context: str | None, cluster_name: str | None, audit_log: str | None,
          audit_log_later: bool | None, kinds: tuple[str, ...], audit_webhook: dict[str, str | None]) -> None:
    """Follow Git, the cluster and its audit log into the log until SIGINT or SIGTERM."""
    if no_cluster and repo is None and ctx.config.git is None:
        raise ConfigError("nothing to watch: --no-cluster leaves only Git; pass --repo, or set git.repo in the config "
                          "file")
    git_config = git_source_config(ctx, repo, branch, paths) if repo is not None or ctx.config.git is not None else None
    cluster_config = None if no_cluster else cluster_source_config(ctx, kubeconfig, context, cluster_name, audit_log,
                                                                   audit_log_later, kinds, audit_webhook=audit_webhook)
    # the cluster source's settings are checked (kubeconfig, audit log) before a database is made
    service = WatchService.build(ctx.db, git=git_config, cluster=cluster_config, redaction=ctx.redaction,
                                 reporter=Reporter())
    ctx.open_log(create=True).close()
    run_until_stopped(service, db=ctx.where)
