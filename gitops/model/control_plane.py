"""Who the control plane is: the field managers and users through which Kubernetes itself
writes to objects (a Deployment's revision annotation, a ServiceAccount's token, a CRD's
status, the garbage collector's deletes). What they do is the cluster working: not drift
and not a change made outside Git."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

__all__ = ["CONTROLLER_MANAGERS", "CONTROL_PLANE_USERS", "is_control_plane_user"]

CONTROLLER_MANAGERS = ("kube-controller-manager", "kube-scheduler", "kubelet", "cloud-controller-manager",
                       "kube-apiserver")
"""The field managers of the control plane's own writers."""

CONTROL_PLANE_USERS = ("system:apiserver", "system:kube-controller-manager", "system:kube-scheduler",
                       "system:serviceaccount:kube-system:*", "system:node:*")
"""The users (globs) the control plane's components authenticate as, in the audit log."""


def is_control_plane_user(user: str, globs: Iterable[str] = CONTROL_PLANE_USERS) -> bool:
    return any(fnmatch.fnmatchcase(user, g) for g in globs)
