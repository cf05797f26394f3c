"""Send windows in the customer's zone at every DST edge (docs/send-windows.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agents.core.timeutil import MICROS_PER_DAY
from agents.core.windows import (
    SEGMENT,
    Policy,
    SendWindows,
    Window,
    decide,
    inside,
    next_opening,
    parse_send_window,
)
from agents.core.zones import load_zone, zone_names

HOUR = 3_600_000_000
MINUTE = 60_000_000
ALL = frozenset(range(7))


def zone(name: str) -> ZoneInfo:
    z = load_zone(name)
    assert z is not None
    return z


def utc(text: str) -> int:
    """Micros of an RFC 3339 instant."""
    return (datetime.fromisoformat(text) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )


def shown(t: int | None, name: str) -> str | None:
    """The instant as the customer's clock shows it, with its offset."""
    if t is None:
        return None
    local = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=t)).astimezone(zone(name))
    return local.isoformat()


def hours(
    open_: str, close: str, days: frozenset[int] = ALL, *more: tuple[str, str]
) -> SendWindows:
    def minutes(text: str) -> int:
        h, m = text.split(":")
        return int(h) * 60 + int(m)

    spans = [(open_, close), *more]
    return SendWindows(tuple(Window(days, minutes(o), minutes(c)) for o, c in spans))


def opening(name: str, due: str, windows: SendWindows) -> str | None:
    return shown(next_opening(utc(due), zone(name), windows), name)


# --- Europe/Berlin: 02:00 -> 03:00 on 2026-03-29, 03:00 -> 02:00 on 2026-10-25 -------------


def test_berlin_an_opening_in_the_skipped_hour_moves_to_the_end_of_the_gap() -> None:
    w = hours("02:30", "05:00")
    assert opening("Europe/Berlin", "2026-03-28T23:30:00+00:00", w) == "2026-03-29T03:00:00+02:00"
    berlin = zone("Europe/Berlin")
    assert inside(utc("2026-03-29T01:00:00+00:00"), berlin, w)
    assert not inside(utc("2026-03-29T00:59:59.999999+00:00"), berlin, w)  # 01:59:59 CET


def test_berlin_an_opening_in_the_repeated_hour_is_its_first_occurrence() -> None:
    w = hours("02:30", "05:00")
    first = opening("Europe/Berlin", "2026-10-24T22:00:00+00:00", w)
    assert first == "2026-10-25T02:30:00+02:00"  # fold 0, CEST: 00:30Z, not 01:30Z


def test_berlin_a_window_closed_in_the_first_pass_reopens_in_the_second() -> None:
    """The first instant at or after the due time whose local time is inside: after
    02:40 CEST the clock shows 02:30 again an hour later, in CET."""
    w = hours("02:30", "02:40")
    later = opening("Europe/Berlin", "2026-10-25T00:45:00+00:00", w)  # 02:45 CEST
    assert later == "2026-10-25T02:30:00+01:00"


def test_berlin_a_window_crossing_midnight_into_the_spring_gap_is_an_hour_shorter() -> None:
    saturday = frozenset({5})
    w = hours("22:00", "06:00", saturday)
    berlin = zone("Europe/Berlin")
    opens = utc("2026-03-28T21:00:00+00:00")  # Saturday 22:00 CET
    assert next_opening(opens - HOUR, berlin, w) == opens
    closes = utc("2026-03-29T04:00:00+00:00")  # Sunday 06:00 CEST
    assert inside(closes - 1, berlin, w) and not inside(closes, berlin, w)
    assert closes - opens == 7 * HOUR
    # After it closes the next opening is the next Saturday, not the Sunday it ran into.
    assert opening("Europe/Berlin", "2026-03-29T04:00:00+00:00", w) == "2026-04-04T22:00:00+02:00"


def test_berlin_a_window_crossing_midnight_over_the_autumn_repeat_is_an_hour_longer() -> None:
    w = hours("22:00", "06:00", frozenset({5}))
    berlin = zone("Europe/Berlin")
    opens = next_opening(utc("2026-10-24T12:00:00+00:00"), berlin, w)
    assert shown(opens, "Europe/Berlin") == "2026-10-24T22:00:00+02:00"
    closes = utc("2026-10-25T05:00:00+00:00")  # Sunday 06:00 CET
    assert opens is not None and closes - opens == 9 * HOUR
    assert inside(closes - 1, berlin, w) and not inside(closes, berlin, w)


