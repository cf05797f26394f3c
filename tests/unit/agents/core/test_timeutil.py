"""iso(): the fast path for micros gives exactly datetime.isoformat()'s text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.core.timeutil import EPOCH, iso

# Years 1..9999, the range datetime (and so every accepted event time) covers.
LOW = -62_135_596_800_000_000
HIGH = 253_402_300_799_999_999


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


@pytest.mark.parametrize("micros", [LOW - 1, HIGH + 1])
def test_outside_datetime_range_raises_overflow(micros: int) -> None:
    with pytest.raises(OverflowError):
        iso(micros)
