"""The command line: thin commands that parse, call the library and render."""

from gitops.cli import (  # noqa: F401  (registers)
    audit_cmds,
    cluster_cmds,
    deploy_cmds,
    ingest_cmds,
    integrity_cmds,
    log_cmds,
    ops_cmds,
    reconcile_cmds,
    replay_cmds,
    rollback_cmds,
    shell_cmds,
    status_cmds,
)
from gitops.cli.app import cli, main

__all__ = ["cli", "main"]
