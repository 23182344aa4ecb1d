"""The desired and the actual state as pure folds over events.

Nothing here reads Git, the cluster or the database: a fold takes recorded events (in seq
order) and gives ResourceKey -> object with its provenance. Each event type that changes a
state has one function (``functools.singledispatch``); every other event leaves it as it is.

- desired: ``desired.applied`` sets a key, ``desired.removed`` drops it. Invalid commits
  record no ``desired.*`` events, so the last valid commit stays in force by itself.
- actual: ``cluster.observed`` sets a key, ``cluster.deleted`` drops it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import singledispatch
from typing import Any

from gitops.events.models import ClusterDeleted, ClusterObserved, DesiredApplied, DesiredRemoved, Recorded

__all__ = ["ActualEntry", "DesiredEntry", "fold_actual", "fold_desired", "stream_actual", "stream_desired"]


@dataclass(frozen=True)
class DesiredEntry:
    """An object as Git desired it, and where that came from."""

    manifest: dict[str, Any]
    seq: int  # the event that set it
    commit: str
    author: str | None
    path: str
    origin: str


@dataclass(frozen=True)
class ActualEntry:
    """An object as the cluster had it, and who made it so (when known)."""

    manifest: dict[str, Any]
    seq: int
    resource_version: str
    actor: str | None
    attribution: str
    origin: str


@singledispatch
def _desired(event: object, seq: int, state: dict[str, DesiredEntry]) -> None:
    """Events that do not change the desired state."""


@_desired.register
def _(event: DesiredApplied, seq: int, state: dict[str, DesiredEntry]) -> None:
    assert event.resource is not None
    p = event.payload
    state[event.resource] = DesiredEntry(p.manifest, seq, p.commit, event.actor, p.path, p.origin)


@_desired.register
def _(event: DesiredRemoved, seq: int, state: dict[str, DesiredEntry]) -> None:
    assert event.resource is not None
    state.pop(event.resource, None)


@singledispatch
def _actual(event: object, seq: int, state: dict[str, ActualEntry]) -> None:
    """Events that do not change the actual state."""


@_actual.register
def _(event: ClusterObserved, seq: int, state: dict[str, ActualEntry]) -> None:
    assert event.resource is not None
    p = event.payload
    state[event.resource] = ActualEntry(p.manifest, seq, p.resource_version, event.actor, p.attribution.value,
                                        p.origin)


@_actual.register
def _(event: ClusterDeleted, seq: int, state: dict[str, ActualEntry]) -> None:
    assert event.resource is not None
    state.pop(event.resource, None)


def fold_desired(events: Iterable[Recorded], *, origin: str | None = None,
                 state: dict[str, DesiredEntry] | None = None) -> dict[str, DesiredEntry]:
    """The desired state after ``events`` (in seq order), from ``state`` (empty by default);
    only the source ``origin`` when given."""
    out = {} if state is None else state
    for r in events:
        if origin is None or getattr(r.event.payload, "origin", None) == origin:
            _desired(r.event, r.seq, out)
    return out


def fold_actual(events: Iterable[Recorded], *, origin: str | None = None,
                state: dict[str, ActualEntry] | None = None) -> dict[str, ActualEntry]:
    """The actual state after ``events`` (in seq order), from ``state``; only ``origin``'s."""
    out = {} if state is None else state
    for r in events:
        if origin is None or getattr(r.event.payload, "origin", None) == origin:
            _actual(r.event, r.seq, out)
    return out


def _stream(events: Iterable[Recorded], step: Any) -> Iterator[tuple[str, Any]]:
    """What a fold gives, one object at a time, for events grouped by resource (each object's
    events adjacent, as a state read orders them): the fold of each group, as it ends."""
    state: dict[str, Any] = {}
    current: str | None = None
    for r in events:
        if r.event.resource != current:
            yield from state.items()
            state.clear()
            current = r.event.resource
        step(r.event, r.seq, state)
    yield from state.items()


def stream_desired(events: Iterable[Recorded]) -> Iterator[tuple[str, DesiredEntry]]:
    """``fold_desired(events).items()`` in the events' order, in bounded memory, for events
    grouped by resource."""
    return _stream(events, _desired)


def stream_actual(events: Iterable[Recorded]) -> Iterator[tuple[str, ActualEntry]]:
    """``fold_actual(events).items()`` likewise."""
    return _stream(events, _actual)
