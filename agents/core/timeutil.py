"""Time helpers for the pure core: RFC 3339 parsing and ISO 8601 durations.

Everything in the core works with timezone-aware UTC datetimes; naive times are
rejected at the edge (see :mod:`agents.core.validation`) because their meaning
depends on the producer's machine.

Instants are held as integer microseconds since the epoch, which never overflow;
only turning one into text or a calendar date can.  The functions here that do
are total: :func:`iso` writes an instant beyond the years 1..9999 a datetime holds
as the nearest end of that range, and the month arithmetic (:func:`month_of`,
:func:`month_start_at`) is plain integer calendar arithmetic, valid for any
instant (docs/time.md "Time").
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta, timezone

from schemas.records import Threshold

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS_PER_SECOND = 1_000_000
MICROS_PER_DAY = 86_400 * MICROS_PER_SECOND
# The instants a datetime holds (years 1..9999, UTC), in micros since the epoch.
TIME_MIN = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
TIME_MAX = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
# The earliest event time accepted by default (RETENTION_MIN_EVENT_TIME): an
# absolute instant, never relative to today, so that a replay or a report of old
# history gives the same answer on any day (docs/time.md "Time").
DEFAULT_MIN_EVENT_TIME = 0  # 1970-01-01T00:00:00Z

_DURATION = re.compile(
    r"P(?:(?P<weeks>[0-9]+)W)?(?:(?P<days>[0-9]+)D)?"
    r"(?:T(?:(?P<hours>[0-9]+)H)?(?:(?P<minutes>[0-9]+)M)?"
    r"(?:(?P<seconds>[0-9]+)(?:\.(?P<fraction>[0-9]+))?S)?)?",
    re.ASCII,
)
# RFC 3339 (section 5.6), ASCII digits only.  The checks the pattern cannot make
# (offset range, leap second, calendar) are in parse_timestamp.
_RFC3339 = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?P<offset>[Zz]|(?P<sign>[+-])(?P<oh>[0-9]{2}):(?P<om>[0-9]{2}))?",
    re.ASCII,
)
# The longest duration any setting may hold (100 years): the sum of any event
# time the processor accepts and a few such durations stays inside the years
# 1..9999 that datetime can represent.
MAX_DURATION_DAYS = 36_500
MAX_DURATION = MAX_DURATION_DAYS * 86_400 * 1_000_000  # micros


class TimeFormatError(ValueError):
    """A timestamp or duration that cannot be read; ``code`` is the dead-letter code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_duration(text: str) -> timedelta:
    """Parse an ISO 8601 duration such as ``P14D``, ``PT24H`` or ``P1W``.

    Months and years are refused: their length varies, and a threshold must mean
    the same number of seconds in every replay.  The value is computed exactly
    (fractions of a second are truncated to the microsecond) and may not exceed
    :data:`MAX_DURATION_DAYS`; anything longer raises ``ValueError``, never
    ``OverflowError``.
    """
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise ValueError(f"not an ISO 8601 duration (use e.g. P14D or PT24H): {text!r}")
    groups = {k: v for k, v in match.groupdict().items() if v is not None and k != "fraction"}
    if any(len(v) > 12 for v in groups.values()):  # no int() of thousands of digits
        raise ValueError(
            f"duration {text.strip()[:40]!r} is longer than the maximum of "
            f"P{MAX_DURATION_DAYS}D (100 years)"
        )
    g = {k: int(v) for k, v in groups.items()}
    fraction = (match.group("fraction") or "")[:6].ljust(6, "0")
    seconds = (
        g.get("weeks", 0) * 7 * 86400
        + g.get("days", 0) * 86400
        + g.get("hours", 0) * 3600
        + g.get("minutes", 0) * 60
        + g.get("seconds", 0)
    )
    if seconds > MAX_DURATION_DAYS * 86400:
        raise ValueError(
            f"duration {text.strip()[:40]!r} is longer than the maximum of "
            f"P{MAX_DURATION_DAYS}D (100 years)"
        )
    return timedelta(seconds=seconds, microseconds=int(fraction))


