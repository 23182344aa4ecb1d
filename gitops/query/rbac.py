"""The least RBAC a reconciler needs, from what Git desires (``gitops deploy rbac``).

What ``gitops run`` does with a cluster is known from the log: the kinds Git desires, in
which namespaces, and the kinds configured to be watched besides. So its rights can be
written down exactly, instead of a ClusterRole that reads and writes everything:

- in each namespace it manages (``cluster.namespaces``, which the cluster source then
  watches one by one): a Role to read (get, list, watch) and write (create, patch, update,
  delete) the namespaced kinds Git desires, and to read the namespaced kinds configured to
  be watched; a RoleBinding of it to the service account;
- cluster-wide, a ClusterRole to read Namespaces (every instance watches them; their names
  are no secret) and the cluster-scoped kinds configured to be watched, and to read and
  write the cluster-scoped kinds Git desires (a Namespace Git desires: patch, update and
  delete of those names only; create cannot be limited to names by RBAC);
- its Lease, in the Lease's namespace: get and update of that one name, and create;
- Secrets are read only in the namespaces above, where Git desires them; reading them in
  every namespace is an opt-in (``secrets_cluster_wide``), never a default.

Everything else is refused by the API server, and an object Git puts outside these
namespaces is held by the reconciler as out of scope before any request is sent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gitops.events.models import DesiredApplied
from gitops.model.errors import UsageError
from gitops.model.keys import ResourceKey, canonical_group, parse_key
from gitops.model.kinds import builtin_plural, plural_of
from gitops.model.scope import builtin_scope
from gitops.store import EventLog

__all__ = ["RbacPlan", "ServiceAccountRef", "least_privilege", "plan_rbac"]

READ = ["get", "list", "watch"]
WRITE = ["get", "list", "watch", "create", "patch", "update", "delete"]


@dataclass(frozen=True)
class ServiceAccountRef:
    namespace: str
    name: str


@dataclass
class RbacPlan:
    """What the reconciler reads and writes, by API group and resource (plural)."""

    namespaces: list[str]
    namespaced_write: set[tuple[str, str]] = field(default_factory=set)
    namespaced_read: set[tuple[str, str]] = field(default_factory=set)
    cluster_write: set[tuple[str, str]] = field(default_factory=set)
    cluster_read: set[tuple[str, str]] = field(default_factory=lambda: {("", "namespaces")})
    desired_namespaces: set[str] = field(default_factory=set)  # Namespaces Git desires (written by name)
    outside: list[str] = field(default_factory=list)  # namespaces Git desires objects in, not among ``namespaces``


def _plural(group: str, kind: str, crds: dict[tuple[str, str], str]) -> str:
    return crds.get((group, kind)) or builtin_plural(group, kind) or plural_of(kind)


def _crd_plurals(manifests: Iterable[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(group, Kind) -> plural, from the CustomResourceDefinitions Git desires."""
    out: dict[tuple[str, str], str] = {}
    for m in manifests:
        if m.get("kind") != "CustomResourceDefinition":
            continue
        spec = m.get("spec") or {}
        names = spec.get("names") or {}
        if spec.get("group") and names.get("kind") and names.get("plural"):
            out[(str(spec["group"]), str(names["kind"]))] = str(names["plural"])
    return out


