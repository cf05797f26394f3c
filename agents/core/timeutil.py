"""Time helpers for the pure core: RFC 3339 parsing and ISO 8601 durations.

Everything in the core works with timezone-aware UTC datetimes; naive times are
rejected at the edge (see :mod:`agents.core.validation`) because their meaning
depends on the producer's machine.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?$"
)


class TimeFormatError(ValueError):
    """A timestamp or duration that cannot be read; ``code`` is the dead-letter code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_duration(text: str) -> timedelta:
    """Parse an ISO 8601 duration such as ``P14D``, ``PT24H`` or ``P1W``.

    Months and years are refused: their length varies, and a threshold must mean
    the same number of seconds in every replay.
    """
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or text.strip() in ("P", "PT"):
        raise ValueError(f"not an ISO 8601 duration (use e.g. P14D or PT24H): {text!r}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    return timedelta(
        weeks=parts.get("weeks", 0),
        days=parts.get("days", 0),
        hours=parts.get("hours", 0),
        minutes=parts.get("minutes", 0),
        seconds=parts.get("seconds", 0),
    )


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


def parse_timestamp(text: object) -> datetime:
    """Parse an RFC 3339 timestamp with an offset into an aware UTC datetime."""
    if not isinstance(text, str):
        raise TimeFormatError("invalid_timestamp", "occurred_at must be an RFC 3339 string")
    match = _RFC3339.match(text)
    if not match:
        raise TimeFormatError("invalid_timestamp", f"occurred_at is not RFC 3339: {text[:64]!r}")
    if match.group("offset") is None:
        raise TimeFormatError(
            "naive_timestamp",
            f"occurred_at has no UTC offset (add 'Z' or '+hh:mm'): {text[:64]!r}",
        )
    normalized = text.replace("z", "Z").replace("Z", "+00:00").replace("t", "T").replace(" ", "T")
    # datetime.fromisoformat accepts at most 6 fractional digits.
    normalized = re.sub(r"(\.\d{6})\d+", r"\1", normalized)
    try:
        parsed = datetime.fromisoformat(normalized)
    except ValueError as exc:
        raise TimeFormatError(
            "invalid_timestamp", f"occurred_at is not a valid time: {exc}"
        ) from exc
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. year 0001 with a positive offset
        message = f"occurred_at is out of range: {text[:64]!r}"
        raise TimeFormatError("invalid_timestamp", message) from None


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch: the compact, exact form kept in state."""
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def iso(value: datetime | int) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix (micros given as int are converted)."""
    if isinstance(value, int):
        value = from_micros(value)
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


MICROS_PER_SECOND = 1_000_000
MICROS_PER_DAY = 86_400 * MICROS_PER_SECOND
