"""Packages that export their names lazily (gitops.model.lazy) export the very objects their
modules define, whatever was imported before: a submodule named like an export would
otherwise shadow it (gitops.diff.normalize, the module, for normalize, the function)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

LAZY = ["gitops.reconcile", "gitops.query", "gitops.diff", "gitops.projections", "gitops.sources.git",
        "gitops.sources.cluster"]


@pytest.mark.parametrize("name", LAZY)
def test_each_export_is_what_its_module_defines_after_every_submodule_is_imported(name: str) -> None:
    package = importlib.import_module(name)
    for sub in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{name}.{sub.name}")
    for export in package.__all__:
        value = getattr(package, export)
        assert not isinstance(value, type(package)), f"{name}.{export} is a module, not what __all__ promises"
        home = getattr(value, "__module__", None)  # functions and classes say where they are defined
        if isinstance(home, str) and home.startswith("gitops."):
            assert getattr(importlib.import_module(home), export) is value
