"""CSV cells a spreadsheet cannot take for formulas (the report's CSV, and every -o csv)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["cell"]


def cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: a string starting with = + - @ or a tab
    would be read as a formula (CSV injection), so it gets a leading apostrophe."""
    if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, dict) for v in value)):
        value = json.dumps(value, sort_keys=True, default=str)  # nested evidence (approval, objects): JSON
    elif isinstance(value, list):
        value = "; ".join(map(str, value))
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
