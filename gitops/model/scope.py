"""Which kinds are cluster-scoped, when no cluster is there to ask.

Discovery (the API server's resource lists) is the truth when a cluster is configured;
this built-in table of the standard kinds is the fallback. A kind in neither is taken as
namespaced, as custom resources most often are.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["CLUSTER_SCOPED", "Scope", "builtin_scope"]

Scope = Callable[[str, str], bool]
"""``scope(group, kind)`` is True when objects of that kind live in a namespace."""

CLUSTER_SCOPED: frozenset[tuple[str, str]] = frozenset({
    ("", "Namespace"), ("", "Node"), ("", "PersistentVolume"), ("", "ComponentStatus"),
    ("rbac.authorization.k8s.io", "ClusterRole"), ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
    ("storage.k8s.io", "StorageClass"), ("storage.k8s.io", "CSIDriver"), ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("networking.k8s.io", "IngressClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("policy", "PodSecurityPolicy"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
})


def builtin_scope(group: str, kind: str) -> bool:
    return (group, kind) not in CLUSTER_SCOPED
