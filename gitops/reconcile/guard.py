"""What the mass-prune guard held before and nobody has confirmed since.

The guard holds a pass that would delete more than ``mass_prune_ratio`` of the owned
objects. Judged afresh each pass, it let itself be outrun: a commit that replaces every
object (a wrong path, a renamed application) creates the new ones in the pass the guard
holds, and in the next pass the same prunes are a minority of the owned objects and went
ahead, seconds later under ``gitops run``, with nobody having confirmed anything. So a
prune the guard held stays held until a pass run with ``--allow-mass-prune`` confirms it,
or Git desires the object again.

The log is the memory, so a second one-shot ``gitops reconcile`` or a restarted ``gitops
run`` holds it too: an object is still held when the last ``reconcile.action`` on it (of
this cluster, not a dry run) is the guard's ``MassPrune`` hold and it was recorded after the
last ``desired.*`` event of this instance's Git source about it. A confirmed pass records
the prune itself; an object Git desires again gets a newer ``desired.applied``, and if it
is removed once more the guard judges that removal as new.
"""

from __future__ import annotations

from collections.abc import Iterable

from gitops.reconcile.plan import MASS_PRUNE
from gitops.store import EventLog

__all__ = ["still_held"]


def still_held(log: EventLog, keys: Iterable[str], *, cluster: str, desired_origin: str | None) -> set[str]:
    """Those of ``keys`` (prunes a pass would make) whose prune the guard held in an
    earlier pass and nobody confirmed since (see the module)."""
    out: set[str] = set()
    for key in keys:
        last = next(iter(log.read(types=["reconcile.action"], resource=key, clusters=[cluster], dry_run=False,
                                  descending=True, limit=1)), None)
        if last is None or getattr(last.event.payload, "reason", None) != MASS_PRUNE:
            continue
        desired = next(iter(log.read(types=["desired.applied", "desired.removed"], resource=key,
                                     clusters=[desired_origin] if desired_origin else [], descending=True,
                                     limit=1)), None)
        if desired is None or desired.seq < last.seq:
            out.add(key)
    return out
