"""Times given on the command line: a day or an instant (README "CLI")."""

from __future__ import annotations

from datetime import UTC, date, datetime

from agents.core.timeutil import TimeFormatError, parse_timestamp, to_micros


def date_or_time(text: str) -> int:
    """Parse ``YYYY-MM-DD`` (00:00 UTC) or an RFC 3339 time with offset, to micros."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return to_micros(datetime(day.year, day.month, day.day, tzinfo=UTC))
        return to_micros(parse_timestamp(text))
    except TimeFormatError as exc:
        if exc.code == "naive_timestamp":
            raise ValueError(f"{text!r} has no UTC offset: add 'Z' or '+hh:mm'") from None
    except ValueError:
        pass
    raise ValueError(
        f"expected YYYY-MM-DD or an RFC 3339 time such as 2026-03-01T00:00:00Z, got {text!r}"
    )
