"""The hash chain: how one stored row is serialised and hashed.

The canonical form of a row is its column values as stored, in this order::

    id, type, source, resource, actor, effective_at, recorded_at, revision, payload

each written as a netstring ``<byte length>:<utf-8 bytes>,`` and ``~`` for NULL, so no
two different rows share a form. A row's ``hash`` is the SHA-256 (hex) of its
``prev_hash`` (64 hex characters) followed by its canonical form; the first row's
``prev_hash`` is ``GENESIS``. ``seq`` is not hashed: order is carried by the links, so a
row moved elsewhere still matches its own hash but breaks the chain ("reordered"), while
a row whose content changed does not match its own hash ("modified").
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["FIELDS", "GENESIS", "row_hash"]

GENESIS = "0" * 64
FIELDS = ("id", "type", "source", "resource", "actor", "effective_at", "recorded_at", "revision", "payload")


def row_hash(prev_hash: str, values: Sequence[str | None]) -> str:
    """The hash of a row whose FIELDS values are ``values``, chained to ``prev_hash``."""
    parts = [prev_hash]
    for v in values:
        if v is None:
            parts.append("~")
        else:  # the length is in bytes: for ASCII text (the common case) that is len(v)
            parts.append(f"{len(v) if v.isascii() else len(v.encode())}:{v},")
    return hashlib.sha256("".join(parts).encode()).hexdigest()
