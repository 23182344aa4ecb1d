"""The event log: append, read, checkpoints, verify; in a SQLite file (``EventLog``) or
on PostgreSQL (``gitops.store.postgres``), opened by location with ``open_log``."""

from gitops.store.chain import GENESIS, row_hash
from gitops.store.locate import is_postgresql, open_log
from gitops.store.log import Appended, Checkpoint, EventLog, Hook, VerifyResult

__all__ = ["GENESIS", "Appended", "Checkpoint", "EventLog", "Hook", "VerifyResult", "is_postgresql", "open_log",
           "row_hash"]
