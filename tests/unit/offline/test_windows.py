"""The core's send windows against the brute-force reading (docs/send-windows.md
"The brute-force reading"): same inside, next opening and decision everywhere."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.core import windows as core
from agents.core.zones import load_zone
from agents.offline import windows as brute

# The zones of issue 22's DST edges, and others with a half-hour, 45-minute or
# two-hour shift, DST at midnight, negative DST, or a southern summer.
ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Apia",
    "Asia/Tehran",
    "UTC",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Moscow",
    "America/Los_Angeles",
    "America/St_Johns",
    "America/Havana",
    "America/Santiago",
    "America/Sao_Paulo",
    "Asia/Riyadh",
    "Asia/Kolkata",
    "Asia/Gaza",
    "Africa/Casablanca",
    "Australia/Adelaide",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
    "Antarctica/Troll",
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)
START = (datetime(2000, 1, 1, tzinfo=UTC) - EPOCH) // US
END = (datetime(2041, 1, 1, tzinfo=UTC) - EPOCH) // US
DAY = 86_400_000_000
NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def utc(text: str) -> int:
    return (datetime.fromisoformat(text) - EPOCH) // US


@functools.cache
def transitions(name: str) -> tuple[int, ...]:
    """The instants in 2000-2040 where the zone's offset changes (to the second)."""
    zone = load_zone(name)
    assert zone is not None
    found = []
    day = START
    before = brute.local(day, zone).utcoffset()
    while day < END:
        after = brute.local(day + DAY, zone).utcoffset()
        if after != before:
            found.append(brute._change(day, day + DAY, zone))
        day, before = day + DAY, after
    return tuple(found)


def clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def send_windows(draw: st.DrawFn) -> dict[str, Any]:
    """A table the check accepts: disjoint arcs of the day, turned so that one may
    cross midnight, on any days (all on one set of days when theirs would overlap)."""
    count = draw(st.integers(1, 3))
    minute = st.one_of(st.sampled_from(range(0, 1441, 30)), st.integers(0, 1440))
    bounds = sorted(draw(st.sets(minute, min_size=2 * count, max_size=2 * count)))
    turn = draw(st.one_of(st.just(0), st.integers(1, 1439)))
    turned = [(b + turn) % 1440 for b in bounds]
    if len(set(turned)) == len(turned):  # else 0 and 1440 met: leave the day unturned
        bounds = turned
    day_sets = st.one_of(
        st.sampled_from(["weekdays", "weekends", "all", *NAMES]),
        st.lists(st.sampled_from(NAMES), min_size=1, max_size=7, unique=True),
    )
    pairs = list(zip(bounds[::2], bounds[1::2], strict=True))
    windows = [
        {"days": draw(day_sets), "open": clock(o), "close": "24:00" if c == 1440 else clock(c)}
        for o, c in pairs
    ]
    table: dict[str, Any] = {"windows": windows}
    if core.parse_send_window(table)[1]:
        table["windows"] = [{**w, "days": windows[0]["days"]} for w in windows]
    table["policy"] = draw(st.sampled_from(["defer", "drop"]))
    if table["policy"] == "defer" and draw(st.booleans()):
        table["max_delay"] = f"PT{draw(st.integers(60, 10 * 86_400))}S"
    return table


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, int, dict[str, Any]]:
    """A zone, windows, and an instant: anywhere in 2000-2040, near an offset change,
    or a hair from a window's opening or closing on the local clock."""
    name = draw(st.sampled_from(ZONES))
    zone = load_zone(name)
    assert zone is not None
    table = draw(send_windows())
    near = transitions(name)
    start, end = START, END
    if near and draw(st.booleans()):
        middle = draw(st.sampled_from(near))
        start, end = middle - 2 * DAY, middle + 2 * DAY
    how = draw(st.sampled_from(["anywhere", "grid", "edge"]))
    t = draw(st.integers(start, end))
    if how == "grid":
        t = t // 900_000_000 * 900_000_000
    elif how == "edge":
        window = draw(st.sampled_from(table["windows"]))
        hour, minute = (
            int(x) for x in draw(st.sampled_from([window["open"], window["close"]])).split(":")
        )
        day = brute.local(t, zone).date() + timedelta(days=hour // 24)
        wall = datetime(day.year, day.month, day.day, hour % 24, minute, tzinfo=zone)
        wall = wall.replace(fold=draw(st.sampled_from([0, 1])))
        hair = draw(st.sampled_from([0, -1, 1, -30_000_000, 30_000_000, -60_000_000]))
        t = (wall - EPOCH) // US + hair
    return name, t, table


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_the_core_decides_as_the_brute_force(case: tuple[str, int, dict[str, Any]]) -> None:
    name, t, table = case
    zone = load_zone(name)
    assert zone is not None
    setting, problems = core.parse_send_window(table)
    assert problems == [] and setting is not None, problems
    w = setting.windows
    assert core.inside(t, zone, w) == brute.inside(t, zone, table)
    assert core.next_opening(t, zone, w) == brute.next_opening(t, zone, table)
    assert core.decide(t, zone, w, setting.policy) == brute.decide(t, zone, table)


def test_the_transitions_drawn_from_include_each_issue_edge() -> None:
    assert utc("2011-12-30T10:00:00+00:00") in transitions("Pacific/Apia")
    assert utc("2026-10-03T15:30:00+00:00") in transitions("Australia/Lord_Howe")
    assert utc("2021-03-21T20:30:00+00:00") in transitions("Asia/Tehran")
    assert transitions("Asia/Kathmandu") == ()
    assert len(transitions("Europe/Berlin")) == 2 * 41


# The brute force alone, at the edges issue 22 names: it is the oracle, so it is
# checked against the local clock directly, not only against the core.


def shown(t: int | None, name: str) -> str | None:
    zone = load_zone(name)
    assert zone is not None and t is not None
    return brute.local(t, zone).isoformat()


def test_brute_force_moves_a_skipped_opening_to_the_end_of_the_gap() -> None:
    table = {"windows": [{"days": "all", "open": "02:30", "close": "05:00"}]}
    berlin = load_zone("Europe/Berlin")
    assert berlin is not None
    t = brute.next_opening(utc("2026-03-28T23:30:00+00:00"), berlin, table)
    assert shown(t, "Europe/Berlin") == "2026-03-29T03:00:00+02:00"


def test_brute_force_finds_a_gap_end_off_the_minute_grid() -> None:
    """A due time at a second past the minute: the scan's minutes then never fall
    on the transition, which the brute force must still find exactly."""
    table = {"windows": [{"days": "all", "open": "02:10", "close": "03:00"}]}
    lord_howe = load_zone("Australia/Lord_Howe")
    assert lord_howe is not None
    t = brute.next_opening(utc("2026-10-03T15:00:01.5+00:00"), lord_howe, table)
    assert shown(t, "Australia/Lord_Howe") == "2026-10-04T02:30:00+11:00"


def test_brute_force_skips_apias_missing_friday() -> None:
    table = {"windows": [{"days": ["fri"], "open": "09:00", "close": "17:00"}], "policy": "defer"}
    apia = load_zone("Pacific/Apia")
    assert apia is not None
    t = brute.decide(utc("2011-12-24T04:00:00+00:00"), apia, table)
    assert shown(t, "Pacific/Apia") == "2012-01-06T09:00:00+14:00"
    table["max_delay"] = "P7D"
    assert brute.decide(utc("2011-12-24T04:00:00+00:00"), apia, table) is None


# The reference's fast reading (candidates instead of a scan of every minute) gives
# the brute force's answers: the offline reference decides with it.


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_the_fast_reading_decides_as_the_minute_scan(
    case: tuple[str, int, dict[str, Any]],
) -> None:
    name, t, table = case
    zone = brute.zone(name)
    assert zone is not None
    hours = tuple(brute.read_windows(table))
    max_delay = core.parse_send_window(table)[0]
    assert max_delay is not None
    got = brute.send_time(t, name, hours, table.get("policy", "defer"), max_delay.policy.max_delay)
    assert got == brute.decide(t, zone, table)
    assert brute.opening(t, zone, hours, 15 * DAY) == brute.next_opening(t, zone, table)


def test_the_fast_reading_at_issue_22s_edges() -> None:
    """Berlin's spring gap (a 02:30 opening sent at 03:00 CEST), Berlin's repeated
    hour (a due time between the two passes waits for the second), Apia's missing
    Friday."""
    gap = (brute.Hours(("sun",), (2, 30), (5, 0)),)
    t = brute.send_time(utc("2026-03-28T23:30:00+00:00"), "Europe/Berlin", gap, "defer", None)
    assert shown(t, "Europe/Berlin") == "2026-03-29T03:00:00+02:00"
    twice = (brute.Hours(("sun",), (2, 30), (2, 40)),)
    t = brute.send_time(utc("2026-10-25T00:45:00+00:00"), "Europe/Berlin", twice, "defer", None)
    assert shown(t, "Europe/Berlin") == "2026-10-25T02:30:00+01:00"
    fri = (brute.Hours(("fri",), (9, 0), (17, 0)),)
    t = brute.send_time(utc("2011-12-24T04:00:00+00:00"), "Pacific/Apia", fri, "defer", None)
    assert shown(t, "Pacific/Apia") == "2012-01-06T09:00:00+14:00"
    week = 7 * DAY
    assert (
        brute.send_time(utc("2011-12-24T04:00:00+00:00"), "Pacific/Apia", fri, "defer", week)
        is None
    )


def test_zones_come_from_the_tzdata_package_only() -> None:
    assert brute.known_zone("Europe/Berlin") and brute.known_zone("US/Eastern")
    for wrong in ("Factory", "europe/berlin", "../../etc/passwd", "posixrules", "Mars/Base", 3):
        assert not brute.known_zone(wrong), wrong
