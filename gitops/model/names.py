"""The names Kubernetes accepts, checked before an object becomes desired state.

The API server refuses an object whose name breaks its kind's rule; a desired state that
holds one could never be applied, so the Git source reports it as an error with the rule
it breaks (the wording follows the API server's own). The rules, by kind:

- a namespace (an object's ``metadata.namespace``, or a Namespace's name): a DNS-1123
  label (lower case letters, digits and '-', at most 63, starting and ending with a letter
  or digit);
- a Service's name: a DNS-1035 label (the same, starting with a letter);
- RBAC roles and bindings: a path segment (anything but '/', '%', '.' and '..'), since
  names such as ``system:controller:x`` are common there;
- every other kind, custom resources included: a DNS-1123 subdomain (labels joined by
  '.', at most 253).
"""

from __future__ import annotations

import re

__all__ = ["name_problem"]

# rule -> (pattern, longest, what the pattern asks), in the API server's words
_RULES: dict[str, tuple[re.Pattern[str], int, str]] = {
    "label": (re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z"), 63,
              "must consist of lower case alphanumeric characters or '-', and must start and end with an "
              "alphanumeric character (a DNS-1123 label)"),
    "1035": (re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?\Z"), 63,
             "must consist of lower case alphanumeric characters or '-', start with a letter and end with an "
             "alphanumeric character (a DNS-1035 label)"),
    "subdomain": (re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z"), 253,
                  "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with "
                  "an alphanumeric character (a DNS-1123 subdomain)"),
}
_RBAC = "rbac.authorization.k8s.io"
_PATH_SEGMENT_KINDS = frozenset({(_RBAC, "Role"), (_RBAC, "ClusterRole"), (_RBAC, "RoleBinding"),
                                 (_RBAC, "ClusterRoleBinding")})
_LABEL_KINDS = {("", "Namespace"): "label", ("", "Service"): "1035"}


def _rule_problem(rule: str, value: str) -> str | None:
    if rule == "segment":
        if value in (".", ".."):
            return f"may not be {value!r}"
        if "/" in value or "%" in value:
            return "may not contain '/' or '%'"
        return None
    pattern, longest, asks = _RULES[rule]
    if len(value) > longest:
        return f"must be no more than {longest} characters"
    return None if pattern.match(value) else asks


_GOOD: set[tuple[str, str, str, str]] = set()  # checked and fine: a history meets each name again and again


def name_problem(group: str, kind: str, name: str, namespace: str) -> str | None:
    """Why the API server would refuse this name or namespace, or None."""
    if (group, kind, name, namespace) in _GOOD:
        return None
    why = _name_problem(group, kind, name, namespace)
    if why is None and len(_GOOD) < 100_000:
        _GOOD.add((group, kind, name, namespace))
    return why


def _name_problem(group: str, kind: str, name: str, namespace: str) -> str | None:
    if namespace:
        why = _rule_problem("label", namespace)
        if why is not None:
            return f"{kind} {name}: namespace {namespace!r} {why}"
    rule = "segment" if (group, kind) in _PATH_SEGMENT_KINDS else _LABEL_KINDS.get((group, kind), "subdomain")
    why = _rule_problem(rule, name)
    return None if why is None else f"{kind} name {name!r} {why}"