# --- America/New_York: 02:00 -> 03:00 on 2026-03-08, 02:00 -> 01:00 on 2026-11-01 ---------


def test_new_york_spring_an_opening_in_the_gap_moves_to_0300_edt() -> None:
    w = hours("02:15", "04:00")
    assert opening("America/New_York", "2026-03-08T05:00:00+00:00", w) == (
        "2026-03-08T03:00:00-04:00"
    )


def test_new_york_spring_a_window_wholly_inside_the_gap_does_not_open_that_day() -> None:
    """No instant of 2026-03-08 has a local time in [02:00, 03:00)."""
    w = hours("02:00", "03:00")
    assert opening("America/New_York", "2026-03-08T05:00:00+00:00", w) == (
        "2026-03-09T02:00:00-04:00"
    )


def test_new_york_autumn_an_opening_in_the_repeated_hour_is_edt() -> None:
    w = hours("01:30", "03:00")
    assert opening("America/New_York", "2026-11-01T03:00:00+00:00", w) == (
        "2026-11-01T01:30:00-04:00"
    )


def test_new_york_autumn_after_the_first_pass_the_second_counts() -> None:
    w = hours("01:00", "01:30")
    assert opening("America/New_York", "2026-11-01T05:45:00+00:00", w) == (
        "2026-11-01T01:00:00-05:00"
    )


# --- Australia/Lord_Howe: a 30-minute shift ---------------------------------------------


def test_lord_howe_spring_an_opening_in_the_half_hour_gap() -> None:
    # 2026-10-04 02:00 +10:30 -> 02:30 +11:00.
    w = hours("02:10", "03:00")
    assert opening("Australia/Lord_Howe", "2026-10-03T14:00:00+00:00", w) == (
        "2026-10-04T02:30:00+11:00"
    )


def test_lord_howe_autumn_an_opening_in_the_repeated_half_hour() -> None:
    # 2026-04-05 02:00 +11:00 -> 01:30 +10:30: 01:45 happens twice.
    w = hours("01:45", "03:00")
    assert opening("Australia/Lord_Howe", "2026-04-04T13:00:00+00:00", w) == (
        "2026-04-05T01:45:00+11:00"
    )


# --- Asia/Kathmandu (+05:45), Asia/Tehran (+03:30, DST at midnight until 2022) ----------


def test_kathmandu_opens_at_its_own_quarter_hour() -> None:
    w = hours("09:00", "20:00", frozenset(range(5)))
    due = utc("2026-12-07T03:00:00+00:00")  # Monday 08:45 in Kathmandu
    assert shown(next_opening(due, zone("Asia/Kathmandu"), w), "Asia/Kathmandu") == (
        "2026-12-07T09:00:00+05:45"
    )
    assert next_opening(due, zone("Asia/Kathmandu"), w) == due + 15 * MINUTE


def test_tehran_a_window_from_midnight_opens_when_the_skipped_midnight_ends() -> None:
    # 2021-03-22 00:00 +03:30 -> 01:00 +04:30: the day starts at 01:00.
    w = hours("00:00", "06:00")
    assert opening("Asia/Tehran", "2021-03-21T19:00:00+00:00", w) == "2021-03-22T01:00:00+04:30"


def test_tehran_a_window_crossing_the_repeated_hour_before_midnight() -> None:
    # 2021-09-22 00:00 +04:30 -> 2021-09-21 23:00 +03:30: 23:00-24:00 happens twice,
    # and Tuesday's 22:00-01:00 window holds both passes.
    w = hours("22:00", "01:00", frozenset({1}))
    tehran = zone("Asia/Tehran")
    opens = utc("2021-09-21T17:30:00+00:00")  # Tuesday 22:00 +04:30
    closes = utc("2021-09-21T21:30:00+00:00")  # Wednesday 01:00 +03:30
    assert next_opening(opens - 1, tehran, w) == opens
    assert inside(closes - 1, tehran, w) and not inside(closes, tehran, w)
    assert closes - opens == 4 * HOUR


