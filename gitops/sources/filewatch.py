"""Waking a source when files change: watchdog observers over a few known paths."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

__all__ = ["FileWatch"]


class _PathsChanged(FileSystemEventHandler):
    def __init__(self, targets: set[Path], trigger: threading.Event) -> None:
        self.targets = targets
        self.trigger = trigger

    def on_any_event(self, event: FileSystemEvent) -> None:
        for p in (event.src_path, getattr(event, "dest_path", "")):
            if p and Path(str(p)) in self.targets:
                self.trigger.set()


class FileWatch:
    """Sets ``trigger`` whenever one of ``targets`` is created, written, moved or removed
    (their directories are watched, not recursively), until ``stop()``."""

    def __init__(self, targets: Iterable[Path], trigger: threading.Event) -> None:
        paths = set(targets)
        handler = _PathsChanged(paths, trigger)
        self._observer: BaseObserver = Observer()
        for directory in sorted({p.parent for p in paths}):
            self._observer.schedule(handler, str(directory), recursive=False)
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
