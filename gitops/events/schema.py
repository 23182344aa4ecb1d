"""The JSON Schema of stored events, exported from the models (``make schema``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gitops.events.models import Recorded

__all__ = ["events_json_schema", "write_schema"]


def events_json_schema() -> dict[str, Any]:
    schema = Recorded.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://gitops.invalid/schema/events.schema.json"
    schema["title"] = "gitops recorded event"
    return schema


def render_schema() -> str:
    return json.dumps(events_json_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(path: Path) -> None:
    path.write_text(render_schema())


if __name__ == "__main__":  # make schema
    import sys

    write_schema(Path(sys.argv[1]))
