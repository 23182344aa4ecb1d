"""A commit as a user names it on the command line: its sha, or a prefix of it.

One rule for every command that takes one (``--commit``, ``--at``, a rollback target): 4
to 64 hex digits, either case (a SHA-1 sha has 40, a SHA-256 one 64), read in lower case
as Git writes it.
"""

from __future__ import annotations

import re

__all__ = ["sha_prefix"]

_SHA_PREFIX = re.compile(r"[0-9a-fA-F]{4,64}")


def sha_prefix(text: str) -> str | None:
    """``text`` as a commit sha or prefix (lower case), or None when it cannot be one."""
    return text.lower() if _SHA_PREFIX.fullmatch(text) else None
