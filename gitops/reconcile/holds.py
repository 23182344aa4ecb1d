"""What the reconciler remembers between passes about objects it must leave alone for now.

- **Failures.** A transient error (the API unreachable, 429, 502-504) is retried with capped
  exponential backoff. An HTTP 500 is retried too, but ``retry_limit`` times at most: on
  these servers a 500 is most often a schema problem that will fail the same way forever
  (a field the schema does not declare; a port without protocol before 1.22), so it then
  becomes terminal, with the server's message. A terminal error (422, 403, a refusal of
  ours such as ``shared-resource``) waits until its inputs change: the desired object,
  the live one, or its Namespace (an object refused because its namespace was missing or
  being deleted is retried as soon as the Namespace is back).
- **Conflicts.** A pass must never trigger itself. When an object the reconciler updated
  is set back by another manager on the same fields within ``loop_window`` seconds of the
  apply, ``loop_limit`` times in a row, a controller owns those fields: the object is
  marked ``conflict`` (naming that manager) and is not applied again until Git changes it
  or the live values of those fields change.
- **Prunes in flight**, until the log sees the object go.

Time comes from the injected ``monotonic`` clock, so all of it is tested without sleeping.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gitops.diff import ObjectDiff, Status
from gitops.diff.managed import managers_of
from gitops.projections.fold import ActualEntry, DesiredEntry
from gitops.reconcile.plan import Hold
from gitops.reconcile.settings import ReconcileSettings
from gitops.sources.cluster.port import Backoff

__all__ = ["Holds", "Inputs"]

Inputs = tuple[int | None, int | None, int | None]
"""(desired seq, live seq, seq of the live Namespace it is in): what an object's outcome depends on."""

_UNBOUNDED = {429, 502, 503, 504}  # the server is busy or a proxy failed: worth trying for as long as it takes


@dataclass
class _Failure:
    inputs: Inputs
    terminal: bool
    backoff: Backoff
    retry_at: float = 0.0
    message: str = ""
    attempts: int = 0


@dataclass
class _Applied:
    at: float
    fields: frozenset[str]
    live_seq: int | None = None  # the live version the last flip was counted on
    flips: int = 0


@dataclass
class _Conflict:
    desired_seq: int | None
    values: frozenset[tuple[str, str]]
    message: str


@dataclass
class Holds:
    settings: ReconcileSettings
    monotonic: Callable[[], float]
    failures: dict[str, _Failure] = field(default_factory=dict)
    pruned: dict[str, str | None] = field(default_factory=dict)  # key -> uid deleted, until the log sees it go
    applied: dict[str, _Applied] = field(default_factory=dict)
    conflicts: dict[str, _Conflict] = field(default_factory=dict)

    @staticmethod
    def inputs(key: str, want: DesiredEntry | None, live: ActualEntry | None,
               actual: Mapping[str, ActualEntry]) -> Inputs:
        parts = key.split("/")
        ns = actual.get(f"Namespace/{parts[1]}") if len(parts) == 3 else None
        return (want.seq if want else None, live.seq if live else None, ns.seq if ns else None)

    # ------------------------------------------------------------------ outcomes

    def failed(self, key: str, inputs: Inputs, *, terminal: bool, code: int | None, message: str) -> tuple[bool, str]:
        """Remember a failure; returns whether it is terminal now, and its message."""
        s = self.settings
        f = self.failures.get(key)
        if f is None or f.inputs != inputs:
            f = self.failures[key] = _Failure(inputs, terminal, Backoff(s.retry_initial, s.retry_max))
        f.attempts += 1
        if not terminal and code is not None and code not in _UNBOUNDED and f.attempts >= s.retry_limit:
            terminal, message = True, f"gave up after {f.attempts} tries: {message}"
        f.terminal, f.message = terminal, message
        f.retry_at = self.monotonic() + f.backoff.delay()
        return terminal, message

    def succeeded(self, key: str, *, op: str, fields: tuple[str, ...]) -> None:
        self.failures.pop(key, None)
        if op in ("create", "update"):  # a write another manager may undo
            before = self.applied.get(key)
            written = frozenset({"*"}) if op == "create" else frozenset(fields)  # a create wrote every field
            self.applied[key] = _Applied(self.monotonic(), written, before.live_seq if before else None,
                                         before.flips if before else 0)

    # ------------------------------------------------------------------ what to leave alone

    def hold(self, d: ObjectDiff, want: DesiredEntry | None, live: ActualEntry | None, inputs: Inputs) -> Hold | None:
        key = d.key
        if key in self.pruned:
            return Hold("being deleted")
        conflict = self._conflict(d, want, live)
        if conflict is not None:
            return conflict
        f = self.failures.get(key)
        if f is None:
            return None
        if f.inputs != inputs:
            del self.failures[key]  # the input changed: try again now
            return None
        if f.terminal and want is not None:
            return Hold(f"waiting for the desired or live object to change ({f.message})")
        if self.monotonic() < f.retry_at:
            return Hold(f"retrying in {f.retry_at - self.monotonic():.0f}s ({f.message})")
        return None

    def _conflict(self, d: ObjectDiff, want: DesiredEntry | None, live: ActualEntry | None) -> Hold | None:
        key = d.key
        values = frozenset((i.path, json.dumps(i.actual, sort_keys=True, default=str)) for i in d.items)
        held = self.conflicts.get(key)
        if held is not None:
            if d.status == Status.OUT_OF_SYNC and want is not None and want.seq == held.desired_seq \
                    and {v for v in values if v[0] in {p for p, _ in held.values}} == held.values:
                return Hold(held.message)
            del self.conflicts[key]  # Git or the contested fields changed: try again
            self.applied.pop(key, None)
        recent = self.applied.get(key)
        if recent is None or d.status != Status.OUT_OF_SYNC or live is None or want is None:
            return None
        paths = {i.path for i in d.items}
        contested = paths if "*" in recent.fields else paths & recent.fields
        if self.monotonic() - recent.at > self.settings.loop_window or not contested \
                or live.attribution == "reconciler":
            self.applied.pop(key, None)
            return None
        if recent.live_seq != live.seq:
            recent.live_seq, recent.flips = live.seq, recent.flips + 1
        if recent.flips < self.settings.loop_limit:
            return None
        managers = managers_of(live.manifest, sorted(contested), but=self.settings.field_manager)
        who = " and ".join(managers) if managers else "another field manager"
        if live.actor and live.actor not in managers:
            who += f" (the change was made as {live.actor})"
        message = (f"conflict: {', '.join(sorted(contested))} set back by {who} after each apply, "
                   f"{recent.flips} times within {self.settings.loop_window:g}s; not applied again until Git or "
                   "those fields change")
        self.conflicts[key] = _Conflict(want.seq, frozenset(v for v in values if v[0] in contested), message)
        return Hold(message, "Conflict", failed=True)

    def forget_pruned(self, actual: Mapping[str, ActualEntry]) -> None:
        for key, uid in list(self.pruned.items()):
            entry = actual.get(key)
            if entry is None or (entry.manifest.get("metadata") or {}).get("uid") != uid:
                del self.pruned[key]
