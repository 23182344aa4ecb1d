from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitops.model import InvalidTimeError, format_time, parse_time

NOW = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T10:00:00Z", datetime(2026, 11, 26, 10, tzinfo=UTC)),
        ("2026-11-26T12:00:00+02:00", datetime(2026, 11, 26, 10, tzinfo=UTC)),
        ("2026-11-26 10:00:00.5z", datetime(2026, 11, 26, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
        ("2h ago", NOW - timedelta(hours=2)),
        ("90 minutes ago", NOW - timedelta(minutes=90)),
        ("3d ago", NOW - timedelta(days=3)),
        ("1 week ago", NOW - timedelta(weeks=1)),
        ("2h", NOW - timedelta(hours=2)),  # as kubectl logs --since takes a duration
        ("1h30m", NOW - timedelta(minutes=90)),
        ("7D", NOW - timedelta(days=7)),
        ("1w2d3h4m5s", NOW - timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        ("now", NOW),
        ("yesterday", datetime(2026, 11, 25, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["", "tomorrowish", "2026-13-01", "2h30", "30m1h", "1.5h", "h", "5 fortnights ago",
                                  "2026-11-26T25:00Z"])
def test_bad_times_name_the_input(text: str) -> None:
    with pytest.raises(InvalidTimeError, match="invalid"):
        parse_time(text, now=NOW)


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)))
def test_stored_form_round_trips_and_sorts_as_text(t: datetime) -> None:
    s = format_time(t)
    assert parse_time(s) == t
    assert len(s) == 27


@given(st.lists(st.datetimes(timezones=st.just(UTC)), min_size=2, max_size=10))
def test_text_order_is_time_order(ts: list[datetime]) -> None:
    assert sorted(format_time(t) for t in ts) == [format_time(t) for t in sorted(ts)]
