"""Sync windows: whether a pass may apply at a given moment (pure; the clock is the caller's)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from gitops.reconcile.settings import SyncWindow, parse_duration

__all__ = ["cron_trigger", "holding_window", "is_open"]

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def cron_trigger(expression: str, timezone: str = "UTC") -> CronTrigger:
    """A five-field cron expression as cron reads it. APScheduler 3 numbers the days of the
    week from Monday (0) where cron starts from Sunday (0 or 7): numbers in that field are
    turned into day names first, so ``1-5`` means Monday to Friday, as users expect."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, dow = fields
    dow = re.sub(r"\d+", lambda m: _DAYS[int(m.group())] if int(m.group()) < len(_DAYS) else m.group(), dow)
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=dow, timezone=timezone)


def is_open(window: SyncWindow, now: datetime) -> bool:
    """Whether ``window`` is open at ``now``: the schedule fired within the last ``duration``."""
    trigger = cron_trigger(window.schedule, window.timezone)
    start = now - parse_duration(window.duration) + timedelta(microseconds=1)
    fired = trigger.get_next_fire_time(None, start)
    return fired is not None and fired <= now


def holding_window(windows: Sequence[SyncWindow], now: datetime) -> str | None:
    """The window that keeps a pass from applying at ``now`` ("window <label>"), or None.
    An open deny window holds; so does being outside every allow window, when there are
    allow windows. Deny wins over allow."""
    for w in windows:
        if w.kind == "deny" and is_open(w, now):
            return f"deny window {w.label}"
    allows = [w for w in windows if w.kind == "allow"]
    if allows and not any(is_open(w, now) for w in allows):
        return "outside every allow window"
    return None
