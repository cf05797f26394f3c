"""Send windows in a rules file, checked (docs/send-windows.md "In the rules file"):
the file's ``default_timezone``, its ``[send_window]`` default and each rule's own
``send_window`` (a table that replaces the file's, or ``"none"``).

A table's own check is :func:`agents.core.windows.parse_send_window`; here its
problems get their place in the file (the path under the rule, and a line found by
scanning the text), and each rule gets its effective setting with the file's
default zone in it, so that the rule's version changes with the window and with
the default zone only when it has a window (docs/rules.md "Send windows").
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from typing import Any

from agents.core.rules.check_base import BaseChecker, one_based
from agents.core.rules.model import HOUR, Problem
from agents.core.timeutil import MICROS_PER_DAY, format_duration
from agents.core.windows import (
    DAY_GROUPS,
    DAY_NAMES,
    SendWindowSetting,
    parse_send_window,
    zone_problem,
)

# The zone of a customer whose events carried none, when the file names no default.
DEFAULT_ZONE = "UTC"
# A rule's send_window that bypasses every window (the file's default too).
NONE = "none"
_FIRST_KEY = re.compile(r"[a-z_]+")
_SUBTABLE = re.compile(r"\s*\[\[?\s*send_window\.")


class WindowChecks(BaseChecker):
    """The file's default zone and window, and each rule's effective window."""

    def default_timezone(self, doc: dict[str, Any]) -> str:
        """The file's ``default_timezone`` (UTC when unset or wrong: a wrong one is a
        problem, so the rule set is never built with it)."""
        if "default_timezone" not in doc:
            return DEFAULT_ZONE
        name = doc["default_timezone"]
        problem = zone_problem(name, "default_timezone")
        if problem is not None:
            self.add(
                problem.path,
                f"{problem.message}; it is the zone of a customer whose events carry none",
                self.lines.top("default_timezone"),
            )
            return DEFAULT_ZONE
        assert isinstance(name, str)
        return name

    def file_window(self, doc: dict[str, Any], default_zone: str) -> SendWindowSetting | None:
        """The file's ``[send_window]``: every rule's window unless it has its own."""
        if "send_window" not in doc:
            return None
        header = one_based(self.lines.section("send_window"))
        line = header if header is not None else self.lines.top("send_window")
        if line is None:  # written only as [[send_window.windows]] tables
            line = next((i for i, x in enumerate(self.lines.lines, 1) if _SUBTABLE.match(x)), None)
        raw = doc["send_window"]
        if not isinstance(raw, dict):
            self.add(
                "send_window",
                "the file's send_window is a table ([send_window] with windows = [...]); "
                f'to send at any time leave it out ("{NONE}" is for one rule\'s send_window)',
                line,
            )
            return None
        return self._setting(raw, "send_window", line, default_zone)

    def rule_window(
        self,
        raw: dict[str, Any],
        path: str,
        line: int | None,
        file_window: SendWindowSetting | None,
        default_zone: str,
    ) -> SendWindowSetting | None:
        """A rule's effective window: its own table, else the file's; None with
        ``send_window = "none"``.  ``line``: the line of the rule's send_window."""
        if "send_window" not in raw:
            return file_window
        value = raw["send_window"]
        if value == NONE:
            return None
        where = f"{path}.send_window"
        if not isinstance(value, dict):
            shown = repr(value)[:40]
            self.add(
                where,
                f'{shown} is not a send window: write "{NONE}" (sent at the due time, '
                "whatever the file's [send_window] says) or a table such as "
                '{ windows = [{ days = "weekdays", open = "09:00", close = "20:00" }] }',
                line,
            )
            return None
        return self._setting(value, where, line, default_zone)

    def _setting(
        self, raw: dict[str, Any], path: str, line: int | None, default_zone: str
    ) -> SendWindowSetting | None:
        setting, problems = parse_send_window(raw, path)
        for problem in problems:
            self.add(problem.path, problem.message, self._line(problem, path, line))
        if setting is None:
            return None
        return dataclasses.replace(setting, default_zone=default_zone)

    def _line(self, problem: Problem, path: str, line: int | None) -> int | None:
        """The line of a problem inside a send_window: in a table written as a section
        (``[send_window]``, ``[rule.send_window]``) the line of its key; in an inline
        table the table's own line."""
        if line is None or not self.lines.lines[line - 1].lstrip().startswith("["):
            return line
        key = _FIRST_KEY.match(problem.path.removeprefix(path).lstrip("."))
        return line if key is None else self.lines.key(line, key.group())


def describe(setting: SendWindowSetting) -> str:
    """One line for people: ``weekdays 09:00-20:00 (customer zone, default UTC),
    defer max PT36H``."""
    windows = "; ".join(
        f"{_days(w.days)} {_hhmm(w.open)}-{_hhmm(w.close)}" for w in setting.windows.windows
    )
    if setting.zone is not None:
        zone = f"zone {setting.zone}"
    else:
        zone = f"customer zone, default {setting.default_zone}"
    policy: str = setting.policy.kind
    if setting.policy.max_delay is not None:
        policy += f" max {_duration(setting.policy.max_delay)}"
    return f"{windows} ({zone}), {policy}"


def _duration(micros: int) -> str:
    # Whole days or whole hours as people write them ("PT36H", not "P1DT12H").
    if micros % MICROS_PER_DAY == 0:
        return f"P{micros // MICROS_PER_DAY}D"
    if micros % HOUR == 0:
        return f"PT{micros // HOUR}H"
    return format_duration(timedelta(microseconds=micros))


def _days(days: frozenset[int]) -> str:
    for name, group in DAY_GROUPS.items():
        if days == group:
            return name
    return ",".join(DAY_NAMES[d] for d in sorted(days))


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
