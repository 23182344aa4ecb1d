"""Leader election with a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection
does it: one holder at a time, renewed every ``renew`` seconds; a standby takes the lease
once it has seen the same record unchanged for ``duration`` seconds (measured on its own
monotonic clock from when it last saw the record change, so clocks that disagree between
machines do not matter; a lease seen for the first time whose renewal is older than twice its
duration by this machine's clock is expired too, so that a one-shot command can take over
from a killed holder). Writes carry the resourceVersion read, so two standbys racing
for an expired lease cannot both win: the loser gets 409 and stays standby.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from gitops.model.errors import ClusterUnavailableError
from gitops.model.identity import host
from gitops.model.times import utc_now
from gitops.reconcile.settings import ReconcileSettings
from gitops.sources.cluster.api import ApiRefused, KindInfo
from gitops.sources.cluster.kubeconfig import pod_namespace

T = TypeVar("T")

__all__ = ["LEASE_KIND", "LeaseElector", "LeasePort", "process_identity"]

LEASE_KIND = KindInfo("coordination.k8s.io", "v1", "Lease", "leases", True, frozenset({"get", "create", "update"}))


class LeasePort(Protocol):
    def get(self, kind: KindInfo, namespace: str | None, name: str) -> dict[str, Any] | None: ...

    def create(self, kind: KindInfo, obj: dict[str, Any]) -> dict[str, Any]: ...

    def replace(self, kind: KindInfo, obj: dict[str, Any]) -> dict[str, Any]: ...


def process_identity(prefix: str = "") -> str:
    """A holder identity unique to this process: host, pid and a random part."""
    return f"{prefix}{host()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """Holds (or waits for) one Lease. ``tick()`` is one step of the loop: renew when
    leading, try to take the lease when it expired; it returns whether this process leads.
    ``release()`` gives it up at once (a clean stop), so a standby need not wait it out."""

    def __init__(self, port: LeasePort, *, namespace: str, name: str, identity: str, duration: float,
                 clock: Callable[[], datetime] = utc_now, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.port = port
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration = duration
        self.clock, self.monotonic = clock, monotonic
        self.leading = False
        self.holder: str | None = None  # the holder last seen
        self.previous: str | None = None  # who held it before this process took it
        self._seen: tuple[str, str] | None = None  # (holder, renewTime) last observed
        self._seen_at = 0.0
        self._renewed_at = 0.0
        self.refusal: str | None = None  # why the API server refused this process the lease (RBAC...), if it did
        self.refusal_code = 0  # and the HTTP status it refused with
        self.failure: str | None = None  # why the last try could not reach the API server, if it could not
        self.tried = False  # whether a tick has asked the API server yet: before it, nobody knows who leads
        self._verb = "get"  # the request under way

    @classmethod
    def for_instance(cls, port: LeasePort, settings: ReconcileSettings, identity: str) -> LeaseElector:
        """The elector of the lease ``settings`` name for their instance: the one lease every
        process that applies for that instance (``gitops run``, ``gitops reconcile``) takes."""
        namespace = settings.lease.namespace or pod_namespace() or "default"
        return cls(port, namespace=namespace, name=settings.lease_name, identity=identity,
                   duration=settings.lease.duration)

    @property
    def lease(self) -> str:
        return f"{self.namespace}/{self.name}"

    def _spec(self, transitions: int, acquired: str | None) -> dict[str, Any]:
        now = _micro(self.clock())
        return {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, round(self.duration)),
                "acquireTime": acquired or now, "renewTime": now, "leaseTransitions": transitions}

    def _refused(self, verb: str, e: ApiRefused) -> str:
        if e.code == 404 and verb == "create":
            return (f"the namespace {self.namespace} of the Lease {self.lease} does not exist (HTTP 404: {e.message}); "
                    "create it, or set reconcile.lease.namespace")
        if e.code in (401, 403):
            return (f"the API server refused to let this process {verb} the Lease {self.lease} (HTTP {e.code}: "
                    f"{e.message}); grant get, create and update on leases.coordination.k8s.io in namespace "
                    f"{self.namespace}, or set reconcile.lease.enabled: false")
        return f"the API server refused to let this process {verb} the Lease {self.lease} (HTTP {e.code}: {e.message})"

    def tick(self) -> bool:
        try:
            self.leading = self._tick()
            self.refusal = self.failure = None
        except ApiRefused as e:
            if e.transient:
                self.refusal, self.failure = None, str(e)
            else:  # RBAC, a namespace that does not exist: trying again as it is will not help
                self.refusal, self.refusal_code, self.failure = self._refused(self._verb, e), e.code, None
            if self.leading and self.monotonic() - self._renewed_at > self.duration:
                self.leading = False
        except ClusterUnavailableError as e:
            self.refusal, self.failure = None, str(e)
            # cannot reach or write the lease: a leader that cannot renew within its
            # duration must assume another took over
            if self.leading and self.monotonic() - self._renewed_at > self.duration:
                self.leading = False
        finally:
            self.tried = True
        return self.leading

    def _tick(self) -> bool:
        current = self._call("get", lambda: self.port.get(LEASE_KIND, self.namespace, self.name))
        if current is None:
            try:
                lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                         "metadata": {"name": self.name, "namespace": self.namespace}, "spec": self._spec(0, None)}
                self._call("create", lambda: self.port.create(LEASE_KIND, lease))
            except ApiRefused as e:
                if e.code == 409:  # another process created it first
                    return False
                raise
            self.holder, self.previous, self._renewed_at = self.identity, None, self.monotonic()
            return True
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or None
        record = (str(holder), str(spec.get("renewTime")))
        first_sight = self._seen is None
        if record != self._seen:
            self._seen, self._seen_at = record, self.monotonic()
        self.holder = holder
        mine = holder == self.identity
        duration = float(spec.get("leaseDurationSeconds") or self.duration)
        expired = holder is None or self.monotonic() - self._seen_at > duration or (
            first_sight and self._long_dead(spec.get("renewTime"), duration))
        if not mine and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        current["spec"] = self._spec(transitions, spec.get("acquireTime") if mine else None)
        try:
            self._call("update", lambda: self.port.replace(LEASE_KIND, current))
        except ApiRefused as e:
            if e.code == 409:  # someone else wrote it since we read it
                return False
            raise
        if not mine:
            self.previous = holder
        self.holder, self._renewed_at = self.identity, self.monotonic()
        return True

    def _call(self, verb: str, request: Callable[[], T]) -> T:
        """``request()``, remembering its verb: a refusal names what was refused."""
        self._verb = verb
        return request()

    def _long_dead(self, renew_time: object, duration: float) -> bool:
        """Whether a lease seen for the first time was last renewed so long ago, by this
        machine's clock, that its holder is gone even if the clocks disagree by a whole
        lease duration: how a one-shot ``gitops reconcile``, which looks only once, takes
        over from a holder that was killed, instead of waiting for ever."""
        try:
            renewed = datetime.fromisoformat(str(renew_time).replace("Z", "+00:00"))
        except ValueError:
            return False
        return (self.clock() - renewed).total_seconds() > 2 * duration

    def release(self) -> None:
        """Give the lease up (clear the holder), if this process holds it."""
        if not self.leading:
            return
        self.leading = False
        try:
            current = self.port.get(LEASE_KIND, self.namespace, self.name)
            if current is not None and (current.get("spec") or {}).get("holderIdentity") == self.identity:
                current["spec"] = {**current["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
                self.port.replace(LEASE_KIND, current)
        except (ApiRefused, ClusterUnavailableError):
            pass  # it expires by itself
