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
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from gitops.events.models import ClusterDeleted, ClusterObserved, DesiredApplied, DesiredRemoved
from gitops.model.changes import SECRET_VALUE, leaf_diff, secret_path
from gitops.model.clusters import cluster_name
from gitops.model.server_fields import normalize
from gitops.projections import Moment
from gitops.store import EventLog
from gitops.store.current import ACTUAL_TYPES, DESIRED_TYPES

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


def _versions(log: EventLog, resource: str, side: Side, moment: Moment) -> list[Any]:
    types = DESIRED_TYPES if side == "desired" else ACTUAL_TYPES
    if moment.commit_seq is not None:
        return list(log.read(resource=resource, types=types, until_seq=moment.commit_seq))
    return [r for r in log.read(resource=resource, types=types, time_axis=moment.axis)
            if (r.event.effective_at if moment.axis == "effective" else r.recorded_at) <= moment.at]


@dataclass
class _Walk:
    """One source's versions of the object, walked: who set each field, and the last version."""

    credit: dict[str, BlameLine]
    before: dict[str, Any]  # the last version, normalised
    manifest: dict[str, Any]


def blame(log: EventLog, resource: str, moment: Moment, *, clusters: Sequence[str] = ()) -> list[BlameLine]:
    """Each field of ``resource`` at ``moment`` (desired first, then live) with who set it.

    Each version is compared with the previous one from the same source (Git branch,
    cluster), as the log's change projection compares them: two sources that hold the same
    object do not take the credit for each other's values. The desired fields shown are
    those of the Git source that set the object last, as replay and status show it; the
    live ones are each cluster's that holds it (of ``clusters``, origins, when given), as
    side ``live@NAME`` when there are several: two clusters' objects are never one."""
    out: list[BlameLine] = []
    for side in ("desired", "live"):
        walks: dict[str, _Walk] = {}
        seen: set[str] = set()  # every source that held it
        last: str | None = None  # the source of the last version; None once the object is removed
        for r in _versions(log, resource, side, moment):
            ev = r.event
            origin = str(getattr(ev.payload, "origin", "") or "")
            if side == "live" and clusters and origin not in clusters:
                continue
            seen.add(origin)
            if isinstance(ev, (DesiredRemoved, ClusterDeleted)):
                walks.pop(origin, None)
                last = None
                continue
            assert isinstance(ev, (DesiredApplied, ClusterObserved))
            walk = walks.setdefault(origin, _Walk({}, {}, {}))
            now = normalize(ev.payload.manifest)
            if isinstance(ev, DesiredApplied):
                via, how = f"commit {ev.payload.commit[:12]}", "git"
            else:
                via, how = f"resourceVersion {ev.payload.resource_version}", str(ev.payload.attribution)
                if ev.payload.via:  # kubectl --as: the actor is the impersonated user, via the one authenticated
                    how = f"{how}, via {ev.payload.via}"
            old, new = leaf_diff(walk.before, now)  # only where the versions differ
            for path in old.keys() - new.keys():
                walk.credit.pop(path, None)
            for path, value in new.items():
                if path not in old or old[path] != value:
                    walk.credit[path] = BlameLine(side, path, value, ev.actor, ev.effective_at, r.seq, via, how)
            walk.before, walk.manifest, last = now, ev.payload.manifest, origin
        if side == "desired":
            shown = [("desired", walks[last])] if last is not None else []
        else:
            many = len(seen) > 1  # the object was in several clusters: each line says whose it is
            shown = [(f"live@{cluster_name(o)}" if many else "live", w) for o, w in sorted(walks.items())]
        for label, walk in shown:
            for path in sorted(walk.credit):
                line = replace(walk.credit[path], side=label)
                if secret_path(walk.manifest, path):
                    line = replace(line, value=SECRET_VALUE)
                out.append(line)
    return out
