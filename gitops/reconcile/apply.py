"""Carrying one planned action out through the port: what is sent, to where, as whom.

- **Where**: a namespaced object goes to the namespace its ResourceKey names (the Git
  source's ``default_namespace`` for one that names none), never to the client's default;
  a cluster-scoped one names none.
- **What**: the manifest as Git holds it, in the form ``model.applied`` gives (a port's
  protocol filled in, an aggregated ClusterRole's rules left to its controller), with
  this instance's ownership label, and without the fields only the server may set
  (``uid``, ``resourceVersion``, ``managedFields``, ..., and ``status`` where it is a
  subresource): kept in Git, by ``kubectl get -o yaml`` say, they would make the apply a
  precondition that fails, or fight the server. What was left out is said once.
- **As whom**: server-side apply under the field manager; before the first apply to an
  object someone else made, and whenever another manager added fields Git does not set,
  the managedFields are rewritten (``diff.take_over``) so that the apply converges in one
  pass.
- A CRD is waited for until established; a prune deletes that incarnation (uid).
- **Recreate** (``recreate_immutable``, or the object annotated ``gitops.dev/force:
  enabled`` in Git, as Flux's ``force``): an update the API server refuses (422) because a
  field is immutable is done by deleting that incarnation and applying again, once a dry-run
  create shows the server accepts the new object (the name taken is then its only
  objection). Never otherwise: a manifest the server refuses anyway keeps the old object.
  Never a Namespace or CRD (their deletion deletes what they hold); a PersistentVolumeClaim
  or PersistentVolume only when annotated itself (its data may go with it).
- ``contents`` lists what a Namespace or CRD holds, for the prune guard (``cascade``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from gitops.diff import OWNERSHIP_LABEL, DiffSettings, take_over
from gitops.model.applied import as_applied
from gitops.model.errors import ClusterUnavailableError
from gitops.model.keys import canonical_group, format_key, key_of, parse_key
from gitops.reconcile.cascade import CASCADING_KINDS, Contents
from gitops.reconcile.port import ApplyPort
from gitops.reconcile.settings import FORCE_ANNOTATION, ReconcileSettings, annotated
from gitops.sources.cluster.api import AccessDenied, ApiRefused, Applied, KindInfo

__all__ = ["NOT_SERVED", "SERVER_SET", "Applier", "refused_as_immutable", "with_ownership"]

NOT_SERVED = "NotServed"
"""The reason of a failure to apply an object of a kind the cluster does not serve (yet: its
CRD may be installed by someone else at any time), tried again with backoff, never given up."""

SERVER_SET = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
              "deletionTimestamp", "deletionGracePeriodSeconds")
"""Metadata only the API server sets: never sent in an apply."""


_KEEPS_DATA = {("", "PersistentVolumeClaim"), ("", "PersistentVolume")}
_IMMUTABLE = re.compile(r"is immutable|immutable field|updates to .* are forbidden", re.IGNORECASE)


def refused_as_immutable(e: ApiRefused) -> bool:
    """Whether the API server refused an update because a field may not change (its 422
    says so: "field is immutable", a StatefulSet's "updates to statefulset spec ... are
    forbidden", a webhook's or CEL rule's "immutable field")."""
    return e.code == 422 and _IMMUTABLE.search(str(e)) is not None


def with_ownership(manifest: dict[str, Any], instance: str) -> dict[str, Any]:
    """``manifest`` with this instance's ownership label (a copy)."""
    meta = dict(manifest.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), OWNERSHIP_LABEL: instance}
    return {**manifest, "metadata": meta}


