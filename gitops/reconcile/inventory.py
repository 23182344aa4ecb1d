"""The hold of a prune outside the inventory (``gitops.projections.inventory``): an orphan
(a live object with this instance's ownership label that Git does not desire now) that the
log's Git source never desired is not pruned but held (``NotInInventory``): another gitops
setup writing as the same ``reconcile.instance`` made it, or someone set the label by hand."""

from __future__ import annotations

from gitops.reconcile.plan import Hold

__all__ = ["not_in_inventory"]


def not_in_inventory(instance: str) -> Hold:
    return Hold(f"not-in-inventory: it carries this instance's label ({instance}), but this log's Git source never "
                "desired it (another gitops setup with the same reconcile.instance, or a label set by hand); it is "
                "not pruned", "NotInInventory")
