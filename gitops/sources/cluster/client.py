"""The cluster adapter: the only module that imports pykube-ng.

It offers what the cluster source needs: discovery (which kinds the server serves, in
which version, namespaced or not), a full list of a kind with its resourceVersion, and a
watch from a resourceVersion with bookmarks. Failures are mapped onto our errors:
``ResourceVersionGone`` for 410 (relist), ``ClusterUnavailableError`` for a server that
cannot be reached or refuses us. The values and errors it speaks in are
``gitops.sources.cluster.api``'s, which its callers import without pykube.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pykube
import requests

from gitops.model.errors import ClusterUnavailableError, ConfigError, SourceError
from gitops.sources.cluster.api import (
    AccessDenied,
    ApiRefused,
    Applied,
    Discovery,
    KindInfo,
    ResourceVersionGone,
    WatchEvent,
)
from gitops.sources.cluster.kubeconfig import TokenFile, check_kubeconfig, in_cluster, service_account_dir

__all__ = ["ClusterClient", "check_kubeconfig"]


_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def _refused(r: requests.Response) -> ApiRefused:
    try:
        body = orjson.loads(r.content)
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or r.text[:500] or r.reason)
    return ApiRefused(r.status_code, str(body.get("reason") or r.reason or ""), message)


def _status(e: Exception) -> int | None:
    if isinstance(e, pykube.exceptions.HTTPError):
        return int(e.code)
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None)


def _unavailable(server: str, e: Exception) -> SourceError:
    code = _status(e)
    if code in (401, 403):
        return AccessDenied(f"the Kubernetes API at {server} refused the request (HTTP {code}: {e})")
    reason = f"HTTP {code}: {e}" if code is not None else type(e).__name__
    return ClusterUnavailableError(f"the Kubernetes API at {server} is unavailable ({reason})")


class ClusterClient:
    """pykube-ng clients for one cluster: one for requests, one with a long read timeout
    for watches (which the server ends every ``watch_timeout`` seconds)."""

    def __init__(self, kubeconfig: str | Path | None = None, *, context: str | None = None,
                 watch_timeout: int = 300, page_size: int = 500, user_agent: str | None = None) -> None:
        inside = in_cluster(kubeconfig)
        path = service_account_dir() if inside else check_kubeconfig(kubeconfig, context)
        try:
            config = pykube.KubeConfig.from_service_account(str(path)) if inside else \
                pykube.KubeConfig.from_file(str(path), **({"current_context": context} if context else {}))
            self.server = str(config.cluster["server"])
            self.api = pykube.HTTPClient(config, timeout=(10, 60))
            self.watch_api = pykube.HTTPClient(config, timeout=(10, watch_timeout + 30))
            if inside:  # the kubelet rotates a projected token: each request sends the file's current one
                self.api.session.auth = self.watch_api.session.auth = TokenFile(path / "token")
            if user_agent is not None:
                self.api.session.headers["User-Agent"] = user_agent
        except (pykube.exceptions.PyKubeError, OSError, KeyError) as e:
            raise ConfigError(f"cannot use {'the service account in ' if inside else 'kubeconfig '}{path}: "
                              f"{e}") from None
        self.watch_timeout = watch_timeout
        self.page_size = page_size
        self._responses: set[Any] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def on_response(self, callback: Callable[[str, int, float], None]) -> None:
        """Call ``callback(method, status code, seconds to the response)`` for every request
        this client sends (requests' response hooks): for latency metrics."""

        def hook(r: requests.Response, *args: Any, **kwargs: Any) -> None:
            callback(r.request.method or "", r.status_code, r.elapsed.total_seconds())

        for api in (self.api, self.watch_api):
            api.session.hooks["response"].append(hook)

    # ------------------------------------------------------------------ discovery

    def discover(self) -> Discovery:
        """Every kind the server serves, keyed by (group, kind), group by group. A kind takes
        its group's preferred version, or another version the group serves it in (CronJob is
        only batch/v1beta1 on 1.20, whose preferred batch/v1 lacks it). A group version that
        fails to answer (an aggregated API whose backend is down answers 503) is left out and
        named in ``failed``, and the rest is still discovered; only a server that cannot be
        reached at all raises."""
        kinds: dict[tuple[str, str], KindInfo] = {}
        failed: dict[str, str] = {}
        try:
            groups = self.api.get(version="", base="/apis")
            groups.raise_for_status()
            versions: list[tuple[str, str]] = [("", "v1")]
            for g in groups.json()["groups"]:
                preferred = g["preferredVersion"]["version"]
                others = [v["version"] for v in g.get("versions", ()) if v["version"] != preferred]
                versions.extend((g["name"], v) for v in [preferred, *others])
        except (*_NETWORK_ERRORS, requests.HTTPError, pykube.exceptions.HTTPError) as e:
            raise _unavailable(self.server, e) from None
        for group, version in versions:
            api_version = f"{group}/{version}" if group else version
            try:
                listing = self.api.get(version=api_version, **({"base": "/api"} if not group else {}))
                listing.raise_for_status()  # not pykube's resource_list: it caches forever, CRDs come and go
            except _NETWORK_ERRORS as e:
                raise _unavailable(self.server, e) from None
            except (requests.HTTPError, pykube.exceptions.HTTPError) as e:
                failed[api_version] = str(_unavailable(self.server, e))
                continue
            resources = listing.json()["resources"]
            with_status = {r["name"].partition("/")[0] for r in resources if r["name"].endswith("/status")}
            for r in resources:
                if "/" in r["name"]:
                    continue  # subresources
                key = (group, r["kind"])
                if key not in kinds:  # the preferred version first, then the others in the server's order
                    names = {r["name"], r["kind"].lower(), r.get("singularName") or "", *r.get("shortNames", ())}
                    kinds[key] = KindInfo(group, version, r["kind"], r["name"], bool(r["namespaced"]),
                                          frozenset(r.get("verbs", ())), frozenset(n for n in names if n),
                                          r["name"] in with_status)
        return Discovery(kinds, failed)

    def version(self) -> dict[str, Any]:
        """The server's ``/version`` (gitVersion, platform, ...)."""
        try:
            r = self.api.get(version="version", base="/", url="")
            r.raise_for_status()
            body = orjson.loads(r.content)
        except (*_NETWORK_ERRORS, requests.HTTPError, pykube.exceptions.HTTPError) as e:
            raise _unavailable(self.server, e) from None
        except orjson.JSONDecodeError:
            raise ClusterUnavailableError(f"the Kubernetes API at {self.server} answered /version with no JSON") \
                from None
        return body if isinstance(body, dict) else {}

    def identity(self) -> str | None:
        """The uid of the ``kube-system`` Namespace: made once with the cluster and kept for
        its life, the common way to tell one cluster from another whatever URL reaches it.
        None when there is none, or the credentials may not read it."""
        doc = self._document(version="v1", base="/api", url="namespaces/kube-system")
        uid = (doc.get("metadata") or {}).get("uid") if doc is not None else None
        return str(uid) if uid else None

    def openapi(self) -> dict[str, Any] | None:
        """The server's OpenAPI v2 document (built-in kinds and every CRD's published
        schema), or None when it serves none."""
        return self._document(version="openapi", base="/", url="v2")

    def _document(self, **where: str) -> dict[str, Any] | None:
        """One JSON object the server serves at ``where``; None when it refuses or serves no
        JSON object there (an unreachable server is an error)."""
        try:
            r = self.api.get(**where)
        except _NETWORK_ERRORS as e:
            raise _unavailable(self.server, e) from None
        if r.status_code >= 400:
            return None
        try:
            doc = orjson.loads(r.content)
        except orjson.JSONDecodeError:
            return None
        return doc if isinstance(doc, dict) else None

    def _request_kwargs(self, kind: KindInfo, namespace: str | None = None) -> dict[str, Any]:
        return {"version": kind.api_version, "url": kind.plural,
                **({"base": "/api"} if not kind.group else {}), **({"namespace": namespace} if namespace else {})}

    def list(self, kind: KindInfo, namespace: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """Every object of ``kind`` (in ``namespace``, or in all) and the list's
        resourceVersion, read in pages of ``page_size`` (one consistent snapshot; an
        expired page token is a 410). A refusal (401/403) is ``AccessDenied``."""
        items: list[dict[str, Any]] = []
        params: dict[str, str] = {"limit": str(self.page_size)}
        while True:
            try:
                r = self.api.get(**self._request_kwargs(kind, namespace), params=params)
                if r.status_code == 410:
                    raise ResourceVersionGone(f"{kind.name}: the list's continue token expired")
                self.api.raise_for_status(r)
                body = orjson.loads(r.content)
            except (*_NETWORK_ERRORS, requests.HTTPError, pykube.exceptions.HTTPError) as e:
                raise _unavailable(self.server, e) from None
            items.extend(body.get("items") or [])
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                break
            params = {"limit": str(self.page_size), "continue": token}
        for item in items:  # list items carry neither; watch objects do
            item.setdefault("apiVersion", kind.api_version)
            item.setdefault("kind", kind.kind)
        return items, str(body["metadata"]["resourceVersion"])

    def collection_version(self, kind: KindInfo, namespace: str | None = None) -> str:
        """The resourceVersion of ``kind``'s collection now (a list of one object)."""
        try:
            r = self.api.get(**self._request_kwargs(kind, namespace), params={"limit": "1"})
            self.api.raise_for_status(r)
            return str(orjson.loads(r.content)["metadata"]["resourceVersion"])
        except (*_NETWORK_ERRORS, requests.HTTPError, pykube.exceptions.HTTPError) as e:
            raise _unavailable(self.server, e) from None

    def watch(self, kind: KindInfo, resource_version: str, namespace: str | None = None) -> Iterator[WatchEvent]:
        """Changes to ``kind`` after ``resource_version``, with bookmarks, until the server
        ends the watch (every ``watch_timeout`` seconds) or ``close()`` is called.

        The request goes through pykube's client; the stream is read here rather than with
        pykube's WatchQuery so that the response can be closed from another thread at once
        (a stopping process should not wait out an idle watch)."""
        params = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(self.watch_timeout)}
        try:
            r = self.watch_api.get(**self._request_kwargs(kind, namespace), params=params, stream=True)
        except _NETWORK_ERRORS as e:
            raise _unavailable(self.server, e) from None
        with self._lock:
            self._responses.add(r)
        try:
            if r.status_code == 410:
                raise ResourceVersionGone(f"{kind.name}: resourceVersion {resource_version} is gone")
            try:
                self.watch_api.raise_for_status(r)
            except (requests.HTTPError, pykube.exceptions.HTTPError) as e:
                raise _unavailable(self.server, e) from None
            yield WatchEvent("CONNECTED", {})  # the server accepted the watch
            for line in r.iter_lines():
                if not line:
                    continue
                ev = orjson.loads(line)
                obj = ev.get("object") or {}
                if ev.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        raise ResourceVersionGone(f"{kind.name}: resourceVersion {resource_version} is gone")
                    raise ClusterUnavailableError(f"watch of {kind.name} failed: {obj.get('message', obj)}")
                yield WatchEvent(str(ev.get("type")), obj)
        except (*_NETWORK_ERRORS, OSError, orjson.JSONDecodeError) as e:  # the connection broke, a line torn
            if self._closed.is_set():
                return  # close() ended the stream under the reader: a normal end
            raise _unavailable(self.server, e) from None
        except (AttributeError, ValueError):
            # what urllib3 raises when close() pulls the socket from under a read; anything
            # else of this kind is a bug, and must not pass for an outage
            if self._closed.is_set():
                return
            raise
        finally:
            with self._lock:
                self._responses.discard(r)
            r.close()

    # ------------------------------------------------------------------ writes (the reconciler's port)

    def _object_kwargs(self, kind: KindInfo, namespace: str | None, name: str | None) -> dict[str, Any]:
        url = kind.plural if name is None else f"{kind.plural}/{name}"
        kwargs: dict[str, Any] = {"version": kind.api_version, "url": url,
                                  **({"base": "/api"} if not kind.group else {})}
        if kind.namespaced:
            kwargs["namespace"] = namespace or "default"
        return kwargs

    def _send(self, method: str, kind: KindInfo, namespace: str | None, name: str | None,
              **kwargs: Any) -> requests.Response:
        """One request; an error status is an ``ApiRefused``, a server that cannot be reached
        a ``ClusterUnavailableError`` (both say what and where)."""
        try:
            r: requests.Response = getattr(self.api, method)(**self._object_kwargs(kind, namespace, name), **kwargs)
        except _NETWORK_ERRORS as e:
            raise _unavailable(self.server, e) from None
        if r.status_code >= 400:
            raise _refused(r)
        return r

    def apply(self, kind: KindInfo, manifest: dict[str, Any], *, field_manager: str, force: bool = False,
              dry_run: bool = False) -> Applied:
        """Server-side apply of ``manifest`` as ``field_manager``: the object the server
        holds afterwards (or would hold, with ``dry_run``), and whether it was created."""
        meta = manifest.get("metadata") or {}
        params = {"fieldManager": field_manager, **({"force": "true"} if force else {}),
                  **({"dryRun": "All"} if dry_run else {})}
        r = self._send("patch", kind, meta.get("namespace"), str(meta.get("name")), data=orjson.dumps(manifest),
                       params=params, headers={"Content-Type": "application/apply-patch+yaml"})
        return Applied(dict(orjson.loads(r.content)), r.status_code == 201)

    def patch(self, kind: KindInfo, namespace: str | None, name: str, patch: dict[str, Any], *,
              field_manager: str | None = None) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386) of one object, as ``field_manager`` when given;
        the object afterwards."""
        r = self._send("patch", kind, namespace, name, data=orjson.dumps(patch),
                       params={"fieldManager": field_manager} if field_manager else {},
                       headers={"Content-Type": "application/merge-patch+json"})
        return dict(orjson.loads(r.content))

    def delete(self, kind: KindInfo, namespace: str | None, name: str, *, uid: str | None = None,
               dry_run: bool = False) -> None:
        """Delete one object (its dependents in the background, as kubectl does); with
        ``uid``, only that incarnation of it (a precondition: a re-created object with the
        same name is left alone). An object already gone is not an error."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        if dry_run:  # in the body: a DeleteOptions body overrides the query's dryRun, and would delete for real
            body["dryRun"] = ["All"]
        try:
            self._send("delete", kind, namespace, name, data=orjson.dumps(body),
                       params={"dryRun": "All"} if dry_run else {})
        except ApiRefused as e:
            if e.code != 404:  # 404: the object (or its namespace, or its kind) is already gone
                raise

    def get(self, kind: KindInfo, namespace: str | None, name: str) -> dict[str, Any] | None:
        """One object, or None when there is none."""
        try:
            return dict(orjson.loads(self._send("get", kind, namespace, name).content))
        except ApiRefused as e:
            if e.code == 404:
                return None
            raise

    def create(self, kind: KindInfo, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Create ``obj``; 409 (it exists) is an ``ApiRefused``. With ``dry_run`` the server
        validates and admits it, then answers 409 if the name is taken."""
        r = self._send("post", kind, (obj.get("metadata") or {}).get("namespace"), None, data=orjson.dumps(obj),
                       params={"dryRun": "All"} if dry_run else {})
        return dict(orjson.loads(r.content))

    def replace(self, kind: KindInfo, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace ``obj`` if its metadata.resourceVersion is still the server's (else 409)."""
        meta = obj.get("metadata") or {}
        r = self._send("put", kind, meta.get("namespace"), str(meta.get("name")), data=orjson.dumps(obj))
        return dict(orjson.loads(r.content))

    def close(self) -> None:
        """End every watch in progress (from another thread): their iterators stop at once.
        Closing a response does not wake a thread blocked reading it; shutting the socket
        down does."""
        self._closed.set()
        with self._lock:
            responses = list(self._responses)
        for r in responses:
            conn = r.raw.connection  # urllib3's HTTPResponse.connection: public in 1.26 and 2.x
            sock = getattr(conn, "sock", None)  # http.client.HTTPConnection.sock
            try:
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
                r.close()
            except OSError:
                pass  # already closed
