"""iso(): the fast path for micros gives exactly datetime.isoformat()'s text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.core.timeutil import (
    EPOCH,
    TIME_MAX,
    TIME_MIN,
    iso,
    month_name,
    month_number,
    month_of,
    month_start_at,
    to_micros,
)

# Years 1..9999, the range datetime covers.
LOW = -62_135_596_800_000_000
HIGH = 253_402_300_799_999_999
assert (LOW, HIGH) == (TIME_MIN, TIME_MAX)


def reference(micros: int) -> str:
    text = (EPOCH + timedelta(microseconds=micros)).astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


@given(st.integers(min_value=LOW, max_value=HIGH))
def test_micros_render_as_isoformat_does(micros: int) -> None:
    assert iso(micros) == reference(micros)


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1, "1970-01-01T00:00:00.000001Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (1_767_225_600_000_000, "2026-01-01T00:00:00Z"),
        (HIGH, "9999-12-31T23:59:59.999999Z"),
        (LOW, "0001-01-01T00:00:00Z"),
    ],
)
def test_known_instants(micros: int, text: str) -> None:
    assert iso(micros) == text


def test_datetimes_still_convert_to_utc() -> None:
    t = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    assert iso(t) == "2026-03-01T10:30:00Z"


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (LOW - 1, "0001-01-01T00:00:00Z"),
        (LOW - 400 * 365 * 86_400_000_000, "0001-01-01T00:00:00Z"),
        (-(2**62), "0001-01-01T00:00:00Z"),  # a stream clock that never started
        (HIGH + 1, "9999-12-31T23:59:59.999999Z"),
        (HIGH + 36_500 * 86_400_000_000, "9999-12-31T23:59:59.999999Z"),  # + 100 years
    ],
)
def test_outside_datetime_range_is_written_as_its_nearest_end(micros: int, text: str) -> None:
    # A due time past 9999 or a clock before year 1 is computed, never received:
    # writing it must not raise (docs/time.md "Time").
    assert iso(micros) == text


@given(st.integers(min_value=LOW, max_value=HIGH))
def test_month_arithmetic_is_the_calendar_s(micros: int) -> None:
    d = EPOCH + timedelta(microseconds=micros)
    k = month_of(micros)
    assert k == d.year * 12 + d.month - 1
    assert month_start_at(k) == to_micros(datetime(d.year, d.month, 1, tzinfo=UTC))
    assert month_name(k) == d.strftime("%Y-%m").rjust(7, "0")
    assert month_number(month_name(k)) == k


@given(st.integers(min_value=-(2**80), max_value=2**80))
def test_month_arithmetic_holds_for_any_instant(micros: int) -> None:
    # Reports step through months up to their as-of, which may be the last
    # instant a datetime holds: the month after it has to exist too.
    k = month_of(micros)
    assert month_start_at(k) <= micros < month_start_at(k + 1)
    assert month_number(month_name(k)) == k
