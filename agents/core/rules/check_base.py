"""What every part of the rules check shares (docs/rules.md "Checks"): the problems
found so far, the lines of the text, and the checks of one value - a duration, a
number, a flag, a text - each reporting where it is and what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from agents.core.rules.model import Problem
from agents.core.timeutil import parse_duration

MAX_TEXT = 500
# Where a key of a section is: its line.
Where = Callable[[str], int | None]
# A header that ends a rule's or a section's lines (a [rule.audience] table does not).
_SECTION = re.compile(
    r"\s*\[\[|\s*\[\s*(?:guardrails|lifecycle|send_window|model(?:\.gamma_gamma)?)\s*\]"
)


class Lines:
    """Line numbers found by scanning the text: a section's header, a key in it."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.rule_headers = [
            i for i, x in enumerate(self.lines) if re.match(r"\s*\[\[\s*rule\s*\]\]", x)
        ]

    def section(self, name: str) -> int | None:
        pattern = re.compile(rf"\s*\[\s*{re.escape(name)}\s*\]")
        return next((i for i, x in enumerate(self.lines) if pattern.match(x)), None)

    def top(self, key: str) -> int | None:
        """The 1-based line of a top-level ``key = ...`` (before the first table)."""
        pattern = re.compile(rf"\s*{re.escape(key)}\s*=")
        for i, line in enumerate(self.lines):
            if line.lstrip().startswith("["):
                return None
            if pattern.match(line):
                return i + 1
        return None

    def rule(self, index: int) -> int | None:
        return self.rule_headers[index] if index < len(self.rule_headers) else None

    def key(self, header: int | None, key: str) -> int | None:
        """The 1-based line of ``key = ...`` (or of a ``[rule.key]`` table) in the
        section whose header is on line ``header``; the header's line if not found."""
        if header is None:
            return None
        pattern = re.compile(rf"\s*(?:{re.escape(key)}\s*=|\[\s*rule\.{re.escape(key)}\s*\])")
        for i in range(header, len(self.lines)):
            if _SECTION.match(self.lines[i]):
                break
            if pattern.match(self.lines[i]):
                return i + 1
        return header


class BaseChecker:
    """The problems of one rules file, and the checks of its single values."""

    def __init__(self, text: str) -> None:
        self.problems: list[Problem] = []
        self.lines = Lines(text)

    def add(self, path: str, message: str, line: int | None = None) -> None:
        self.problems.append(Problem(path, message, line))

    # --- sections and values -----------------------------------------------------------

    def table(
        self, raw: Any, path: str, known: tuple[str, ...], line: int | None
    ) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.add(path, "this should be a table of settings", line)
            return {}
        for key in raw:
            if key not in known:
                self.add(
                    f"{path}.{key}",
                    f"unknown setting {key!r} (known: {', '.join(known)})",
                    self.key_line(line, key),
                )
        return raw

    def key_line(self, header: int | None, key: str) -> int | None:
        return self.lines.key(header, key)

    def micros(self, raw: Any, at: str, line: int | None, *, zero: bool = False) -> int | None:
        if not isinstance(raw, str):
            self.add(at, f'{raw!r} is not a duration: write e.g. "P7D" or "PT24H"', line)
            return None
        try:
            micros = parse_duration(raw) // timedelta(microseconds=1)
        except ValueError as exc:
            self.add(at, str(exc), line)
            return None
        if micros < 0 or (micros == 0 and not zero):
            self.add(
                at,
                f"{raw} is {'negative' if micros < 0 else 'zero'}: "
                "a duration here must be longer than zero",
                line,
            )
            return None
        return micros

    def duration(
        self, d: dict[str, Any], key: str, path: str, at: Where, *, default: int, zero: bool = False
    ) -> int:
        if key not in d:
            return default
        micros = self.micros(d[key], f"{path}.{key}", at(key), zero=zero)
        return default if micros is None else micros

    def number(
        self, d: dict[str, Any], key: str, path: str, low: float, high: float, at: Where
    ) -> float | None:
        if key not in d:
            return None
        value = d[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            self.add(f"{path}.{key}", f"{key} is a number from {low:g} to {high:g}", at(key))
            return None
        return float(value)

    def whole(
        self, d: dict[str, Any], key: str, path: str, low: int, high: int, at: Where
    ) -> int | None:
        if key not in d:
            return None
        value = d[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.add(f"{path}.{key}", f"{key} is a whole number from {low} to {high}", at(key))
            return None
        return value

    def flag(self, d: dict[str, Any], key: str, path: str, default: bool, at: Where) -> bool:
        value = d.get(key, default)
        if not isinstance(value, bool):
            self.add(f"{path}.{key}", f"{key} is true or false", at(key))
            return default
        return value

    def text(
        self, d: dict[str, Any], key: str, path: str, at: Where, *, limit: int = MAX_TEXT
    ) -> str | None:
        value = d.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            self.add(
                f"{path}.{key}", f"{key} is a non-empty text of at most {limit} characters", at(key)
            )
            return None
        return value


def one_based(index: int | None) -> int | None:
    return None if index is None else index + 1
