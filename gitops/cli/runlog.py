"""The lines a long-running command (``gitops run``, ``watch``) writes: each with its date,
time and zone (UTC, RFC 3339) and its level, or with ``--log-format json`` one JSON object
a line (``time``, ``level``, ``msg`` and the fields it names), as log collectors read them.

What a person acts on goes to stderr (warnings, errors, what the service is doing); each
pass that did something, and each Git pass that appended, to stdout.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from gitops.model.times import format_time, utc_now

__all__ = ["LOG", "RunLog", "log_format_option"]

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("text", "json")


class RunLog:
    """Writes the lines of a service in ``fmt`` (``text`` or ``json``)."""

    def __init__(self, fmt: str = "text") -> None:
        self.fmt = fmt

    def line(self, level: str, msg: str, *, at: datetime | None = None, out: bool = False, **fields: Any) -> None:
        """One line at ``level`` (info, warning, error); ``out``: to stdout, else stderr."""
        when = format_time(at or utc_now())
        if self.fmt == "json":
            text = json.dumps({"time": when, "level": level, "msg": msg,
                               **{k: v for k, v in fields.items() if v is not None}}, default=str)
        else:
            text = f"{when[:23]}Z {level.upper():<7} {msg}"  # to the millisecond, as controllers log
        click.echo(text, err=not out)
        (sys.stdout if out else sys.stderr).flush()

    def info(self, msg: str, **kw: Any) -> None:
        self.line("info", msg, **kw)

    def warning(self, msg: str, **kw: Any) -> None:
        self.line("warning", msg, **kw)

    def error(self, msg: str, **kw: Any) -> None:
        self.line("error", msg, **kw)


LOG = RunLog()  # the one a service command writes through; its format is set by --log-format


class _Libraries(logging.Handler):
    """The warnings the libraries a service runs log (APScheduler, watchdog, urllib3), as the
    service's own lines: in its format (one JSON object a line with --log-format json), not as
    Python's bare fallback text on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning" if record.levelno >= logging.WARNING \
            else "info"
        try:
            LOG.line(level, record.getMessage(), at=datetime.fromtimestamp(record.created).astimezone(),
                     logger=record.name)
        except Exception:  # noqa: BLE001 - logging's own contract: a handler never raises
            self.handleError(record)


_LIBRARIES = _Libraries(logging.WARNING)


def log_format_option(f: F) -> F:
    def set_format(ctx: click.Context, param: click.Parameter, value: str) -> str:
        LOG.fmt = value
        root = logging.getLogger()
        if _LIBRARIES not in root.handlers:
            root.addHandler(_LIBRARIES)
        return value

    return click.option("--log-format", type=click.Choice(FORMATS), default="text", show_default=True,
                        expose_value=False, callback=set_format, is_eager=True,
                        help="text: date, time, zone and level before each line; json: one object a line.")(f)
