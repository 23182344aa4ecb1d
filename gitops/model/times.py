"""Times as users type them and as the log stores them.

Storage and JSON use one form: RFC 3339 in UTC with microseconds and a ``Z``
(``2026-11-26T14:05:09.000000Z``). Being fixed-width, its text order is its time order,
so SQLite compares stored times as strings.

Users may also type a plain date (``2026-11-26``, midnight UTC), ``now``, ``today``,
``yesterday``, or a relative time (``2h ago``, ``90 minutes ago``, ``3d ago``, ``1w ago``), which
may also be written as a duration alone, as ``kubectl logs --since`` takes it (``2h``,
``1h30m``, ``7d``: that long ago).
Commit shas, where a time is asked for, are resolved by the query layer, not here.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from gitops.model.errors import InvalidTimeError, UsageError

__all__ = ["check_range", "format_time", "is_duration", "parse_duration", "parse_time", "utc_now"]

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_RELATIVE = re.compile(r"(\d+)\s*([a-z]+)\s+ago\Z")
_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?\Z")  # largest unit first


def is_duration(text: str) -> bool:
    """Whether ``text`` is a duration alone (``2h``, ``1h30m``, ``7d``), which ``parse_time``
    reads as that long ago."""
    s = text.strip().lower()
    return bool(s) and _DURATION.match(s) is not None


def parse_duration(text: str) -> timedelta:
    """A duration as kubectl's ``--timeout`` takes it: ``30s``, ``5m``, ``1h30m``; a bare
    number is seconds."""
    s = text.strip().lower()
    if s.isdigit():
        return timedelta(seconds=int(s))
    m = _DURATION.match(s) if s else None
    if m is None or not any(m.groups()):
        raise InvalidTimeError(f"invalid duration {text!r}: expected e.g. 30s, 5m or 1h30m")
    units = (_UNITS["w"], _UNITS["d"], _UNITS["h"], _UNITS["m"], _UNITS["s"])
    return timedelta(seconds=sum(int(n) * unit for n, unit in zip(m.groups(), units, strict=True) if n))


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(t: datetime) -> str:
    """The stored form of ``t``; naive datetimes are taken as UTC."""
    if t.tzinfo is not UTC:
        t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    # isoformat pads the year to four digits, which strftime("%Y") does not for years < 1000;
    # in UTC it ends in "+00:00", which becomes "Z"
    return t.isoformat(timespec="microseconds")[:-6] + "Z"


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """Parse what a user typed as a time; the result is aware and in UTC."""
    raw = text.strip()
    s = raw.lower()
    now = now or utc_now()
    if s == "now":
        return now
    if s in ("today", "yesterday"):
        day = now.astimezone(UTC).date() - timedelta(days=1 if s == "yesterday" else 0)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    m = _DURATION.match(s) if s else None
    if m is not None:
        units = (_UNITS["w"], _UNITS["d"], _UNITS["h"], _UNITS["m"], _UNITS["s"])  # the pattern's groups
        return now - timedelta(seconds=sum(int(n) * unit for n, unit in zip(m.groups(), units, strict=True) if n))
    m = _RELATIVE.match(s)
    if m:
        unit = _UNITS.get(m.group(2))
        if unit is None:
            raise InvalidTimeError(f"invalid time {raw!r}: unknown unit {m.group(2)!r} (use s, m, h, d or w)")
        return now - timedelta(seconds=int(m.group(1)) * unit)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        try:
            d = date.fromisoformat(s)
        except ValueError as e:
            raise InvalidTimeError(f"invalid date {raw!r}: {e}") from None
        return datetime(d.year, d.month, d.day, tzinfo=UTC)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}[t ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?", s):  # no zone: this machine's local time
        try:
            return datetime.fromisoformat(s.upper()).astimezone(UTC)
        except ValueError as e:
            raise InvalidTimeError(f"invalid time {raw!r}: {e}") from None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}[t ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(z|[+-]\d{2}:?\d{2})", s):
        try:
            return datetime.fromisoformat(s.upper().replace("Z", "+00:00")).astimezone(UTC)
        except ValueError as e:
            raise InvalidTimeError(f"invalid time {raw!r}: {e}") from None
    raise InvalidTimeError(
        f"invalid time {raw!r}: expected RFC 3339 (2026-11-26T14:00:00Z), a date (2026-11-26), a local date and "
        "time (2026-11-26 14:00), 'now', 'today', 'yesterday' or a relative time ('2h ago', or '2h')"
    )


def check_range(since: datetime | None, until: datetime | None) -> None:
    """The ends of a range the user gave (``--since``, ``--until``) in order, else a UsageError."""
    if since is not None and until is not None and since > until:
        raise UsageError(f"--since ({since:%Y-%m-%dT%H:%M:%SZ}) is after --until ({until:%Y-%m-%dT%H:%M:%SZ})")
