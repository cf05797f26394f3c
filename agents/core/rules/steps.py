"""Step kinds: how long after the anchor each step of a ladder is due
(docs/rules.md "Rules file")."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from agents.core.rules.abstract import Facts, Step
from agents.core.timeutil import MAX_DURATION, format_duration


@dataclass(frozen=True, slots=True)
class Fixed(Step):
    """A fixed duration after the anchor (``"P7D"``)."""

    micros: int
    kind: ClassVar[str] = "fixed"

    def threshold(self, facts: Facts) -> int:
        return self.micros

    @property
    def least(self) -> int:
        return self.micros

    def label(self) -> str:
        return format_duration(timedelta(microseconds=self.micros))

    def canonical(self) -> Any:
        return self.micros


@dataclass(frozen=True, slots=True)
class Cadence(Step):
    """k x the customer's own median gap between orders, never below ``floor``
    (``{ cadence = 2.0, floor = "P7D" }``: today's overdue rule)."""

    multiplier: float
    floor: int
    kind: ClassVar[str] = "cadence"

    def threshold(self, facts: Facts) -> int:
        return cadence_threshold(facts.order_times, self.multiplier, self.floor)

    @property
    def least(self) -> int:
        return self.floor

    def label(self) -> str:
        floor = format_duration(timedelta(microseconds=self.floor))
        return f"max({floor}, {self.multiplier:g}x median gap)"

    def canonical(self) -> Any:
        return {"cadence": self.multiplier, "floor": self.floor}


def cadence_threshold(order_times: list[int], multiplier: float, floor: int) -> int:
    """max(floor, multiplier x median gap between consecutive orders), in micros,
    at most 100 years (``MAX_DURATION``).

    The median of an even number of gaps is the mean of the middle two, rounded
    down to a microsecond; ``order_times`` is ascending (the newest orders kept).
    """
    gaps = sorted(b - a for a, b in itertools.pairwise(order_times))
    if not gaps:
        return floor
    n = len(gaps)
    median = gaps[n // 2] if n % 2 else (gaps[n // 2 - 1] + gaps[n // 2]) // 2
    # Capped at the longest duration a setting may hold, so that a due time
    # stays a representable datetime even for orders centuries apart.
    return min(max(floor, int(median * multiplier)), MAX_DURATION)
