"""Send windows read by brute force: the offline reference's own reading of
docs/send-windows.md, against which agents/core/windows.py is tested.

Nothing is shared with the engine's reading but the zone data: the
``send_window`` table is read here from the plain data (assumed to have passed
the rules check), each instant is turned into a local date and time with
``datetime.astimezone``, and an opening is found by looking at every minute
after the due time, plus the exact instant each offset change takes effect (the
first valid instant after a skipped hour need not fall on a minute of the
scan).  Slow, obvious, and independent.

The reference decides thousands of firings, too many for a minute-by-minute scan
each, so :func:`opening` finds the same instant from a short list of candidates
(the due time, each local opening in both folds, each offset change, found by
hourly sampling and bisection) checked with the same :func:`_inside`; a property
test holds it equal to :func:`next_opening` (tests/unit/offline/test_windows.py).
Zones are read here too, from the ``tzdata`` package's own files, never the
host's (docs/send-windows.md "Zones").
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from agents.core.timeutil import parse_duration

# The same horizon as the engine's (docs/send-windows.md "Semantics"): two of
# every weekday, whatever a transition skips.
HORIZON = timedelta(days=15)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_GROUPS = {"weekdays": _NAMES[:5], "weekends": _NAMES[5:], "all": _NAMES}


@dataclass(frozen=True)
class Hours:
    """One window as the brute force holds it: weekday names and "HH:MM" texts."""

    days: tuple[str, ...]
    open: tuple[int, int]
    close: tuple[int, int]


def read_windows(table: Mapping[str, Any]) -> list[Hours]:
    out = []
    for w in table["windows"]:
        days = w["days"]
        names = _GROUPS.get(days, (days,)) if isinstance(days, str) else tuple(days)
        out.append(Hours(names, _hm(w["open"]), _hm(w["close"])))
    return out


def _hm(text: str) -> tuple[int, int]:
    hours, minutes = text.split(":")
    return int(hours), int(minutes)


def local(t: int, zone: ZoneInfo) -> datetime:
    return (_EPOCH + t * _US).astimezone(zone)


def inside(t: int, zone: ZoneInfo, table: Mapping[str, Any]) -> bool:
    """Local wall time in [open, close) on an allowed day the window opened."""
    return _inside(t, zone, read_windows(table))


def _inside(t: int, zone: ZoneInfo, hours: list[Hours]) -> bool:
    at = local(t, zone)
    today = _NAMES[at.weekday()]
    yesterday = _NAMES[(at.date() - timedelta(days=1)).weekday()]
    now = (at.hour, at.minute)  # compared with whole minutes, so seconds do not matter
    for w in hours:
        if w.open < w.close or w.close == (24, 0):
            if today in w.days and w.open <= now < w.close:
                return True
        elif (today in w.days and now >= w.open) or (yesterday in w.days and now < w.close):
            return True
    return False


def next_opening(t: int, zone: ZoneInfo, table: Mapping[str, Any]) -> int | None:
    """The first instant >= t inside, scanning minute by minute for 15 days."""
    hours = read_windows(table)
    if _inside(t, zone, hours):
        return t
    minute = 60_000_000
    end = t + HORIZON // _US
    before, offset = t, local(t, zone).utcoffset()
    x = (t // minute + 1) * minute
    while x < end:
        now = local(x, zone).utcoffset()
        if now != offset:
            change = _change(before, x, zone)
            if change < x and _inside(change, zone, hours):
                return change
            offset = now
        if _inside(x, zone, hours):
            return x
        before, x = x, x + minute
    return None


def _change(before: int, after: int, zone: ZoneInfo) -> int:
    """The first whole second in (before, after] with the offset ``after`` has
    (tzdata's transitions fall on whole seconds)."""
    second = 1_000_000
    target = local(after, zone).utcoffset()
    low, high = before // second, -(-after // second)
    while high - low > 1:
        middle = (low + high) // 2
        if local(middle * second, zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return max(high * second, before + 1)


def decide(due_at: int, zone: ZoneInfo, table: Mapping[str, Any]) -> int | None:
    """The send time of a firing due at ``due_at``, or None when it is dropped."""
    if inside(due_at, zone, table):
        return due_at
    if table.get("policy", "defer") == "drop":
        return None
    opening = next_opening(due_at, zone, table)
    if opening is None or "max_delay" not in table:
        return opening
    delay = parse_duration(table["max_delay"]) // _US
    return opening if opening - due_at <= delay else None


# --- zones --------------------------------------------------------------------------


@functools.cache
def tzdata_zones() -> frozenset[str]:
    """The zone names of the pinned ``tzdata`` package's own list, its ``Factory``
    placeholder left out."""
    listed = importlib.resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(listed.split()) - {"Factory"}


@functools.cache
def zone(name: str) -> ZoneInfo | None:
    """The package's file for ``name``, not zoneinfo.ZoneInfo(name): that reads the host's
    first.  One object per name (datetime compares zones by identity)."""
    if not isinstance(name, str) or len(name) > 64 or name not in tzdata_zones():
        return None
    try:
        path = importlib.resources.files("tzdata.zoneinfo").joinpath(*name.split("/"))
        with path.open("rb") as f:
            return ZoneInfo.from_file(f, key=name)
    except (OSError, ValueError):
        return None


def known_zone(name: object) -> bool:
    return isinstance(name, str) and zone(name) is not None


# --- the same answers, faster --------------------------------------------------------

_HOUR = 3_600_000_000
_DAY = 24 * _HOUR


def opening(t: int, zone: ZoneInfo, hours: tuple[Hours, ...], limit: int) -> int | None:
    """The first instant in [t, t + limit] inside, the same as :func:`next_opening`
    bounded by ``limit``: inside changes from no to yes only at a local opening
    (in either fold) or at an offset change, so those and ``t`` are the only
    candidates.  Looked for a day at a time, so a near opening is found soon."""
    listed = list(hours)
    if _inside(t, zone, listed):
        return t
    end = min(t + limit, t + HORIZON // _US - 1)
    start = t
    while start < end:
        stop = min(start + _DAY, end)
        candidates = set(_changes(start, stop, zone))
        day = local(start, zone).date() - timedelta(days=1)
        last = local(stop, zone).date() + timedelta(days=1)
        while day <= last:
            name = _NAMES[day.weekday()]
            for w in hours:
                if name in w.days:
                    candidates.update(_instants(day, w.open, zone))
            day += timedelta(days=1)
        for c in sorted(x for x in candidates if start < x <= stop):
            if _inside(c, zone, listed):
                return c
        start = stop
    return None


def _instants(day: date, hm: tuple[int, int], zone: ZoneInfo) -> list[int]:
    """The instants whose local wall time is ``day`` at ``hm`` (none in a skipped hour,
    two in a repeated one)."""
    wall = datetime.combine(day, time(*hm))
    out = []
    for fold in (0, 1):
        at = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if at.astimezone(zone).replace(tzinfo=None) == wall:
            out.append((at - _EPOCH) // _US)
    return out


def _changes(t: int, end: int, zone: ZoneInfo) -> list[int]:
    """Every offset change in (t, end], sampled hourly (no zone changes twice within
    an hour) and placed to the second."""
    out = []
    before, offset = t, local(t, zone).utcoffset()
    x = t + _HOUR
    while True:
        x = min(x, end)
        now = local(x, zone).utcoffset()
        if now != offset:
            out.append(_change(before, x, zone))
            offset = now
        if x >= end:
            return out
        before, x = x, x + _HOUR


@functools.lru_cache(maxsize=65536)
def send_time(
    due_at: int, name: str, windows: tuple[Hours, ...], policy: str, max_delay: int | None
) -> int | None:
    """:func:`decide` for windows already read, through :func:`opening`."""
    zone_ = zone(name)
    assert zone_ is not None
    if _inside(due_at, zone_, list(windows)):
        return due_at
    if policy == "drop":
        return None
    limit = HORIZON // _US if max_delay is None else max_delay
    return opening(due_at, zone_, windows, limit)
