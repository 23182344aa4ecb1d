"""``gitops deploy rbac``: the least RBAC ``gitops run`` needs, from what the log says Git
desires (``gitops.query.rbac``), as manifests to add to ``deploy/``."""

from __future__ import annotations

import click
import orjson
import yaml

from gitops.cli.app import Context, cli, pass_ctx
from gitops.cli.clusters import resolve_git_source
from gitops.model.errors import UsageError
from gitops.query.rbac import ServiceAccountRef, least_privilege, plan_rbac


@cli.group()
def deploy() -> None:
    """What running gitops in a cluster needs."""


def _service_account(text: str) -> ServiceAccountRef:
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise UsageError(f"--service-account {text!r}: expected NAMESPACE/NAME, e.g. gitops/gitops")
    return ServiceAccountRef(namespace, name)


@deploy.command("rbac")
@click.option("-n", "--namespace", "namespaces", multiple=True,
              help="A namespace the reconciler manages (repeatable; default: cluster.namespaces in the config, "
                   "else every namespace Git desires objects in).")
@click.option("--service-account", default="gitops/gitops", show_default=True, metavar="NAMESPACE/NAME",
              help="The service account gitops run uses.")
@click.option("--instance", default=None, help="The reconciler instance (default: reconcile.instance).")
@click.option("--secrets-cluster-wide", is_flag=True,
              help="Also read Secrets in every namespace (an opt-in: by default only where Git desires them).")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True,
              help="yaml: a multi-document stream for kubectl apply -f; json: a v1 List.")
@pass_ctx
def rbac(ctx: Context, namespaces: tuple[str, ...], service_account: str, instance: str | None,
         secrets_cluster_wide: bool, output: str) -> None:
    """Print the Roles and ClusterRole gitops run needs: to read and write the kinds Git desires in
    the namespaces it manages, to read Namespaces and the kinds configured to be watched, and its
    Lease. Save it beside deploy/ and add it to the kustomization."""
    sa = _service_account(service_account)
    cluster = ctx.config.cluster
    chosen = list(namespaces) or (list(cluster.namespaces) if cluster is not None else [])
    with ctx.open_log() as log:
        plan = plan_rbac(log, namespaces=chosen, watched_kinds=[k for k in (cluster.kinds if cluster else [])
                                                                if k != "*"],
                         source=resolve_git_source(log, ctx.config.git))  # the config's application's, not all
    settings = ctx.config.reconcile
    name = instance or settings.instance
    objects = least_privilege(plan, instance=name, service_account=sa,
                              lease_namespace=settings.lease.namespace or sa.namespace,  # the pod's, as run takes it
                              lease_name=settings.lease.name or f"gitops-{name}",
                              secrets_cluster_wide=secrets_cluster_wide)
    if cluster is None or sorted(set(cluster.namespaces)) != plan.namespaces:
        click.echo(f"note: these rights cover the namespaces {', '.join(plan.namespaces)} only; set "
                   f"cluster.namespaces: [{', '.join(plan.namespaces)}] in gitops run's config so that it watches "
                   "and acts in those alone", err=True)
    if plan.outside:
        click.echo(f"warning: Git desires objects in {', '.join(plan.outside)}, outside these namespaces: the "
                   "reconciler holds them as out of scope (failed) and sends no request there", err=True)
    if output == "json":
        click.echo(orjson.dumps({"apiVersion": "v1", "kind": "List", "items": objects},
                                option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(yaml.safe_dump_all(objects, sort_keys=False), nl=False)