def plan_rbac(log: EventLog, *, namespaces: Sequence[str] = (), watched_kinds: Sequence[str] = (),
              source: str | None = None) -> RbacPlan:
    """The rights the desired state in ``log`` needs (of the Git source ``source`` when given),
    in ``namespaces`` (cluster.namespaces; empty: the namespaces Git desires objects in, and
    the Namespaces it desires); ``watched_kinds`` (cluster.kinds, as ``Kind[.group]``) are read only."""
    desired: list[tuple[ResourceKey, dict[str, Any]]] = []
    for r in log.current("desired", origin=source):
        if isinstance(r.event, DesiredApplied) and r.event.resource:
            desired.append((parse_key(r.event.resource), r.event.payload.manifest))
    if not desired:
        raise UsageError(f"{log.path} holds no desired state to derive rights from: read the repository first "
                         "(gitops ingest git --repo ...)")
    crds = _crd_plurals(m for _, m in desired)
    scoped = {(k.group, k.kind): bool(k.namespace) for k, _ in desired}
    in_git = {k.namespace for k, _ in desired if k.namespace} | {
        k.name for k, _ in desired if (k.group, k.kind) == ("", "Namespace")}
    plan = RbacPlan(sorted(set(namespaces) or in_git))
    plan.outside = sorted(in_git - set(plan.namespaces))
    for k, _ in desired:
        resource = (k.group, _plural(k.group, k.kind, crds))
        if (k.group, k.kind) == ("", "Namespace"):
            if k.name in plan.namespaces:
                plan.desired_namespaces.add(k.name)
        elif k.namespace:
            plan.namespaced_write.add(resource)
        else:
            plan.cluster_write.add(resource)
    for text in watched_kinds:
        kind, _, group = text.partition(".")
        group = canonical_group(group, kind)
        resource = (group, _plural(group, kind, crds))
        namespaced = scoped.get((group, kind), builtin_scope(group, kind))
        (plan.namespaced_read if namespaced else plan.cluster_read).add(resource)
    plan.namespaced_read -= plan.namespaced_write
    plan.cluster_read -= plan.cluster_write
    return plan


def _rules(write: set[tuple[str, str]], read: set[tuple[str, str]]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for verbs, resources in ((WRITE, write), (READ, read)):
        by_group: dict[str, list[str]] = defaultdict(list)
        for group, plural in sorted(resources):
            by_group[group].append(plural)
        rules.extend({"apiGroups": [g], "resources": sorted(rs), "verbs": list(verbs)} for g, rs in by_group.items())
    return rules


def _binding(kind: str, name: str, role_kind: str, sa: ServiceAccountRef,
             namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": sa.name, "namespace": sa.namespace}]}


def least_privilege(plan: RbacPlan, *, instance: str, service_account: ServiceAccountRef, lease_namespace: str,
                    lease_name: str, secrets_cluster_wide: bool = False) -> list[dict[str, Any]]:
    """The RBAC objects of ``plan``: the Namespaces it manages (its Roles are made there, so
    they must exist first on a fresh cluster), a ClusterRole and its binding, a Role and
    RoleBinding per namespace, and the Lease's Role and RoleBinding."""
    name = f"gitops-{instance}"
    cluster_read = set(plan.cluster_read) | ({("", "secrets")} if secrets_cluster_wide else set())
    cluster_rules = _rules(plan.cluster_write, cluster_read)
    if plan.desired_namespaces:
        names = sorted(plan.desired_namespaces)
        cluster_rules += [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create"]},
                          {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": names,
                           "verbs": ["patch", "update", "delete"]}]
    meta_labels = {"app.kubernetes.io/name": "gitops", "app.kubernetes.io/instance": instance}
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in plan.namespaces]
    objects += [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": name, "labels": meta_labels}, "rules": cluster_rules},
        _binding("ClusterRoleBinding", name, "ClusterRole", service_account),
    ]
    ns_rules = _rules(plan.namespaced_write, plan.namespaced_read)
    for ns in plan.namespaces:
        objects.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                        "metadata": {"name": name, "namespace": ns, "labels": meta_labels}, "rules": ns_rules})
        objects.append(_binding("RoleBinding", name, "Role", service_account, ns))
    lease = f"{name}-lease"
    objects.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                    "metadata": {"name": lease, "namespace": lease_namespace, "labels": meta_labels},
                    "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                               "resourceNames": [lease_name], "verbs": ["get", "update"]},
                              {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]}]})
    objects.append(_binding("RoleBinding", lease, "Role", service_account, lease_namespace))
    return objects
