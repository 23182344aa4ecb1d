"""``gitops reconcile`` (one pass) and ``gitops run`` (the long-running service)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import click
from pydantic import ValidationError

from gitops.cli.app import Context, cli, pass_ctx
from gitops.cli.cluster_cmds import audit_webhook_options, cluster_options, cluster_source_config
from gitops.cli.follow import Reporter, run_until_stopped
from gitops.cli.ingest_cmds import git_source_config
from gitops.cli.runlog import LOG, log_format_option
from gitops.cli.status_cmds import echo_head_errors
from gitops.events.models import Mode
from gitops.model.errors import (
    ClusterUnavailableError,
    ConfigError,
    GitOpsError,
    HeadInvalidError,
    SourceError,
    UsageError,
)
from gitops.query.integrity import KeyStore
from gitops.query.status import head_errors
from gitops.reconcile import PassResult, ReconcileSettings
from gitops.service.checkpoints import Checkpointed, Checkpointer
from gitops.service.config import first_error
from gitops.service.leader import LeaseElector, process_identity
from gitops.service.notify import Notifier
from gitops.service.run import RunService, build_reconciler
from gitops.service.watch import WatchService
from gitops.sources.cluster.api import AccessDenied
from gitops.sources.git import IngestSummary


class ActionsFailedError(GitOpsError):
    """Some actions of the pass failed (each is in the log): exit 1, as kubectl apply does."""

    exit_code = 1


def _settings(ctx: Context, **overrides: Any) -> ReconcileSettings:
    values = ctx.config.reconcile.model_dump()
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ReconcileSettings.model_validate(values)
    except ValidationError as e:
        raise ConfigError(f"reconcile: {first_error(e)}") from None


Line = tuple[str, str, bool]  # (level, message, to stdout)


def pass_lines(result: PassResult, *, trigger: str | None = None) -> list[Line]:
    """What a pass says: its warnings, plans, failures and holds, then its summary."""
    lines: list[Line] = [("warning", f"warning: {w}", False) for w in result.warnings]
    for action, error in result.planned:
        lines.append(("info", f"would {action.op} {action.key}" + (f": {error}" if error else ""), True))
    for action, error in result.errors:
        if result.mode != "dry-run" and action.skipped is None:
            lines.append(("error", f"failed to {action.op} {action.key}: {error}", False))
    for action in result.plan.skipped:
        if action.failed:
            lines.append(("error", f"failed to {action.op} {action.key}: {action.skipped}", False))
        else:
            lines.append(("warning", f"left {action.key} alone ({action.op}): {action.skipped}", False))
    if result.mode == "detect-only" and result.plan.actions:
        lines += [("info", f"out of sync: {a.key} (would {a.op})", True) for a in result.plan.actions]
    why = f" [{trigger}]" if trigger else ""
    held = f"; held: {result.held}" if result.held else ""
    drift = (f"; drift opened {result.drift_opened}, closed {result.drift_closed}"
             if result.drift_opened or result.drift_closed else "")
    lines.append(("error" if result.failed else "info",
                  f"pass {result.run_id[:8]}{why} ({result.mode}): {result.status}, {result.created} created, "
                  f"{result.updated} updated, {result.pruned} pruned, {result.failed} failed, "
                  f"{result.plan.unchanged} in sync{drift}{held} in {result.duration:.2f}s", True))
    return lines


def render_pass(result: PassResult) -> None:
    """A one-shot pass (``gitops reconcile``): its lines as they are."""
    for _, message, out in pass_lines(result):
        click.echo(message, err=not out)


def reconcile_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([
        click.option("--repo", default=None, help="Git repository (default: git.repo in the config)."),
        click.option("--branch", default=None, help="Branch (default: the repository's default branch)."),
        click.option("--path", "paths", multiple=True, help="Directory inside the repository (repeatable)."),
        click.option("--detect-only", is_flag=True, default=False, help="Record drift; change nothing."),
        click.option("--prune/--no-prune", default=None,
                     help="Delete owned objects Git no longer has (default: reconcile.prune, off)."),
        click.option("--allow-mass-prune", is_flag=True, help="Confirm a prune over reconcile.mass_prune_ratio."),
        click.option("--instance", default=None, help="Instance name: the ownership label's value."),
    ]):
        f = opt(f)
    return cluster_options(f)


@cli.command()
@reconcile_options
@click.option("--dry-run", is_flag=True, help="Server-side dry run: print and record what would change.")
@pass_ctx
def reconcile(ctx: Context, repo: str | None, branch: str | None, paths: tuple[str, ...], detect_only: bool,
              prune: bool | None, allow_mass_prune: bool, instance: str | None, kubeconfig: str | None,
              context: str | None, cluster_name: str | None, audit_log: str | None, audit_log_later: bool | None,
              kinds: tuple[str, ...], dry_run: bool) -> None:
    """Run one pass: read new commits and the cluster, then make the cluster match Git.
    Exit 1 if an action failed, or if the head of the branch is invalid (the cluster is then held to
    the last valid commit)."""
    if dry_run and detect_only:
        raise UsageError("--dry-run and --detect-only exclude each other")
    settings = _settings(ctx, instance=instance)
    git_config = git_source_config(ctx, repo, branch, paths)
    cluster_config = cluster_source_config(ctx, kubeconfig, context, cluster_name, audit_log, audit_log_later, kinds)
    service = WatchService.build(ctx.db, git=git_config, cluster=cluster_config, redaction=ctx.redaction,
                                 reporter=Reporter())
    ctx.open_log(create=True).close()
    reconciler, port = build_reconciler(ctx.db, service, settings, diff=ctx.config.diff,
                                        redaction=ctx.redaction, cluster=cluster_config)
    elector = None
    if settings.lease.enabled and not (dry_run or detect_only):
        elector = LeaseElector.for_instance(port, settings, process_identity("gitops-reconcile-"))

    refused: list[str] = []

    def acquire() -> str | None:
        """The lease, taken only when the pass has something to apply: an in-sync pass writes nothing."""
        if elector is None or elector.tick():
            return None
        if elector.refusal is not None:
            raise (AccessDenied if elector.refusal_code in (401, 403) else SourceError)(elector.refusal)
        if elector.failure is not None:
            raise ClusterUnavailableError(f"could not take the lease {elector.lease}: {elector.failure}")
        refused.append(f"another process of instance {settings.instance!r} holds the lease {elector.lease} "
                       f"({elector.holder or 'a process that created it a moment ago'}) and applies; wait for it, "
                       "or run with --dry-run")
        return f"the lease {elector.lease} is held by {elector.holder or 'another process'}"

    try:
        git, cluster = service.git, service.cluster
        assert git is not None and cluster is not None

        reads: list[IngestSummary] = []  # what the Git source read: the branch's head, and its errors

        def ingest() -> None:
            reads.append(git.run())
            cluster.ingest_once()

        mode: Mode | None = "dry-run" if dry_run else "detect-only" if detect_only else None
        result = reconciler.run_pass(trigger="manual", mode=mode, prune=prune, allow_mass_prune=allow_mass_prune,
                                     ingest=ingest, acquire=acquire)
        if "prune" in result.done.values():
            # an apply records the object the server returned; a delete returns no version to
            # record, and no watch follows here: the cluster is read again, so that the log
            # (and status, diff, reports) does not go on holding what this pass deleted
            cluster.ingest_once()
    finally:
        if elector is not None:
            elector.release()
        reconciler.log.close()
        service.close()
    render_pass(result)
    if refused:
        raise UsageError(refused[0])
    invalid = _invalid_head(ctx, git.origin, git.branch, reads[-1] if reads else None, result.desired_revision)
    if result.failed:
        if invalid is not None:
            click.echo(f"error: {invalid}", err=True)
        what = "would fail" if dry_run else "failed"
        raise ActionsFailedError(f"{result.failed} of {len(result.plan.actions) + len(result.plan.skipped)} actions "
                                 f"{what} (each is in the log)")
    if invalid is not None:
        raise HeadInvalidError(invalid)


def _invalid_head(ctx: Context, origin: str, branch: str, read: IngestSummary | None,
                  kept: str | None) -> str | None:
    """What was pushed is not what was reconciled when the branch's head is invalid: its
    errors, on stderr, and the line that says so (None: the head is valid)."""
    if read is None or read.head is None or not read.head_errors:
        return None
    with ctx.open_log() as log:
        echo_head_errors(head_errors(log, origin))
    n = read.head_errors
    held = f"commit {kept[:12]}" if kept else "no commit"
    return (f"the head of {branch} ({read.head[:12]}) is invalid ({n} error{'' if n == 1 else 's'}): {held}, the last "
            "valid one, is what the cluster was held to")


class RunReporterCLI(Reporter):
    def reconciled(self, result: PassResult, *, trigger: str, at: datetime) -> None:
        if result.plan.actions or result.plan.skipped or result.held or result.drift_opened or result.drift_closed \
                or trigger != "interval":
            for level, message, out in pass_lines(result, trigger=trigger):
                LOG.line(level, message, at=at, out=out, run_id=result.run_id, trigger=trigger)

    def leadership(self, acquired: bool, *, lease: str, holder: str | None, at: datetime) -> None:
        what = "leading: this process applies" if acquired else "no longer leading"
        LOG.info(f"{what} (lease {lease})", at=at, lease=lease)

    def refused(self, why: str, *, at: datetime) -> None:
        LOG.error(why, at=at)

    def standby(self, *, lease: str, holder: str | None, at: datetime) -> None:
        LOG.info(f"standby: {holder or 'nobody'} holds the lease {lease} and applies", at=at, lease=lease,
                 holder=holder)

    def checkpointed(self, done: Checkpointed | None, error: Exception | None, *, at: datetime) -> None:
        if done is not None:
            where = ", ".join(done.published) or "nowhere (set integrity.publish_dir or integrity.publish_git)"
            LOG.info(f"checkpoint of {done.size} events signed and published to {where}", at=at)
        else:
            LOG.error(f"no checkpoint: {error} (retried in a minute)", at=at)


@cli.command()
@reconcile_options
@click.option("--interval", type=float, default=None, help="Seconds between scheduled passes (default 60).")
@click.option("--metrics-address", default=None, help="host:port of /healthz, /readyz, /metrics ('' for none).")
@click.option("--no-lease", is_flag=True, help="Apply without leader election (one process only!).")
@audit_webhook_options
@log_format_option
@pass_ctx
def run(ctx: Context, repo: str | None, branch: str | None, paths: tuple[str, ...], detect_only: bool,
        prune: bool | None, allow_mass_prune: bool, instance: str | None, kubeconfig: str | None,
        context: str | None, cluster_name: str | None, audit_log: str | None, audit_log_later: bool | None,
        kinds: tuple[str, ...], interval: float | None, metrics_address: str | None, no_lease: bool,
        audit_webhook: dict[str, str | None]) -> None:
    """Follow Git and the cluster, and keep the cluster equal to Git, until SIGINT or SIGTERM."""
    lease = {**ctx.config.reconcile.lease.model_dump(), "enabled": False} if no_lease else None
    settings = _settings(ctx, instance=instance, prune=prune, interval=interval, metrics_address=metrics_address,
                         mode="detect-only" if detect_only else None, lease=lease)
    git_config = git_source_config(ctx, repo, branch, paths)
    cluster_config = cluster_source_config(ctx, kubeconfig, context, cluster_name, audit_log, audit_log_later, kinds,
                                           audit_webhook=audit_webhook)
    service = RunService.build_run(ctx.db, git=git_config, cluster=cluster_config, settings=settings,
                                   diff=ctx.config.diff, redaction=ctx.redaction, reporter=RunReporterCLI(),
                                   allow_mass_prune=allow_mass_prune, checkpointer=_checkpointer(ctx))
    ctx.open_log(create=True).close()
    notifier = Notifier(ctx.db, ctx.config.notify, instance=settings.instance,
                        cluster=service.reconciler.actual_origin,
                        git=service.reconciler.desired_origin) if ctx.config.notify else None

    def started() -> None:
        _started(service)
        if notifier is not None:
            notifier.start()
            LOG.info(f"notifying {', '.join(s.name for s in ctx.config.notify)}")

    try:
        run_until_stopped(service, db=ctx.where, started=started)
    finally:
        if notifier is not None:
            notifier.stop()


def _checkpointer(ctx: Context) -> Checkpointer | None:
    """Signed checkpoints while running, when there is a key to sign them with."""
    try:
        signer = KeyStore(ctx.config.integrity.key_dir, db=ctx.db_path).signer()
    except ConfigError as e:
        LOG.warning(f"no signed checkpoints: {e}")
        return None
    return Checkpointer(ctx.db, ctx.config.integrity, signer)


def _started(service: RunService) -> None:
    address = service.address
    if address is not None:
        LOG.info(f"serving /healthz, /readyz and /metrics on http://{address[0]}:{address[1]}")
