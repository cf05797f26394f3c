"""Send windows read by brute force: the offline reference's own reading of
docs/send-windows.md, against which agents/core/windows.py is tested.

Nothing is shared with the engine's reading but the zone data: the
``send_window`` table is read here from the plain data (assumed to have passed
the rules check), each instant is turned into a local date and time with
``datetime.astimezone``, and an opening is found by looking at every minute
after the due time, plus the exact instant each offset change takes effect (the
first valid instant after a skipped hour need not fall on a minute of the
scan).  Slow, obvious, and independent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
