"""Field-level blame: for each field of an object, desired (Git) and live (the cluster), who
last set it to the value it has, when, and through what.

The versions of the object on each side are walked in order up to the moment asked, each
against the previous one from the same source; a field is credited to the version that
last changed its value (or brought it), with that version's evidence: the commit and its
author for Git; the audited user, the field manager or the reconciler (and the
resourceVersion) for the cluster. Unknown stays unknown: a change nobody is proven to have
made is credited to nobody.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from gitops.model.changes import SECRET_VALUE, leaf_diff, secret_path
from gitops.model.clusters import cluster_name
from gitops.model.errors import CorruptDatabaseError
from gitops.model.server_fields import normalize
from gitops.model.times import format_time
from gitops.projections import Moment
from gitops.store import EventLog
from gitops.store.current import ACTUAL_TYPES, DESIRED_TYPES
from gitops.store.rows import Stored

__all__ = ["BlameLine", "blame"]

Side = Literal["desired", "live"]


@dataclass(frozen=True)
class BlameLine:
    side: str  # desired, live, or live@NAME (a log of many clusters)
    path: str
    value: Any
    actor: str | None
    time: datetime
    seq: int
    via: str  # "commit <sha>", "resourceVersion <rv>"
    how: str  # "git", "audit", "managed-fields", "reconciler", "unknown"


def _versions(log: EventLog, resource: str, moment: Moment) -> dict[Side, list[Stored]]:
    """The object's versions on each side up to ``moment``, as stored, in one read: a blame
    of an object changed a thousand times reads a thousand versions, and building each
    event's model was most of its time; the few fields read are checked by ``_version``."""
    types = [*DESIRED_TYPES, *ACTUAL_TYPES]
    if moment.commit_seq is not None:
        found = log.read_stored(resource=resource, types=types, until_seq=moment.commit_seq)
    else:
        at = format_time(moment.at)  # stored times are fixed-width RFC 3339: as text, they compare in time order
        found = (s for s in log.read_stored(resource=resource, types=types)
                 if (s.effective_at if moment.axis == "effective" else s.recorded_at) <= at)
    out: dict[Side, list[Stored]] = {"desired": [], "live": []}
    for s in found:
        out["desired" if s.type in DESIRED_TYPES else "live"].append(s)
    return out


class _Version(NamedTuple):
    origin: str
    time: datetime
    manifest: dict[str, Any] | None  # None: the object was removed
    via: str
    how: str


def _version(s: Stored) -> _Version:
    """What blame reads of one stored version; a payload without it is the error a read of
    the event would give (the row was changed outside gitops)."""
    p = s.payload
    try:
        time = datetime.fromisoformat(s.effective_at)
        origin = str(p.get("origin") or "")
        if s.type in ("desired.removed", "cluster.deleted"):
            return _Version(origin, time, None, "", "")
        manifest = p["manifest"]
        if not isinstance(manifest, dict):
            raise TypeError("the manifest is not an object")
        if s.type == "desired.applied":
            return _Version(origin, time, manifest, f"commit {str(p['commit'])[:12]}", "git")
        how = str(p.get("attribution", "unknown"))  # the model's default: events written before it was recorded
        if p.get("via"):  # kubectl --as: the actor is the impersonated user, via the one authenticated
            how = f"{how}, via {p['via']}"
        return _Version(origin, time, manifest, f"resourceVersion {p['resource_version']}", how)
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptDatabaseError.unreadable_event(s.seq, f"it is not a valid {s.type} event ({e})") from None


@dataclass
class _Walk:
    """One source's versions of the object, walked: which version set each field (and its
    value), and the last version."""

    credit: dict[str, tuple[Any, Stored, _Version]]
    before: dict[str, Any]  # the last version, normalised
    manifest: dict[str, Any]


def _line(side: str, path: str, value: Any, s: Stored, v: _Version) -> BlameLine:
    return BlameLine(side, path, value, s.actor, v.time, s.seq, v.via, v.how)


def blame(log: EventLog, resource: str, moment: Moment, *, clusters: Sequence[str] = ()) -> list[BlameLine]:
    """Each field of ``resource`` at ``moment`` (desired first, then live) with who set it.

    Each version is compared with the previous one from the same source (Git branch,
    cluster), as the log's change projection compares them: two sources that hold the same
    object do not take the credit for each other's values. The desired fields shown are
    those of the Git source that set the object last, as replay and status show it; the
    live ones are each cluster's that holds it (of ``clusters``, origins, when given), as
    side ``live@NAME`` when there are several: two clusters' objects are never one."""
    out: list[BlameLine] = []
    versions = _versions(log, resource, moment)
    for side in ("desired", "live"):
        walks: dict[str, _Walk] = {}
        seen: set[str] = set()  # every source that held it
        last: str | None = None  # the source of the last version; None once the object is removed
        for s in versions[side]:
            v = _version(s)
            if side == "live" and clusters and v.origin not in clusters:
                continue
            seen.add(v.origin)
            if v.manifest is None:
                walks.pop(v.origin, None)
                last = None
                continue
            walk = walks.setdefault(v.origin, _Walk({}, {}, {}))
            now = normalize(v.manifest)
            old, new = leaf_diff(walk.before, now)  # only where the versions differ
            for path in old.keys() - new.keys():
                walk.credit.pop(path, None)
            for path, value in new.items():
                if path not in old or old[path] != value:
                    walk.credit[path] = (value, s, v)
            walk.before, walk.manifest, last = now, v.manifest, v.origin
        if side == "desired":
            shown = [("desired", walks[last])] if last is not None else []
        else:
            many = len(seen) > 1  # the object was in several clusters: each line says whose it is
            shown = [(f"live@{cluster_name(o)}" if many else "live", w) for o, w in sorted(walks.items())]
        for label, walk in shown:
            for path in sorted(walk.credit):
                value, s, v = walk.credit[path]
                out.append(_line(label, path, SECRET_VALUE if secret_path(walk.manifest, path) else value, s, v))
    return out
