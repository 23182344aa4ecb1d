"""Packages whose public names are imported when first used (PEP 562).

A package's ``__init__`` that imports its modules to re-export their names makes every
import of any of its modules pay for all of them: reading the configuration file (whose
model takes ``gitops.reconcile.settings``) imported the reconciler, the cluster adapter
and pykube, and every command started in 0.6 s. With ``lazy_exports`` the package lists
where each name lives, and a name's module is imported the first time the name is used;
the ``TYPE_CHECKING`` imports beside it keep the names typed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``exports`` maps each public name to the
    module (relative to the package, e.g. ``.plan``) that defines it."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # the next use is a plain attribute
        return value

    return __getattr__
