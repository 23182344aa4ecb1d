"""The inventory a prune is limited to: the objects the log's Git source desired at some
commit. An orphan (a live object with this instance's ownership label that Git does not
desire now) outside it is not pruned but held (``NotInInventory``): another gitops setup
writing as the same ``reconcile.instance`` made it, or someone set the label by hand. Flux
prunes only what its inventory lists for the same reason; here the log itself is the
inventory, so none has to be kept beside it."""

from __future__ import annotations

from gitops.reconcile.plan import Hold
from gitops.store import EventLog

__all__ = ["ever_desired", "not_in_inventory"]


def ever_desired(log: EventLog, key: str, origin: str | None) -> bool:
    """Whether ``origin`` (None: any Git source) desired ``key`` at some commit."""
    for r in log.read(resource=key, types=["desired.applied"]):
        if origin is None or getattr(r.event.payload, "origin", "") in ("", origin):
            return True
    return False


def not_in_inventory(instance: str) -> Hold:
    return Hold(f"not-in-inventory: it carries this instance's label ({instance}), but this log's Git source never "
                "desired it (another gitops setup with the same reconcile.instance, or a label set by hand); it is "
                "not pruned", "NotInInventory")
