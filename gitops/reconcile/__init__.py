"""The write side: plan from the diff, apply through the cluster port, record every step."""

from gitops.reconcile.apply import with_ownership
from gitops.reconcile.plan import KIND_ORDER, Action, Hold, Plan, make_plan
from gitops.reconcile.reconciler import PassResult, Reconciler
from gitops.reconcile.settings import DISABLE_ANNOTATION, LeaseSettings, ReconcileSettings, SyncWindow
from gitops.reconcile.windows import holding_window

__all__ = ["DISABLE_ANNOTATION", "KIND_ORDER", "Action", "Hold", "LeaseSettings", "PassResult", "Plan",
           "ReconcileSettings", "Reconciler", "SyncWindow", "holding_window", "make_plan", "with_ownership"]