class Applier:
    def __init__(self, port: ApplyPort, settings: ReconcileSettings, diff: DiffSettings, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.port = port
        self.settings = settings
        self.diff = diff
        self.monotonic = monotonic
        self._kinds: dict[tuple[str, str], KindInfo] | None = None
        self.learned = False  # a kind was found only by discovering again: the sources should too

    def forget_kinds(self) -> None:
        self._kinds = None

    def kinds(self) -> dict[tuple[str, str], KindInfo]:
        if self._kinds is None:
            self._kinds = self.port.discover().kinds
        return self._kinds

    def served_namespaced(self, group: str, kind: str) -> bool | None:
        """Whether the cluster serves the kind namespaced (None: it does not, or cannot say)."""
        try:
            info = self.kinds().get((group, kind))
        except (ApiRefused, ClusterUnavailableError):
            return None
        return None if info is None else info.namespaced

    def kind(self, key: str, api_version: str | None = None) -> KindInfo:
        k = parse_key(key)
        for fresh in (False, True):
            if fresh:
                self._kinds = None
            info = self.kinds().get((k.group, k.kind))
            if info is not None:
                self.learned |= fresh  # served now, and not when last discovered
                if api_version and api_version != info.api_version:  # apply as Git wrote it
                    group, _, version = api_version.rpartition("/")
                    return KindInfo(group, version, info.kind, info.plural, info.namespaced, info.verbs, info.names,
                                    info.status_subresource)
                return info
        raise ApiRefused(404, NOT_SERVED, f"the cluster does not serve {k.kind}{'.' + k.group if k.group else ''}")

    # ------------------------------------------------------------------ apply

    def to_send(self, key: str, manifest: dict[str, Any], kind: KindInfo) -> tuple[dict[str, Any], list[str]]:
        """The body of the apply of ``manifest`` (Git's, unredacted) as ``key``, and the
        server-set fields Git holds that were left out of it."""
        out = as_applied(manifest)
        meta = dict(out.get("metadata") or {})
        dropped = [f"metadata.{f}" for f in SERVER_SET if f in meta]
        for f in SERVER_SET:
            meta.pop(f, None)
        namespace = parse_key(key).namespace
        if kind.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        out = {**out, "metadata": meta}
        if kind.status_subresource and "status" in out:
            dropped.append("status")
            out = {k: v for k, v in out.items() if k != "status"}
        return with_ownership(out, self.settings.instance), dropped

    def apply(self, key: str, manifest: dict[str, Any], *, dry_run: bool, take: bool, adopt: bool) -> Applied:
        """Apply ``manifest`` as ``key``; with ``take``, hand other managers' extra fields
        over first, with ``adopt`` (an object someone else made) the fields of kubectl's
        client-side apply too."""
        kind = self.kind(key, str(manifest.get("apiVersion", "")))
        body, _ = self.to_send(key, manifest, kind)
        if (take or adopt) and not dry_run:
            self._take_over(key, kind, body, adopt=adopt)
        applied = self.port.apply(kind, body, field_manager=self.settings.field_manager,
                                  force=self.settings.force_conflicts, dry_run=dry_run)
        if kind.kind == "CustomResourceDefinition" and not dry_run:
            self._wait_established(kind, applied.object)
            self._kinds = None  # its kind is served from now: discover again when asked
        return applied

    def apply_or_recreate(self, key: str, manifest: dict[str, Any], live: dict[str, Any] | None, *, dry_run: bool,
                          take: bool, adopt: bool) -> tuple[Applied, str, str | None]:
        """``apply``, and when the server refuses it for an immutable field, ``recreate`` where
        that is allowed (``why_not_recreated``). What the server did: create, update, or
        recreate with the uid deleted."""
        try:
            applied = self.apply(key, manifest, dry_run=dry_run, take=take, adopt=adopt)
        except ApiRefused as e:
            if live is None or not refused_as_immutable(e):
                raise
            why_not = self.why_not_recreated(key, manifest)
            if why_not is not None:
                raise ApiRefused(e.code, e.reason, f"{e.message} ({why_not})") from e
            uid = (live.get("metadata") or {}).get("uid")
            return self.recreate(key, manifest, live, refused=e, dry_run=dry_run), "recreate", uid
        return applied, "create" if applied.created else "update", None

    def why_not_recreated(self, key: str, manifest: dict[str, Any]) -> str | None:
        """Why an update refused for an immutable field may not recreate the object (None: it
        may). A Namespace or CRD never is (its deletion deletes what it holds); a volume or
        claim only when annotated itself, not by the instance-wide setting."""
        k = parse_key(key)
        if (k.group, k.kind) in CASCADING_KINDS:
            return f"a {k.kind} is never deleted to be created again: that deletes everything it holds"
        if annotated(manifest, FORCE_ANNOTATION, "enabled"):
            return None
        if self.settings.recreate_immutable and (k.group, k.kind) not in _KEEPS_DATA:
            return None
        if self.settings.recreate_immutable:
            return (f"a {k.kind} is deleted and created again only when annotated {FORCE_ANNOTATION}: enabled "
                    "itself: its data may go with it")
        return (f"to delete and create it again, annotate it {FORCE_ANNOTATION}: enabled in Git, or set "
                "reconcile.recreate_immutable")

    def recreate(self, key: str, manifest: dict[str, Any], live: dict[str, Any], *, refused: ApiRefused,
                 dry_run: bool = False) -> Applied:
        """Delete the incarnation ``live`` and apply ``manifest`` again (see the module):
        first a dry-run create, which must fail only because the name is taken; then the
        delete, a wait until that incarnation is gone, and the apply. Raises ``ApiRefused``
        (the update's refusal, and why the object was kept) when the server refuses the new
        object too. With ``dry_run``, only the check: ``live`` is returned."""
        kind = self.kind(key, str(manifest.get("apiVersion", "")))
        body, _ = self.to_send(key, manifest, kind)
        try:
            self.port.create(kind, body, dry_run=True)
        except ApiRefused as e:
            if e.code != 409:
                raise ApiRefused(refused.code, refused.reason, f"{refused.message}; not recreated: the server "
                                                               f"refuses the new object too ({e})") from e
        if dry_run:
            return Applied(live, False)
        k = parse_key(key)
        uid = (live.get("metadata") or {}).get("uid")
        self.port.delete(kind, k.namespace or None, k.name, uid=uid)
        deadline = self.monotonic() + self.settings.recreate_timeout
        while (now := self.port.get(kind, k.namespace or None, k.name)) is not None and \
                (now.get("metadata") or {}).get("uid") == uid:
            if self.monotonic() > deadline:
                raise ClusterUnavailableError(f"{key} was deleted to be recreated, and was not gone within "
                                              f"{self.settings.recreate_timeout:g}s (finalizers?)")
            time.sleep(0.2)
        return self.port.apply(kind, body, field_manager=self.settings.field_manager,
                               force=self.settings.force_conflicts)

    def _take_over(self, key: str, kind: KindInfo, body: dict[str, Any], *, adopt: bool) -> None:
        k = parse_key(key)
        live = self.port.get(kind, k.namespace or None, k.name)
        if live is None:
            return
        fields = take_over(body, live, field_manager=self.settings.field_manager,
                           ignore_managers=self.diff.ignore_managers, adopt=adopt,
                           keep_last_applied=not self.settings.remove_last_applied)
        if fields is not None:
            rv = (live.get("metadata") or {}).get("resourceVersion")
            self.port.patch(kind, k.namespace or None, k.name,
                            {"metadata": {"managedFields": fields, "resourceVersion": rv}},
                            field_manager=self.settings.field_manager)

    def _wait_established(self, kind: KindInfo, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name"))
        deadline = self.monotonic() + self.settings.crd_timeout
        while True:
            conditions = (obj.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                return
            if self.monotonic() > deadline:
                raise ClusterUnavailableError(f"CustomResourceDefinition {name} was not established within "
                                              f"{self.settings.crd_timeout:g}s")
            time.sleep(0.1)
            obj = self.port.get(kind, None, name) or {}

    # ------------------------------------------------------------------ prune

    def prune(self, key: str, live: dict[str, Any], *, dry_run: bool) -> str | None:
        """Delete that incarnation (uid) of the object; returns the uid."""
        k = parse_key(key)
        uid = (live.get("metadata") or {}).get("uid")
        self.port.delete(self.kind(key), k.namespace or None, k.name, uid=uid, dry_run=dry_run)
        return str(uid) if uid else None

    def contents(self, key: str, live: dict[str, Any]) -> Contents:
        """What the Namespace or CRD ``key`` holds now, listed from the cluster."""
        k = parse_key(key)
        out = Contents()
        if k.kind == "Namespace":
            kinds = [i for i in self.kinds().values() if i.namespaced and i.watchable
                     and canonical_group(i.group, i.kind) == i.group]  # one list per object, not per old group
            namespace: str | None = k.name
        else:
            names = (live.get("spec") or {}).get("names") or {}
            group = str((live.get("spec") or {}).get("group", ""))
            info = self.kinds().get((group, str(names.get("kind", ""))))
            kinds = [info] if info is not None else []
            namespace = None
        for info in kinds:
            try:
                items, _ = self.port.list(info, namespace)
            except (AccessDenied, ApiRefused) as e:
                out.unlisted[info.name] = str(e)
                continue
            for item in items:
                m = {**item, "apiVersion": item.get("apiVersion") or info.api_version, "kind": info.kind}
                out.objects[format_key(key_of(m, namespaced=info.namespaced))] = (info.group, info.kind, m)
        return out