# --- Pacific/Apia: Friday 2011-12-30 never happened --------------------------------------


def test_apia_a_friday_window_skips_the_missing_friday() -> None:
    friday = frozenset({4})
    w = hours("09:00", "17:00", friday)
    after = opening("Pacific/Apia", "2011-12-24T04:00:00+00:00", w)  # Fri 23rd 18:00 -10
    assert after == "2012-01-06T09:00:00+14:00"  # 13 days on: why the search spans 15


def test_apia_the_day_after_thursday_is_saturday() -> None:
    w = hours("09:00", "17:00")
    assert opening("Pacific/Apia", "2011-12-30T04:00:00+00:00", w) == "2011-12-31T09:00:00+14:00"


def test_apia_a_thursday_night_window_does_not_run_into_saturday() -> None:
    """After midnight the window belongs to the calendar day before - the skipped
    Friday, not the Thursday it opened on."""
    w = hours("22:00", "02:00", frozenset({3}))
    apia = zone("Pacific/Apia")
    assert inside(utc("2011-12-30T09:59:00+00:00"), apia, w)  # Thu 23:59 -10
    assert not inside(utc("2011-12-30T10:30:00+00:00"), apia, w)  # Sat 00:30 +14


# --- decide ---------------------------------------------------------------------------


def test_decide_inside_sends_at_the_due_time_whatever_the_policy() -> None:
    w = hours("09:00", "20:00")
    due = utc("2026-12-07T12:00:00+00:00")
    for policy in (Policy("defer"), Policy("drop"), Policy("defer", HOUR)):
        assert decide(due, zone("Europe/Berlin"), w, policy) == due


def test_decide_outside_defers_drops_or_gives_up_past_max_delay() -> None:
    w = hours("09:00", "20:00")
    berlin = zone("Europe/Berlin")
    due = utc("2026-12-07T02:00:00+00:00")  # 03:00 local: six hours to the opening
    opens = due + 6 * HOUR
    assert decide(due, berlin, w, Policy("defer")) == opens
    assert decide(due, berlin, w, Policy("drop")) is None
    assert decide(due, berlin, w, Policy("defer", 6 * HOUR)) == opens
    assert decide(due, berlin, w, Policy("defer", 6 * HOUR - 1)) is None


def test_the_search_never_runs_past_the_last_instant() -> None:
    w = hours("09:00", "10:00")
    assert next_opening(253_402_300_799_999_999, zone("UTC"), w) is None


def test_no_zone_changes_its_offset_twice_within_a_segment() -> None:
    """Why comparing the offsets at a segment's two ends finds every transition
    (agents/core/windows.py SEGMENT), on the pinned tzdata since 1900."""
    from importlib import resources
    from zoneinfo._zoneinfo import ZoneInfo as PythonZoneInfo  # exposes the transitions

    since_1900 = -2_208_988_800
    gaps = []
    for name in sorted(zone_names()):
        with resources.files("tzdata.zoneinfo").joinpath(*name.split("/")).open("rb") as f:
            times = PythonZoneInfo.from_file(f, key=name)._trans_utc  # type: ignore[attr-defined]
        gaps += [b - a for a, b in pairwise(times) if a >= since_1900]
    assert len(gaps) > 10_000
    assert min(gaps) * 1_000_000 > 2 * SEGMENT  # 6.9 days in tzdata 2026f
    assert SEGMENT == MICROS_PER_DAY


# --- the check ------------------------------------------------------------------------


def test_a_full_table_is_read() -> None:
    setting, problems = parse_send_window(
        {
            "windows": [
                {"days": "weekdays", "open": "09:00", "close": "20:00"},
                {"days": ["sat", "sun"], "open": "22:00", "close": "02:00"},
                {"days": "fri", "open": "20:00", "close": "24:00"},
            ],
            "policy": "defer",
            "max_delay": "PT36H",
        }
    )
    assert problems == []
    assert setting is not None
    assert setting.policy == Policy("defer", 36 * HOUR)
    first, weekend, friday = setting.windows.windows
    assert first == Window(frozenset(range(5)), 9 * 60, 20 * 60)
    assert weekend.crosses_midnight and weekend.days == frozenset({5, 6})
    assert friday == Window(frozenset({4}), 20 * 60, 24 * 60)


