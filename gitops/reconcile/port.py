"""The port in front of the cluster, as the reconciler uses it: discovery, server-side
apply, delete and get. ``ClusterClient`` (pykube-ng) is its adapter; errors arrive as
``ApiRefused`` (the API answered with an error status) or ``ClusterUnavailableError``."""

from __future__ import annotations

from typing import Any, Protocol

from gitops.sources.cluster.client import Discovery, KindInfo

__all__ = ["ApplyPort"]


class ApplyPort(Protocol):
    server: str

    def discover(self) -> Discovery:
        """Every kind served."""

    def apply(self, kind: KindInfo, manifest: dict[str, Any], *, field_manager: str, force: bool = False,
              dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply; the object as the server holds it afterwards."""

    def patch(self, kind: KindInfo, namespace: str | None, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch; the object afterwards."""

    def delete(self, kind: KindInfo, namespace: str | None, name: str, *, uid: str | None = None,
               dry_run: bool = False) -> None:
        """Delete one object (that incarnation of it, with ``uid``); gone already is fine."""

    def get(self, kind: KindInfo, namespace: str | None, name: str) -> dict[str, Any] | None:
        """One object, or None."""
