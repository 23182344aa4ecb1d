"""The SQLite event log: append, read, checkpoints, verify."""

from gitops.store.chain import GENESIS, row_hash
from gitops.store.log import Appended, Checkpoint, EventLog, Hook, VerifyResult

__all__ = ["GENESIS", "Appended", "Checkpoint", "EventLog", "Hook", "VerifyResult", "row_hash"]
