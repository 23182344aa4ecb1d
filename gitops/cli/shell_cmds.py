"""``gitops version`` and ``gitops completion``: what kubectl users type first."""

from __future__ import annotations

from importlib.metadata import version as package_version
from typing import Any

import click
from click.shell_completion import get_completion_class

from gitops.cli.app import Context, cli, pass_ctx
from gitops.cli.render import render_document
from gitops.model.errors import GitOpsError
from gitops.sources.cluster.client import ClusterClient

SHELLS = ("bash", "zsh", "fish")


@cli.command("version")
@click.option("--client", "client_only", is_flag=True, help="The client's version only: ask no cluster.")
@click.option("--kubeconfig", default=None, help="The cluster to ask (default: the config's, else $KUBECONFIG).")
@click.option("--context", default=None, help="kubeconfig context.")
@click.option("-o", "--output", type=click.Choice(["text", "json", "yaml"]), default="text", show_default=True,
              help="Output format.")
@pass_ctx
def version_cmd(ctx: Context, client_only: bool, kubeconfig: str | None, context: str | None, output: str) -> None:
    """The version of gitops and, when a cluster can be reached, of its API server."""
    doc: dict[str, Any] = {"client": {"version": package_version("gitops")}}
    cluster = ctx.config.cluster
    if not client_only:
        try:
            client = ClusterClient(kubeconfig or (cluster.kubeconfig if cluster else None),
                                   context=context or (cluster.context if cluster else None))
            server = client.version()
            doc["server"] = {"version": server.get("gitVersion"), "url": client.server}
        except GitOpsError as e:  # no cluster is no error here: kubectl version says so and goes on
            doc["server"] = {"error": str(e)}
    if output != "text":
        render_document(doc, output)
        return
    click.echo(f"Client Version: {doc['client']['version']}")
    answer = doc.get("server")
    if answer is not None:
        if "error" in answer:
            click.echo(f"Server Version: unknown ({answer['error']})", err=True)
        else:
            click.echo(f"Server Version: {answer['version']} ({answer['url']})")


@cli.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL. Load it with, for bash:
    source <(gitops completion bash); zsh: the same; fish: gitops completion fish | source."""
    cls = get_completion_class(shell)
    assert cls is not None  # every one of SHELLS is click's
    click.echo(cls(cli, {}, "gitops", "_GITOPS_COMPLETE").source())
