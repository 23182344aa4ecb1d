"""One audit record of the API server (an ``audit.k8s.io/v1`` Event), read into what the
log keeps of it: the same for every way records arrive (the audit log file, the audit
webhook), so a change is joined to its request the same way whichever brought it.

Only completed write requests (``ResponseComplete`` of create, update, patch, delete,
deletecollection) on kinds this source watches are kept. Request and response bodies are
never kept: only the response's resourceVersion, uid and name (a create with
``generateName``), and the keys and uids of the objects a ``deletecollection`` deleted, are
read out of them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gitops.events.models import AuditPayload, AuditRecorded, EventSource, event_id
from gitops.model.errors import first_error
from gitops.model.keys import ResourceKey, canonical_group, format_key
from gitops.model.times import utc_now
from gitops.sources.cluster.audit import WRITE_VERBS, AuditRecord

__all__ = ["AuditReader", "KindResolver", "Malformed", "Read"]

KindResolver = Callable[[str, str], tuple[str, bool] | None]
"""(api group, plural resource) -> (kind, namespaced), from discovery."""
Read = list[tuple[AuditRecord | None, AuditRecorded]]
"""The records of one audit event, each with its ``audit`` event (``AuditReader.read``)."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Ref(_Lenient):
    resource: str = ""
    namespace: str = ""
    name: str = ""
    apiGroup: str = ""
    apiVersion: str | None = None
    uid: str | None = None


class _User(_Lenient):
    username: str = ""
    groups: list[str] = Field(default_factory=list)


class _Status(_Lenient):
    code: int | None = None


class _AuditLine(_Lenient):
    """The fields of an audit event (audit.k8s.io/v1 Event) that are read, with their types:
    a record that does not fit is skipped and reported, never fatal."""

    auditID: str
    verb: str
    requestURI: str = ""
    user: _User = Field(default_factory=_User)
    impersonatedUser: _User | None = None
    objectRef: _Ref | None = None
    responseObject: dict[str, Any] | None = None
    responseStatus: _Status | None = None
    sourceIPs: list[str] = Field(default_factory=list)
    userAgent: str | None = None
    requestReceivedTimestamp: datetime | None = None
    stageTimestamp: datetime | None = None


class Malformed(str):
    """Why a record could not be read (it is skipped and that is recorded)."""

    __slots__ = ()


