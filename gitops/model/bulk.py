"""Bulk work: building or writing many objects at once.

CPython's cyclic garbage collector walks every live container on each full collection.
A back-fill holds tens of thousands of parsed manifests and events at once, so the
collector walked them again and again: 10-20% of a Git back-fill and of an append
(scripts/bench_git_ingest.py, scripts/bench_append.py). What bulk work allocates is
acyclic (dicts, lists, tuples, models), so there is no garbage for the collector to
find; reference counting frees everything as usual. The collector is paused for the
duration and restored as it was, so nested pauses and a caller who turned it off
themselves are respected. A cycle made meanwhile is collected after the pause.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["cyclic_gc_paused"]


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the ``with`` block (process-wide)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