def test_policy_defaults_to_defer_without_a_bound() -> None:
    whole_day = {"days": "all", "open": "00:00", "close": "24:00"}
    setting, _ = parse_send_window({"windows": [whole_day]})
    assert setting is not None and setting.policy == Policy("defer", None)


def problems_of(raw: Any) -> list[tuple[str, str]]:
    setting, problems = parse_send_window(raw)
    assert setting is None and problems
    return [(p.path, p.message) for p in problems]


def one(**window: Any) -> dict[str, Any]:
    return {"windows": [{"days": "all", "open": "09:00", "close": "20:00", **window}]}


@pytest.mark.parametrize(
    ("raw", "path", "says"),
    [
        (one(open="09:00", close="09:00"), "send_window.windows[0].close", "empty"),
        (one(open="9:00"), "send_window.windows[0].open", "HH:MM"),
        (one(open="24:00"), "send_window.windows[0].open", "00:00 to 23:59"),
        (one(close="24:01"), "send_window.windows[0].close", "00:00 to 24:00"),
        (one(open="12:60"), "send_window.windows[0].open", "HH:MM"),
        (one(open=900), "send_window.windows[0].open", "HH:MM"),
        (one(days=[]), "send_window.windows[0].days", "list of day names"),
        (one(days=["mon", "funday"]), "send_window.windows[0].days", "unknown day 'funday'"),
        (one(days="Monday"), "send_window.windows[0].days", "unknown day"),
        (one(hours=3), "send_window.windows[0].hours", "unknown setting"),
        ({"windows": []}, "send_window.windows", "one or more"),
        ({}, "send_window.windows", "one or more"),
        ({"windows": "09:00-20:00"}, "send_window.windows", "one or more"),
        ({**one(), "policy": "later"}, "send_window.policy", "'defer' or 'drop'"),
        ({**one(), "policy": "drop", "max_delay": "PT1H"}, "send_window.max_delay", "drop"),
        ({**one(), "max_delay": "36 hours"}, "send_window.max_delay", "ISO 8601"),
        ({**one(), "max_delay": "PT0S"}, "send_window.max_delay", "longer than zero"),
        ({**one(), "quiet": True}, "send_window.quiet", "unknown setting"),
        ("09:00", "send_window", "table"),
    ],
)
def test_a_bad_setting_is_refused_where_it_is(raw: Any, path: str, says: str) -> None:
    assert any(p == path and says in m for p, m in problems_of(raw)), problems_of(raw)


def test_overlapping_windows_are_refused_with_the_day_and_time() -> None:
    raw = {
        "windows": [
            {"days": "weekdays", "open": "09:00", "close": "12:00"},
            {"days": ["sat", "wed"], "open": "11:00", "close": "14:00"},
        ]
    }
    assert problems_of(raw) == [
        (
            "send_window.windows[1]",
            "overlaps windows[0] on wed from 11:00: a moment must belong to one window "
            "at most - merge the two or move one",
        )
    ]


def test_a_sunday_night_window_overlaps_monday_morning() -> None:
    raw = {
        "windows": [
            {"days": ["mon"], "open": "01:00", "close": "08:00"},
            {"days": ["sun"], "open": "22:00", "close": "02:00"},
        ]
    }
    assert problems_of(raw) == [
        (
            "send_window.windows[1]",
            "overlaps windows[0] on mon from 01:00: a moment must belong to one window "
            "at most - merge the two or move one",
        )
    ]


def test_windows_that_touch_do_not_overlap() -> None:
    raw = {
        "windows": [
            {"days": "all", "open": "09:00", "close": "12:00"},
            {"days": "all", "open": "12:00", "close": "09:00"},
        ]
    }
    setting, problems = parse_send_window(raw)
    assert problems == [] and setting is not None


def test_every_problem_is_reported_at_once() -> None:
    raw = {
        "windows": [{"days": ["xx"], "open": "25:00", "close": "09:00"}],
        "policy": "drop",
        "max_delay": "PT1H",
    }
    paths = [p for p, _ in problems_of(raw)]
    assert paths == [
        "send_window.windows[0].days",
        "send_window.windows[0].open",
        "send_window.max_delay",
    ]
