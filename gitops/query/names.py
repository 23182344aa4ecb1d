"""Names as kubectl takes them: ``deploy``, ``cm/shop/x``, ``configmap/x -n shop``.

A kind is typed as kubectl takes it: ``Kind``, ``Kind.group``, a plural (``deployments``,
``deployments.apps``), the singular or a short name (``deploy``, ``cm``). What answers to a
name is, in this order: discovery (when a cluster is configured and answers), the standard
kinds (``gitops.model.kinds``), and the kinds the log holds objects of (custom resources
that no cluster describes here). One kind is the answer; several are an error that names
them; none is an error that suggests the closest.

An object is ``TYPE/NAME`` (in ``-n NAMESPACE``, or in the one namespace where the log
holds such an object), ``TYPE/NAMESPACE/NAME``, or the canonical key. An object the log
never held is an error with the closest keys it does hold: a filter that can match
nothing, or a diff of an object nobody ever desired, would only mislead.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gitops.model.errors import GitOpsError, UsageError
from gitops.model.keys import ResourceKey, canonical_group, format_key, parse_key
from gitops.model.kinds import BUILTIN_KINDS, KindNames, plural_of
from gitops.model.scope import builtin_scope
from gitops.store import EventLog

__all__ = ["Kind", "Names"]

_GLOB = frozenset("*?[")


@dataclass(frozen=True)
class Kind:
    """A resolved kind: its group, Kind and whether its objects live in a namespace."""

    group: str
    kind: str
    namespaced: bool

    @property
    def head(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


@dataclass
class Names:
    """Resolves what a user typed against ``log``, the standard kinds and, when a name is
    not among them, what the cluster serves: ``discover()`` gives each served kind with
    whether it is namespaced, or raises a ``GitOpsError`` saying why the cluster could not
    be asked (then said in the error of a name nothing answers to)."""

    log: EventLog
    discover: Callable[[], Iterable[tuple[KindNames, bool]]] | None = None
    _kinds: dict[tuple[str, str], tuple[KindNames, bool]] = field(default_factory=dict, init=False)
    _unserved: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        for names in BUILTIN_KINDS:
            self._kinds.setdefault((names.group, names.kind), (names, builtin_scope(names.group, names.kind)))
        for key in self._log_kinds():
            if (key.group, key.kind) not in self._kinds:
                self._kinds[(key.group, key.kind)] = (
                    KindNames(key.group, key.kind, frozenset({key.kind.lower(), plural_of(key.kind)})),
                    key.namespaced)

    def _log_kinds(self) -> list[ResourceKey]:
        """One key of each kind the log holds objects of."""
        return [parse_key(text) for text in self.log.kind_samples()]

    # ------------------------------------------------------------------ kinds

    def _ask_cluster(self) -> bool:
        """Add what the cluster serves (once); False when there is nothing more to ask."""
        if self.discover is None:
            return False
        discover, self.discover = self.discover, None
        try:
            served = list(discover())
        except GitOpsError as e:
            self._unserved = str(e)
            return False
        for names, namespaced in served:  # the server's word on scope and names wins over the table's
            self._kinds[(canonical_group(names.group, names.kind), names.kind)] = (names, namespaced)
        return True

    def kind(self, text: str) -> Kind:
        """The one kind ``text`` names; a ``UsageError`` (exit 2) when none or several do."""
        try:
            return self._kind(text)
        except UsageError:
            if not self._ask_cluster():
                raise
        return self._kind(text)

    def _kind(self, text: str) -> Kind:
        name, _, group = text.partition(".")
        lowered = name.lower()
        exact = self._kinds.get((canonical_group(group, name), name))
        if exact is not None:
            return Kind(exact[0].group, exact[0].kind, exact[1])
        found = {k: v for k, v in self._kinds.items()
                 if (not group or v[0].group == group) and (lowered in v[0].names or lowered == k[1].lower())}
        if len(found) == 1:
            names, namespaced = next(iter(found.values()))
            return Kind(canonical_group(names.group, names.kind), names.kind, namespaced)
        if len(found) > 1:
            raise UsageError(f"kind {text!r} is ambiguous: it may be "
                             f"{', '.join(sorted(v[0].head for v in found.values()))}; name one as Kind.group")
        every = sorted({n for v in self._kinds.values() for n in (v[0].head, *v[0].names)})
        close = difflib.get_close_matches(text, every, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; 'gitops log' lists what the log holds"
        asked = f" (the cluster could not be asked: {self._unserved})" if self._unserved else ""
        raise UsageError(f"unknown kind {text!r}{asked}{hint}")

    # ------------------------------------------------------------------ objects

    def resource(self, text: str, namespace: str | None = None, *, held: bool = True) -> str:
        """The canonical key of the object ``text`` names (see the module); ``held``: the
        log must hold events about it."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"{text!r} names no object: expected TYPE/NAME (with -n NAMESPACE), "
                             "TYPE/NAMESPACE/NAME, or a key such as Deployment.apps/shop/web")
        kind = self.kind(parts[0])
        if len(parts) == 3:
            if not kind.namespaced:
                raise UsageError(f"{kind.head} is not namespaced: name it as {kind.head}/{parts[2]}")
            key = format_key(ResourceKey(kind.group, kind.kind, parts[1], parts[2]))
        elif not kind.namespaced:
            key = format_key(ResourceKey(kind.group, kind.kind, "", parts[1]))
        else:
            key = self._in_namespace(kind, parts[1], namespace)
        if held and not self.log.holds(key):
            raise self._never_held(text, key, kind)
        return key

    def _in_namespace(self, kind: Kind, name: str, namespace: str | None) -> str:
        if namespace:
            return format_key(ResourceKey(kind.group, kind.kind, namespace, name))
        cluster_scoped = format_key(ResourceKey(kind.group, kind.kind, "", name))
        if self.log.holds(cluster_scoped):  # a kind the log came to know as cluster-scoped: its key as written
            return cluster_scoped
        found = [k for k in self.log.known_resources(f"{kind.head}/", f"/{name}") if k.count("/") == 2]
        if len(found) > 1:
            where = ", ".join(k.split("/")[1] for k in found)
            raise UsageError(f"{kind.head} {name!r} is in several namespaces ({where}): say which with -n NAMESPACE")
        return found[0] if found else format_key(ResourceKey(kind.group, kind.kind, "default", name))

    def _never_held(self, text: str, key: str, kind: Kind) -> UsageError:
        same_kind = self.log.known_resources(f"{kind.head}/")
        close = difflib.get_close_matches(key, same_kind or self.log.known_resources(), n=3, cutoff=0.5)
        hint = f"; the closest it holds: {', '.join(close)}" if close else \
            f"; it holds no {kind.head} at all" if not same_kind else ""
        shown = key if key == text else f"{text!r} ({key})"
        return UsageError(f"the log holds no events about {shown}{hint}")

    def pattern(self, text: str, namespace: str | None = None) -> str:
        """A key or a glob of keys (``deploy/shop/*``, ``Deployment.apps/*/web``): the kind
        resolved when it is no glob itself, ``-n`` filled in for ``TYPE/NAME`` globs."""
        if not (_GLOB & set(text)):
            return self.resource(text, namespace)
        head, _, rest = text.partition("/")
        if not rest or _GLOB & set(head):
            return text
        kind = self.kind(head)
        if kind.namespaced and rest.count("/") == 0:
            rest = f"{namespace or '*'}/{rest}"
        return f"{kind.head}/{rest}"
