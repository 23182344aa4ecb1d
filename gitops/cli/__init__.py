"""The command line: thin commands that parse, call the library and render."""

from gitops.cli import cluster_cmds, ingest_cmds, log_cmds, replay_cmds, status_cmds  # noqa: F401  (registers)
from gitops.cli.app import cli, main

__all__ = ["cli", "main"]
