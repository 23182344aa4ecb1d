"""Which module defines each command, and the one line ``gitops --help`` shows of it.

A command's module (and everything it needs: the reconciler, pykube, GitPython, rich) is
imported when that command runs, not when any command runs: ``gitops --help`` imports no
command module at all, and ``gitops log`` only its own. The summaries are the commands' own
short help, kept here so that listing them imports nothing; a test holds them equal.
"""

from __future__ import annotations

__all__ = ["COMMANDS"]

COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    # name: (the modules of gitops.cli that define it, its short help)
    "audit": (("audit_cmds",), "Who changed what: Git, cluster, audit-log and reconciler events in one timeline."),
    "blame": (("audit_cmds",), "For each field of RESOURCE (TYPE/NAME, TYPE/NAMESPACE/NAME or a key), who last set it, "
                               "when, and through what."),
    "checkpoint": (("integrity_cmds",), "Sign the log's Merkle root and size now, and publish the checkpoint where the "
                                        "config says (integrity.publish_dir, integrity.publish_git); print it."),
    "compact": (("compact_cmds",), "Store the log's old payloads packed as new ones are (deltas of each object's "
                                   "versions); the events, the hashes and the chain's head do not change, and the log "
                                   "must verify before and after."),
    "completion": (("shell_cmds",), "Print the shell completion script for SHELL."),
    "copy": (("copy_cmds",), "Copy an event log to another store, every event and hash unchanged (verify of both gives "
                             "the same head)."),
    "deploy": (("deploy_cmds",), "What running gitops in a cluster needs."),
    "diff": (("status_cmds",), "Show how the cluster differs from Git, as kubectl diff does; exit 1 when it does."),
    "history": (("ops_cmds",), "The reconcile passes: when, why (trigger), the commit each acted on, and how it "
                               "ended."),
    "ingest": (("ingest_cmds", "cluster_cmds"), "Read a source into the event log."),
    "init": (("log_cmds",), "Create the event log (or upgrade its schema); harmless when it exists."),
    "keys": (("integrity_cmds",), "The signing key of checkpoints and the key of Secret digests (kept outside the "
                                  "database)."),
    "log": (("log_cmds",), "Show the event log in order, filtered."),
    "prove": (("integrity_cmds",), "Print event SEQ with its inclusion proof against a signed checkpoint, for 'gitops "
                                   "verify-proof' to check without the database."),
    "reconcile": (("reconcile_cmds",), "Run one pass: read new commits and the cluster, then make the cluster match "
                                       "Git."),
    "replay": (("replay_cmds",), "Show the desired state, the actual state, or both, as they were at a past moment."),
    "report": (("audit_cmds",), "The compliance report over a time range: changes, out-of-band changes, drift, "
                                "failures, integrity and coverage."),
    "resume": (("ops_cmds",), "Resume reconciliation of a suspended instance, from the next pass of 'gitops run'."),
    "rollback": (("rollback_cmds",), "Restore the desired state of a past moment with one new commit (history is never "
                                     "rewritten)."),
    "run": (("reconcile_cmds",), "Follow Git and the cluster, and keep the cluster equal to Git, until SIGINT or "
                                 "SIGTERM."),
    "status": (("status_cmds",), "The commit in force, and the objects in sync, out of sync, missing and orphaned."),
    "suspend": (("ops_cmds",), "Suspend reconciliation of an instance: a running 'gitops run' holds from its next "
                               "pass."),
    "verify": (("integrity_cmds",), "Recompute the hash chain and the Merkle tree; exit 1 naming the first bad seq "
                                    "when the log was tampered with, or when it does not extend a checkpoint given."),
    "verify-proof": (("integrity_cmds",), "Check a proof from 'gitops prove' with the public key alone: no database, "
                                          "no log."),
    "version": (("shell_cmds",), "The version of gitops and, when a cluster can be reached, of its API server."),
    "wait": (("ops_cmds",), "Wait until the log shows the condition, as kubectl wait does: exit 0 when it holds, 1 on "
                            "timeout (saying what still differs)."),
    "watch": (("cluster_cmds",), "Follow Git, the cluster and its audit log into the log until SIGINT or SIGTERM."),
}
