"""The write side: plan from the diff, apply through the cluster port, record every step."""

from typing import TYPE_CHECKING

from gitops.model.lazy import lazy_exports

if TYPE_CHECKING:
    from gitops.reconcile.apply import with_ownership
    from gitops.reconcile.plan import KIND_ORDER, Action, Hold, Plan, make_plan
    from gitops.reconcile.reconciler import Reconciler
    from gitops.reconcile.records import PassResult
    from gitops.reconcile.settings import DISABLE_ANNOTATION, LeaseSettings, ReconcileSettings, SyncWindow
    from gitops.reconcile.windows import holding_window

__all__ = ["DISABLE_ANNOTATION", "KIND_ORDER", "Action", "Hold", "LeaseSettings", "PassResult", "Plan",
           "ReconcileSettings", "Reconciler", "SyncWindow", "holding_window", "make_plan", "with_ownership"]

__getattr__ = lazy_exports(__name__, {
    "with_ownership": ".apply",
    "KIND_ORDER": ".plan",
    "Action": ".plan",
    "Hold": ".plan",
    "Plan": ".plan",
    "make_plan": ".plan",
    "PassResult": ".records",
    "Reconciler": ".reconciler",
    "DISABLE_ANNOTATION": ".settings",
    "LeaseSettings": ".settings",
    "ReconcileSettings": ".settings",
    "SyncWindow": ".settings",
    "holding_window": ".windows",
})
