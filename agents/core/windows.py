"""Send windows in the customer's own time zone: the model, its check, and the
decision when a firing may be sent (docs/send-windows.md).

Pure: instants are UTC microseconds since the epoch (agents/core/timeutil.py),
zones come from :func:`agents.core.zones.load_zone`, and nothing here reads a
clock.  The same (due time, zone, windows, policy) always gives the same send
time, so a replay of history decides as the live stream did.

How an opening is found: the search walks UTC time in segments over which the
zone's offset is constant (at most a day long, cut at each transition).  Inside
a segment local wall time is the UTC instant plus that offset, so the first
instant inside a window is either the segment's start or a window's opening
shifted by the offset.  An opening in a skipped local hour therefore becomes the
first instant after the gap (the segment that starts at the transition), and an
opening in a repeated hour is met first in the segment before the transition
(fold 0) - the two rules of docs/send-windows.md "Semantics" follow from the
walk rather than being special cases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from agents.core.rules.problem import Problem
from agents.core.timeutil import (
    MAX_DURATION,
    MICROS_PER_DAY,
    MICROS_PER_SECOND,
    TIME_MAX,
    TIME_MIN,
    parse_duration,
)
from agents.core.zones import valid_zone_name, zone_names

MINUTE = 60 * MICROS_PER_SECOND
MINUTES_PER_DAY = 24 * 60
# How far ahead an opening is looked for.  A week is not enough: in Pacific/Apia
# the whole of Friday 2011-12-30 was skipped, so a Friday-only window closed on
# the 23rd next opens on 2012-01-06, 14 days later.  Fifteen days hold two of
# every weekday however a transition falls.
SEARCH_DAYS = 15
SEARCH = SEARCH_DAYS * MICROS_PER_DAY
# A segment of constant offset is at most this long.  Since 1900 no zone in tzdata
# changes its offset twice within 6.9 days (tests/unit/agents/core/test_windows.py
# checks it on the pinned tzdata), so comparing the offsets at a day's two ends
# finds every transition.
SEGMENT = MICROS_PER_DAY
# Windows in one setting: each firing outside its window looks at every one.
MAX_WINDOWS = 24
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_GROUPS = {
    "weekdays": frozenset(range(5)),
    "weekends": frozenset({5, 6}),
    "all": frozenset(range(7)),
}
POLICIES = ("defer", "drop")
KEYS = ("windows", "policy", "max_delay", "zone")
WINDOW_KEYS = ("days", "open", "close")
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])", re.ASCII)
# 1970-01-01, day 0 of the epoch, was a Thursday (Monday is 0).
_EPOCH_WEEKDAY = 3
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Offsets are looked up inside these bounds: a local time must stay within the
# years 1..9999 a datetime holds (offsets are under a day).
_OFFSET_MIN = TIME_MIN + MICROS_PER_DAY
_OFFSET_MAX = TIME_MAX - MICROS_PER_DAY


@dataclass(frozen=True, slots=True)
class Window:
    """Local opening hours on some weekdays.

    ``open`` and ``close`` are minutes after local midnight; ``close`` may be 1440
    (24:00).  With ``close < open`` the window crosses midnight and belongs to the
    day it opens: ``days`` names the opening day (0 = Monday)."""

    days: frozenset[int]
    open: int
    close: int

    @property
    def crosses_midnight(self) -> bool:
        return self.close < self.open


@dataclass(frozen=True, slots=True)
class SendWindows:
    """The windows a firing may be sent in; no two overlap (the check refuses it)."""

    windows: tuple[Window, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    """What happens to a firing outside every window: ``defer`` to the next opening
    (dropped when that is more than ``max_delay`` micros after the due time) or
    ``drop``."""

    kind: Literal["defer", "drop"] = "defer"
    max_delay: int | None = None


@dataclass(frozen=True, slots=True)
class SendWindowSetting:
    """A ``send_window`` table read: the windows and the policy, and the zone they
    are read in (docs/send-windows.md "In the rules file"): ``zone`` a fixed zone for
    every customer (a campaign in the shop's zone), else the customer's zone in
    force at the due time, else ``default_zone`` (the file's ``default_timezone``,
    UTC when unset)."""

    windows: SendWindows
    policy: Policy
    zone: str | None = None
    default_zone: str = "UTC"

    def canonical(self) -> dict[str, Any]:
        """What a rule's version hashes of its window (docs/rules.md "Send windows")."""
        doc: dict[str, Any] = {
            "windows": [
                {"days": sorted(w.days), "open": w.open, "close": w.close}
                for w in self.windows.windows
            ],
            "policy": self.policy.kind,
            "max_delay": self.policy.max_delay,
            "default_zone": self.default_zone,
        }
        if self.zone is not None:
            doc["zone"] = self.zone
        return doc


# --- the check ------------------------------------------------------------------------


def parse_send_window(
    raw: Any, path: str = "send_window"
) -> tuple[SendWindowSetting | None, list[Problem]]:
    """Read a ``send_window`` table as a TOML parser gives it; every problem is
    located by path (``send_window.windows[1].open``).  The setting is None when
    there is any problem."""
    problems: list[Problem] = []
    if not isinstance(raw, dict):
        return None, [Problem(path, "this should be a table of settings")]
    problems.extend(
        Problem(f"{path}.{key}", f"unknown setting {key!r} (known: {', '.join(KEYS)})")
        for key in raw
        if key not in KEYS
    )
    windows = _windows(raw.get("windows"), f"{path}.windows", problems)
    policy = _policy(raw, path, problems)
    zone = raw.get("zone")
    if zone is not None:
        problem = zone_problem(zone, f"{path}.zone")
        if problem is not None:
            problems.append(problem)
    if problems or policy is None:
        return None, problems
    return SendWindowSetting(SendWindows(tuple(windows)), policy, zone), []


def zone_problem(name: Any, path: str) -> Problem | None:
    """Why ``name`` is not a zone a rules file may name, or None.  Only the pinned
    tzdata's names are accepted (docs/send-windows.md "Zones"): a file checked here
    runs the same on every worker."""
    if valid_zone_name(name) and name in zone_names():
        return None
    shown = repr(name[:40]) if isinstance(name, str) else repr(name)[:40]
    return Problem(
        path,
        f"{shown} is not a time zone tzdata knows: write an IANA name such as "
        '"America/New_York" or "UTC" (names are case-sensitive)',
    )


def _windows(raw: Any, path: str, problems: list[Problem]) -> list[Window]:
    if not isinstance(raw, list) or not raw:
        problems.append(
            Problem(
                path,
                "a list of one or more windows such as "
                '{ days = "weekdays", open = "09:00", close = "20:00" } '
                "(to send at any time, leave send_window out)",
            )
        )
        return []
    if len(raw) > MAX_WINDOWS:
        problems.append(Problem(path, f"at most {MAX_WINDOWS} windows"))
        return []
    found = [(i, _window(w, f"{path}[{i}]", problems)) for i, w in enumerate(raw)]
    windows = [(i, w) for i, w in found if w is not None]
    problems.extend(_overlaps(windows, path))
    return [w for _, w in windows]


def _window(raw: Any, path: str, problems: list[Problem]) -> Window | None:
    if not isinstance(raw, dict):
        problems.append(Problem(path, "a window is a table with days, open and close"))
        return None
    before = len(problems)
    problems.extend(
        Problem(f"{path}.{key}", f"unknown setting {key!r} (known: {', '.join(WINDOW_KEYS)})")
        for key in raw
        if key not in WINDOW_KEYS
    )
    days = _days(raw.get("days"), f"{path}.days", problems)
    opens = _clock(raw.get("open"), f"{path}.open", problems, close=False)
    closes = _clock(raw.get("close"), f"{path}.close", problems, close=True)
    if opens is not None and closes is not None and opens == closes:
        problems.append(
            Problem(
                f"{path}.close",
                f"the window opens and closes at {_hhmm(opens)}: it would be empty "
                '(for a whole day write open = "00:00", close = "24:00")',
            )
        )
    if len(problems) > before or days is None or opens is None or closes is None:
        return None
    return Window(days, opens, closes)


def _days(raw: Any, path: str, problems: list[Problem]) -> frozenset[int] | None:
    known = f"{', '.join(DAY_NAMES)}, or one of {', '.join(DAY_GROUPS)}"
    if isinstance(raw, str):
        if raw in DAY_GROUPS:
            return DAY_GROUPS[raw]
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        problems.append(Problem(path, f"days is a list of day names ({known})"))
        return None
    wrong = [d for d in raw if d not in DAY_NAMES]
    if wrong:
        problems.append(Problem(path, f"unknown day {str(wrong[0])[:20]!r} (known: {known})"))
        return None
    return frozenset(DAY_NAMES.index(d) for d in raw)


def _clock(raw: Any, path: str, problems: list[Problem], *, close: bool) -> int | None:
    """Minutes after midnight of "HH:MM" (00:00-23:59; 24:00 too for a close)."""
    if close and raw == "24:00":
        return MINUTES_PER_DAY
    match = _CLOCK.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        allowed = "00:00 to 24:00" if close else "00:00 to 23:59"
        problems.append(
            Problem(path, f"{str(raw)[:20]!r} is not a local time: write HH:MM, {allowed}")
        )
        return None
    return int(match.group(1)) * 60 + int(match.group(2))


def _policy(raw: dict[str, Any], path: str, problems: list[Problem]) -> Policy | None:
    kind = raw.get("policy", "defer")
    if kind not in POLICIES:
        problems.append(
            Problem(f"{path}.policy", f"policy is {' or '.join(repr(p) for p in POLICIES)}")
        )
        return None
    if "max_delay" not in raw:
        return Policy(kind)
    if kind == "drop":
        problems.append(
            Problem(
                f"{path}.max_delay",
                'max_delay bounds a deferral; with policy = "drop" nothing is deferred',
            )
        )
        return None
    value = raw["max_delay"]
    try:
        if not isinstance(value, str):
            raise ValueError(f'{value!r} is not a duration: write e.g. "PT36H"')
        micros = parse_duration(value) // timedelta(microseconds=1)
    except ValueError as exc:
        problems.append(Problem(f"{path}.max_delay", str(exc)))
        return None
    if not 0 < micros <= MAX_DURATION:
        problems.append(Problem(f"{path}.max_delay", "max_delay must be longer than zero"))
        return None
    return Policy("defer", micros)


def _overlaps(windows: list[tuple[int, Window]], path: str) -> list[Problem]:
    """Two windows open at once on some local day: which opening would count, and
    whose hours hold, would depend on the order they were written in."""
    week = 7 * MINUTES_PER_DAY
    spans = [(i, s, e) for i, w in windows for s, e in _week_spans(w)]
    problems: list[Problem] = []
    reported: set[tuple[int, int]] = set()
    for i, s1, e1 in spans:
        for j, s2, e2 in spans:
            if i >= j or (i, j) in reported:
                continue
            # Compare on the week's circle: a Sunday window crossing midnight meets Monday.
            for shift in (-week, 0, week):
                start, end = max(s1, s2 + shift), min(e1, e2 + shift)
                if start < end:
                    reported.add((i, j))
                    day = DAY_NAMES[(start // MINUTES_PER_DAY) % 7]
                    problems.append(
                        Problem(
                            f"{path}[{j}]",
                            f"overlaps {path.rsplit('.', 1)[-1]}[{i}] on {day} from "
                            f"{_hhmm(start % MINUTES_PER_DAY)}: a moment must belong to "
                            "one window at most - merge the two or move one",
                        )
                    )
                    break
    return problems


def _week_spans(w: Window) -> list[tuple[int, int]]:
    """The window's minutes of the week, [start, end) from Monday 00:00 (may pass 10080)."""
    length = (w.close - w.open) % MINUTES_PER_DAY or MINUTES_PER_DAY
    return [(d * MINUTES_PER_DAY + w.open, d * MINUTES_PER_DAY + w.open + length) for d in w.days]


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# --- the decision -----------------------------------------------------------------------


def utc_offset(t: int, zone: ZoneInfo) -> int:
    """The zone's offset from UTC at instant ``t``, in micros (local = t + offset).

    Remembers the UTC days over which a zone's offset is constant: firings fall on
    the same few days, and asking ``zoneinfo`` costs a datetime round trip
    (docs/benchmarks.md "Where the send windows' cost goes").  Equal offsets at a
    day's two ends mean no transition within it, as no zone changes its offset
    twice within a day since 1900 (:data:`SEGMENT`)."""
    if t < _CACHE_FROM:
        return _utc_offset(t, zone)
    day = t // MICROS_PER_DAY
    key = (zone, day)
    offset = _DAY_OFFSET.get(key)
    if offset is not None:
        return offset
    start = day * MICROS_PER_DAY
    offset = _utc_offset(start, zone)
    if _utc_offset(start + MICROS_PER_DAY, zone) != offset:
        return _utc_offset(t, zone)  # a transition within the day
    if len(_DAY_OFFSET) >= _DAY_OFFSETS:
        _DAY_OFFSET.clear()
    _DAY_OFFSET[key] = offset
    return offset


# (zone, UTC day) -> the offset all that day; emptied when full (a few hundred KB).
_DAY_OFFSET: dict[tuple[ZoneInfo, int], int] = {}
_DAY_OFFSETS = 16_384
_CACHE_FROM = (datetime(1900, 1, 2, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)


def _utc_offset(t: int, zone: ZoneInfo) -> int:
    clamped = min(max(t, _OFFSET_MIN), _OFFSET_MAX)
    local = (_EPOCH + timedelta(microseconds=clamped)).astimezone(zone)
    offset = local.utcoffset()
    assert offset is not None
    return offset // timedelta(microseconds=1)


def inside(t: int, zone: ZoneInfo, windows: SendWindows) -> bool:
    """Whether ``t``'s local wall time is in [open, close) of a window on an allowed
    local weekday of the day the window opens."""
    return _inside_wall(t + utc_offset(t, zone), windows)


def next_opening(t: int, zone: ZoneInfo, windows: SendWindows) -> int | None:
    """The first instant >= ``t`` inside a window (``t`` itself when inside), or
    None when there is none in the next :data:`SEARCH_DAYS` days (which the
    check's rules make impossible with tzdata's zones)."""
    return _first_inside(t, min(t + SEARCH, TIME_MAX), zone, windows)


def decide(due_at: int, zone: ZoneInfo, windows: SendWindows, policy: Policy) -> int | None:
    """When a firing due at ``due_at`` is sent: ``due_at`` inside a window; outside,
    the next opening under ``defer`` (None if further than ``max_delay``), None
    under ``drop``."""
    if inside(due_at, zone, windows):
        return due_at
    if policy.kind == "drop":
        return None
    limit = SEARCH if policy.max_delay is None else min(SEARCH, policy.max_delay + 1)
    return _first_inside(due_at, min(due_at + limit, TIME_MAX), zone, windows)


def _first_inside(t: int, limit: int, zone: ZoneInfo, windows: SendWindows) -> int | None:
    """The first instant in [t, limit) inside a window, segment by segment."""
    start = t
    while start < limit:
        end = min(start + SEGMENT, limit)
        offset = utc_offset(start, zone)
        if utc_offset(end, zone) != offset:
            end = _transition(start, end, offset, zone)
        found = _first_in_segment(start, end, offset, windows)
        if found is not None:
            return found
        start = end
    return None


def _transition(low: int, high: int, offset: int, zone: ZoneInfo) -> int:
    """The first instant in (low, high] whose offset is not ``offset`` (low has it,
    high has not): bisection to the microsecond."""
    while high - low > 1:
        middle = (low + high) // 2
        if utc_offset(middle, zone) == offset:
            low = middle
        else:
            high = middle
    return high


def _first_in_segment(start: int, end: int, offset: int, windows: SendWindows) -> int | None:
    """The first instant in [start, end) inside a window, the offset being constant."""
    wall, wall_end = start + offset, end + offset
    if _inside_wall(wall, windows):
        return start
    first: int | None = None
    for day in range(wall // MICROS_PER_DAY, (wall_end - 1) // MICROS_PER_DAY + 1):
        weekday = (day + _EPOCH_WEEKDAY) % 7
        for w in windows.windows:
            opening = day * MICROS_PER_DAY + w.open * MINUTE
            if weekday in w.days and wall < opening < wall_end:
                first = opening if first is None else min(first, opening)
    return None if first is None else first - offset


def _inside_wall(wall: int, windows: SendWindows) -> bool:
    """Whether local wall time ``wall`` (micros since local 1970-01-01 00:00) is inside."""
    day, since_midnight = divmod(wall, MICROS_PER_DAY)
    weekday = (day + _EPOCH_WEEKDAY) % 7
    minute = since_midnight // MINUTE  # open and close are whole minutes
    for w in windows.windows:
        if w.crosses_midnight:
            if (weekday in w.days and minute >= w.open) or (
                (weekday - 1) % 7 in w.days and minute < w.close
            ):
                return True
        elif weekday in w.days and w.open <= minute < w.close:
            return True
    return False
