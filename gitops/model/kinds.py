"""The names kubectl takes for the standard kinds, when no cluster is there to ask.

``kubectl get deploy``, ``cm/settings`` and ``deployments.apps`` name kinds by their
resource names: the plural, the singular (the kind in lower case) and the short names the
API server publishes in discovery. With a cluster configured, discovery is the truth; this
table of the kinds a Kubernetes 1.20+ server serves is the fallback, so that the names a
kubectl user types work offline, on a copy of the log kept as evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BUILTIN_KINDS", "KindNames", "builtin_plural", "plural_of"]


@dataclass(frozen=True)
class KindNames:
    """One kind and every lower-case name kubectl takes for it."""

    group: str
    kind: str
    names: frozenset[str]

    @property
    def head(self) -> str:
        """``Kind.group`` (``Kind`` for the core group): how keys begin."""
        return f"{self.kind}.{self.group}" if self.group else self.kind


def plural_of(kind: str) -> str:
    """The plural resource name the API server gives a kind (its lower case, English
    rules as the CRD tooling applies them); used for kinds no discovery describes."""
    lower = kind.lower()
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in ("a", "e", "i", "o", "u"):
        return lower[:-1] + "ies"
    return lower + "s"


# (group, Kind, short names); the plural is plural_of(Kind) unless given after a '='
_TABLE: tuple[tuple[str, str, str], ...] = (
    ("", "ConfigMap", "cm"), ("", "Endpoints", "ep =endpoints"), ("", "Event", "ev"),
    ("", "LimitRange", "limits"), ("", "Namespace", "ns"), ("", "Node", "no"),
    ("", "PersistentVolumeClaim", "pvc"), ("", "PersistentVolume", "pv"), ("", "Pod", "po"),
    ("", "PodTemplate", ""), ("", "ReplicationController", "rc"), ("", "ResourceQuota", "quota"),
    ("", "Secret", ""), ("", "ServiceAccount", "sa"), ("", "Service", "svc"), ("", "ComponentStatus", "cs"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration", ""),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", ""),
    ("apiextensions.k8s.io", "CustomResourceDefinition", "crd crds"),
    ("apiregistration.k8s.io", "APIService", ""),
    ("apps", "ControllerRevision", ""), ("apps", "DaemonSet", "ds"), ("apps", "Deployment", "deploy"),
    ("apps", "ReplicaSet", "rs"), ("apps", "StatefulSet", "sts"),
    ("autoscaling", "HorizontalPodAutoscaler", "hpa"),
    ("batch", "CronJob", "cj"), ("batch", "Job", ""),
    ("certificates.k8s.io", "CertificateSigningRequest", "csr"),
    ("coordination.k8s.io", "Lease", ""),
    ("discovery.k8s.io", "EndpointSlice", ""),
    ("networking.k8s.io", "Ingress", "ing"), ("networking.k8s.io", "IngressClass", ""),
    ("networking.k8s.io", "NetworkPolicy", "netpol"),
    ("node.k8s.io", "RuntimeClass", ""),
    ("policy", "PodDisruptionBudget", "pdb"), ("policy", "PodSecurityPolicy", "psp"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding", ""), ("rbac.authorization.k8s.io", "ClusterRole", ""),
    ("rbac.authorization.k8s.io", "RoleBinding", ""), ("rbac.authorization.k8s.io", "Role", ""),
    ("scheduling.k8s.io", "PriorityClass", "pc"),
    ("storage.k8s.io", "CSIDriver", ""), ("storage.k8s.io", "CSINode", ""),
    ("storage.k8s.io", "StorageClass", "sc"), ("storage.k8s.io", "VolumeAttachment", ""),
)


def _plural(kind: str, shorts: str) -> str:
    """The row's plural: the one given after a '=', else plural_of(kind)."""
    return next((w[1:] for w in shorts.split() if w.startswith("=")), None) or plural_of(kind)


def _entry(group: str, kind: str, shorts: str) -> KindNames:
    names = {kind.lower(), _plural(kind, shorts), *(w for w in shorts.split() if not w.startswith("="))}
    return KindNames(group, kind, frozenset(names))


BUILTIN_KINDS: tuple[KindNames, ...] = tuple(_entry(*row) for row in _TABLE)
_PLURALS = {(group, kind): _plural(kind, shorts) for group, kind, shorts in _TABLE}


def builtin_plural(group: str, kind: str) -> str | None:
    """The resource name (plural) of a standard kind, as RBAC rules and URLs name it; None
    for a kind the table does not know (a custom resource: its CRD says)."""
    return _PLURALS.get((group, kind))