def format_duration(value: timedelta) -> str:
    """Render a timedelta as the shortest ISO 8601 duration (``P14D``, ``PT36H``)."""
    total = int(value.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    out = "P"
    if days:
        out += f"{days}D"
    if hours or minutes or seconds or not days:
        out += "T"
        if hours:
            out += f"{hours}H"
        if minutes:
            out += f"{minutes}M"
        if seconds or not (hours or minutes):
            out += f"{seconds}S"
    return out


@functools.lru_cache(maxsize=4096)
def duration_record(micros: int) -> Threshold:
    """A duration (micros) as the outputs carry it: ISO 8601 and whole seconds.

    Cached: the ladder steps and the attribution window are a handful of values,
    and a record is built for every firing."""
    return Threshold(format_duration(timedelta(microseconds=micros)), micros // MICROS_PER_SECOND)


def parse_timestamp(text: object) -> datetime:
    """Parse an RFC 3339 timestamp with an offset into an aware UTC datetime.

    * the offset must be ``Z`` or ``+hh:mm`` / ``-hh:mm`` with hh <= 23, mm <= 59;
    * more than 6 fractional digits are truncated to the microsecond;
    * a leap second (``:60``) is read as the last microsecond of that minute
      (``23:59:60Z`` is ``23:59:59.999999Z``), so it sorts after every earlier
      instant of the minute and before the next minute.
    """
    if not isinstance(text, str):
        raise TimeFormatError("invalid_timestamp", "occurred_at must be an RFC 3339 string")
    match = _RFC3339.fullmatch(text)
    if not match:
        raise TimeFormatError("invalid_timestamp", f"occurred_at is not RFC 3339: {text[:64]!r}")
    if match.group("offset") is None:
        raise TimeFormatError(
            "naive_timestamp",
            f"occurred_at has no UTC offset (add 'Z' or '+hh:mm'): {text[:64]!r}",
        )
    offset = timedelta(0)
    if match.group("sign"):
        oh, om = int(match.group("oh")), int(match.group("om"))
        if oh > 23 or om > 59:
            raise TimeFormatError(
                "invalid_timestamp", f"occurred_at has an impossible UTC offset: {text[:64]!r}"
            )
        offset = timedelta(hours=oh, minutes=om) * (-1 if match.group("sign") == "-" else 1)
    hour, minute, second = (int(match.group(k)) for k in ("hour", "minute", "second"))
    micros = int((match.group("fraction") or "")[:6].ljust(6, "0"))
    if second == 60:  # leap second: the last microsecond of the minute
        second, micros = 59, 999_999
    try:
        year, month, day = (int(x) for x in match.group("date").split("-"))
        parsed = datetime(year, month, day, hour, minute, second, micros, timezone(offset))
    except ValueError as exc:
        raise TimeFormatError(
            "invalid_timestamp", f"occurred_at is not a valid time: {exc}"
        ) from None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # Year 0001 with a positive offset is an instant before 0001-01-01T00:00:00Z,
        # earlier than any accepted event time; year 9999 with a negative one is past
        # 9999-12-31T23:59:59.999999Z, later than any: the codes say which side
        # (README "Inputs").
        if offset > timedelta(0):
            code, side = "early_timestamp", "before 0001-01-01T00:00:00Z"
        else:
            code, side = "future_timestamp", "after 9999-12-31T23:59:59.999999Z"
        message = f"occurred_at is out of range ({side}): {text[:64]!r}"
        raise TimeFormatError(code, message) from None


# Forms parse_timestamp reads that RFC 3339 date-time validators (JSON Schema
# `format: date-time`) refuse: a space for the `T`, and a `:60` second.  They are
# accepted, counted and logged for now; a later version refuses them (README "Inputs").
LENIENT_SPACE = "space_separator"
LENIENT_LEAP_SECOND = "leap_second"
LENIENT_FORMS = (LENIENT_SPACE, LENIENT_LEAP_SECOND)


def lenient_form(text: str) -> str | None:
    """Which lenient form a timestamp that :func:`parse_timestamp` read is in, if any.

    Positions are fixed once the pattern matched: the separator is character 10,
    the seconds characters 17-18.  A space wins over a leap second.
    """
    if text[10] == " ":
        return LENIENT_SPACE
    if text[17:19] == "60":
        return LENIENT_LEAP_SECOND
    return None


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch: the compact, exact form kept in state."""
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def iso(value: datetime | int) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix (micros given as int are converted).

    Exactly ``datetime.isoformat()``'s text (fraction only when non-zero); ints
    take a fast path, as every output record formats several of them.  An int
    beyond the years 1..9999 (a computed instant only: a due time past 9999, a
    clock before year 1; accepted event times are bounded) is written as the
    nearest end of that range, never an OverflowError.
    """
    if isinstance(value, int):
        return _iso_micros(min(max(value, TIME_MIN), TIME_MAX))
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


# An output record formats the same few instants of a customer again and again
# (anchor, due time, the context's last activity): 7 in 10 calls of a run repeat.
@functools.lru_cache(maxsize=16384)
def _iso_micros(value: int) -> str:
    days, rest = divmod(value, MICROS_PER_DAY)
    seconds, micros = divmod(rest, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    if micros:
        return f"{_day(days)}T{hour:02d}:{minute:02d}:{second:02d}.{micros:06d}Z"
    return f"{_day(days)}T{hour:02d}:{minute:02d}:{second:02d}Z"


@functools.lru_cache(maxsize=4096)
def _day(days: int) -> str:
    """The date ``days`` after the epoch (years 1..9999: :func:`iso` clamps first)."""
    return (EPOCH + timedelta(days=days)).date().isoformat()


# --- calendar months, by integer arithmetic ------------------------------------------
#
# Months are numbered k = 12 * year + (month - 1) in the proleptic Gregorian
# calendar (Howard Hinnant's days_from_civil / civil_from_days), so a report can
# step through months at either end of the datetime range, or past it, without
# building a datetime.


def _civil(days: int) -> tuple[int, int]:
    """(year, month) of the day ``days`` after 1970-01-01."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month


def _days_from_civil(year: int, month: int) -> int:
    """Days from 1970-01-01 to the first of ``month`` of ``year``."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def month_of(t: int) -> int:
    """The number ``12 * year + month - 1`` of the UTC calendar month holding ``t``."""
    year, month = _civil(t // MICROS_PER_DAY)
    return year * 12 + month - 1


def month_start_at(k: int) -> int:
    """The first instant (micros) of month number ``k`` (see :func:`month_of`)."""
    year, m0 = divmod(k, 12)
    return _days_from_civil(year, m0 + 1) * MICROS_PER_DAY


def month_name(k: int) -> str:
    """Month number ``k`` as a report labels it: ``"2026-03"``."""
    year, m0 = divmod(k, 12)
    return f"{year:04d}-{m0 + 1:02d}"


def month_number(label: str) -> int:
    """The inverse of :func:`month_name`."""
    year, _, month = label.rpartition("-")
    return int(year) * 12 + int(month) - 1