class AuditReader:
    """Reads audit events of the cluster ``origin``, for the kinds ``resolve`` knows."""

    def __init__(self, *, resolve: KindResolver, origin: str) -> None:
        self.resolve = resolve
        self.origin = origin

    def read(self, raw: object) -> Read | Malformed | None:
        """The ``audit`` events of one decoded audit event, each with the record the join
        uses (None for a request that names no object: a refused collection-wide request, a
        ``deletecollection`` audited without its response). Most requests are one event; a
        ``deletecollection`` is one per object its response lists as deleted, so that each
        deletion is joined by its uid. None for a request of no interest (a read, a stage
        before the response, a kind not watched); ``Malformed`` (why) for one that cannot be
        read."""
        if not isinstance(raw, dict):
            return Malformed(f"a JSON {type(raw).__name__}, not an audit event")
        if raw.get("stage") != "ResponseComplete" or raw.get("verb") not in WRITE_VERBS:
            return None
        try:
            rec = _AuditLine.model_validate(raw)
        except ValidationError as e:
            return Malformed(f"an audit event of the wrong shape ({first_error(e)})")
        ref = rec.objectRef
        resolved = self.resolve(ref.apiGroup, ref.resource) if ref is not None else None
        if ref is None or resolved is None:
            return None
        kind, namespaced = resolved
        group = canonical_group(ref.apiGroup, kind)
        response = rec.responseObject or {}
        status = response.get("kind") == "Status"
        meta = response.get("details") if status else response.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        code = rec.responseStatus.code if rec.responseStatus else None
        items = response.get("items") if rec.verb == "deletecollection" and not status else None
        if isinstance(items, list):  # each object deleted, by its key and uid
            metas = [m for i in items if isinstance(i, dict) for m in [i.get("metadata")]
                     if isinstance(m, dict) and m.get("name")]
            return [self._one(raw, rec, self._key(group, kind, namespaced, str(m.get("namespace") or ref.namespace),
                                                  str(m["name"])),
                              None, str(m["uid"]) if m.get("uid") else None, code, many=True)
                    for m in metas] or [self._one(raw, rec, None, None, None, code)]
        # a create with generateName has no name in the request: its response says it
        name = ref.name or (str(meta["name"]) if rec.verb == "create" and not status and meta.get("name") else "")
        if not name:  # names no object (a refused or bodiless collection-wide request): kept, joined to nothing
            return [self._one(raw, rec, None, None, None, code)]
        rv = None if status else (str(meta["resourceVersion"]) if meta.get("resourceVersion") else None)
        uid = ref.uid or (str(meta["uid"]) if meta.get("uid") else None)
        return [self._one(raw, rec, self._key(group, kind, namespaced, ref.namespace, name), rv, uid, code)]

    @staticmethod
    def _key(group: str, kind: str, namespaced: bool, namespace: str, name: str) -> str:
        return format_key(ResourceKey(group, kind, namespace if namespaced else "", name))

    def _one(self, raw: dict[str, Any], rec: _AuditLine, key: str | None, rv: str | None, uid: str | None,
             code: int | None, *, many: bool = False) -> tuple[AuditRecord | None, AuditRecorded]:
        """One object's record and event (``many``: one of several a request deleted, whose
        event id is the request's and the object's)."""
        ref = rec.objectRef
        assert ref is not None
        # ResponseComplete's stageTimestamp: when the change was made (the request completed)
        at = rec.stageTimestamp or rec.requestReceivedTimestamp or utc_now()
        # impersonation (kubectl --as, a dashboard or proxy acting for its users): the change is
        # the impersonated user's, made through the user that authenticated, who is kept as via
        acting = rec.impersonatedUser if rec.impersonatedUser is not None and rec.impersonatedUser.username else None
        user = acting.username if acting is not None else rec.user.username
        via = rec.user.username if acting is not None else None
        dry_run = _dry_run(rec.requestURI, raw.get("requestObject"))
        record = None if key is None else AuditRecord(
            rec.auditID, key, rec.verb, user, rv, at, uid, rec.userAgent, via, rec.requestReceivedTimestamp, code,
            dry_run, rec.requestURI)
        event = AuditRecorded(
            id=event_id("audit", self.origin, rec.auditID, *([key] if many and key else [])),
            source=EventSource.AUDIT, resource=key, actor=user, effective_at=at, revision=rv,
            payload=AuditPayload(
                origin=self.origin, audit_id=rec.auditID, verb=rec.verb, user=user, via=via,
                groups=(acting or rec.user).groups, user_agent=rec.userAgent, source_ips=rec.sourceIPs,
                request_uri=rec.requestURI, response_code=code, dry_run=dry_run,
                resource_version=rv, api_version=ref.apiVersion, uid=uid, received_at=rec.requestReceivedTimestamp,
            ),
        )
        return record, event


def _dry_run(uri: str, body: object) -> bool:
    """Whether a request was a server-side dry run: ``dryRun`` in its query (kubectl's
    patch, apply, create) or in its DeleteOptions body (kubectl's delete). Only that field
    of a body is read."""
    if any(parse_qs(urlsplit(uri).query).get("dryRun", [])):
        return True
    return isinstance(body, dict) and body.get("kind") == "DeleteOptions" and bool(body.get("dryRun"))


def record_of(event: AuditRecorded) -> AuditRecord | None:
    """The record an ``audit`` event the log holds stands for (what the join needs of it);
    None for one that names no object."""
    p = event.payload
    if not event.resource:
        return None
    return AuditRecord(p.audit_id, event.resource, p.verb, p.user, p.resource_version, event.effective_at,
                       p.uid, p.user_agent, p.via, p.received_at, p.response_code, p.dry_run,
                       p.request_uri)
