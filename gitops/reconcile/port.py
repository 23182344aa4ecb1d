"""The port in front of the cluster, as the reconciler uses it: discovery, server-side
apply, create, delete, get and list. ``ClusterClient`` (pykube-ng) is its adapter; errors arrive as
``ApiRefused`` (the API answered with an error status), ``AccessDenied`` (a list refused)
or ``ClusterUnavailableError``."""

from __future__ import annotations

from typing import Any, Protocol

from gitops.sources.cluster.api import Applied, Discovery, KindInfo

__all__ = ["ApplyPort"]


class ApplyPort(Protocol):
    server: str

    def discover(self) -> Discovery:
        """Every kind served."""

    def apply(self, kind: KindInfo, manifest: dict[str, Any], *, field_manager: str, force: bool = False,
              dry_run: bool = False) -> Applied:
        """Server-side apply; the object as the server holds it afterwards, and whether the
        server created it."""

    def patch(self, kind: KindInfo, namespace: str | None, name: str, patch: dict[str, Any], *,
              field_manager: str | None = None) -> dict[str, Any]:
        """A JSON merge patch; the object afterwards."""

    def create(self, kind: KindInfo, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Create one object; one that exists is an ``ApiRefused`` 409."""

    def delete(self, kind: KindInfo, namespace: str | None, name: str, *, uid: str | None = None,
               dry_run: bool = False) -> None:
        """Delete one object (that incarnation of it, with ``uid``); gone already is fine."""

    def get(self, kind: KindInfo, namespace: str | None, name: str) -> dict[str, Any] | None:
        """One object, or None."""

    def list(self, kind: KindInfo, namespace: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """Every object of ``kind`` (in ``namespace`` when given) and the list's resourceVersion."""
