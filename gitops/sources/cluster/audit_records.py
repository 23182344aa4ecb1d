"""One audit record of the API server (an ``audit.k8s.io/v1`` Event), read into what the
log keeps of it: the same for every way records arrive (the audit log file, the audit
webhook), so a change is joined to its request the same way whichever brought it.

Only completed write requests (``ResponseComplete`` of create, update, patch, delete,
deletecollection) on kinds this source watches are kept. Request and response bodies are
never kept: only the response's resourceVersion and uid are read out of them.
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

__all__ = ["AuditReader", "KindResolver", "Malformed"]

KindResolver = Callable[[str, str], tuple[str, bool] | None]
"""(api group, plural resource) -> (kind, namespaced), from discovery."""


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

    def read(self, raw: object) -> tuple[AuditRecord, AuditRecorded] | Malformed | None:
        """The record and the ``audit`` event of one decoded audit event; None for one of no
        interest (a read, a stage before the response, a kind not watched); ``Malformed``
        (why) for one that cannot be read."""
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
        if ref is None or resolved is None or not ref.name:
            return None
        kind, namespaced = resolved
        key = format_key(ResourceKey(canonical_group(ref.apiGroup, kind), kind, ref.namespace if namespaced else "",
                                     ref.name))
        response = rec.responseObject or {}
        status = response.get("kind") == "Status"
        meta = response.get("details") if status else response.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        rv = None if status else (str(meta["resourceVersion"]) if meta.get("resourceVersion") else None)
        uid = ref.uid or (str(meta["uid"]) if meta.get("uid") else None)
        # ResponseComplete's stageTimestamp: when the change was made (the request completed)
        at = rec.stageTimestamp or rec.requestReceivedTimestamp or utc_now()
        # impersonation (kubectl --as, a dashboard or proxy acting for its users): the change is
        # the impersonated user's, made through the user that authenticated, who is kept as via
        acting = rec.impersonatedUser if rec.impersonatedUser is not None and rec.impersonatedUser.username else None
        user = acting.username if acting is not None else rec.user.username
        via = rec.user.username if acting is not None else None
        code = rec.responseStatus.code if rec.responseStatus else None
        dry_run = _dry_run(rec.requestURI, raw.get("requestObject"))
        record = AuditRecord(rec.auditID, key, rec.verb, user, rv, at, uid, rec.userAgent, via,
                             rec.requestReceivedTimestamp, code, dry_run)
        event = AuditRecorded(
            id=event_id("audit", self.origin, rec.auditID), source=EventSource.AUDIT, resource=key,
            actor=record.user, effective_at=at, revision=rv,
            payload=AuditPayload(
                origin=self.origin, audit_id=rec.auditID, verb=rec.verb, user=record.user, via=via,
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


def record_of(event: AuditRecorded) -> AuditRecord:
    """The record an ``audit`` event the log holds stands for (what the join needs of it)."""
    p = event.payload
    return AuditRecord(p.audit_id, event.resource or "", p.verb, p.user, p.resource_version, event.effective_at,
                       p.uid, p.user_agent, p.via, p.received_at, p.response_code, p.dry_run)
