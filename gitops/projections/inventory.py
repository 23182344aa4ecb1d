"""The inventory of a log: the objects its Git sources desired at some commit. An object
that carries an instance's ownership label but is not in it is no orphan of that log: the
reconciler never prunes it and ``status``/``diff`` do not count it (as Flux prunes only what
its inventory lists). The log itself is the inventory, so none is kept beside it."""

from __future__ import annotations

from typing import Any

from gitops.store import EventLog

__all__ = ["ever_desired"]


def ever_desired(log: EventLog, key: str, *, origin: str | None = None, **until: Any) -> bool:
    """Whether ``origin`` (None: any Git source) desired ``key`` at some commit; ``until``:
    the read filters that bound the history asked (``until_seq``, or ``end``)."""
    for r in log.read(resource=key, types=["desired.applied"], **until):
        if origin is None or getattr(r.event.payload, "origin", "") in ("", origin):
            return True
    return False
