"""Step kinds: how long after the anchor each step of a ladder is due
(docs/rules.md "Rules file")."""

from __future__ import annotations

import calendar
import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

from agents.core.prediction import CrossingSince, NbdParams
from agents.core.rules.abstract import Facts, Step
from agents.core.timeutil import EPOCH, MAX_DURATION, MICROS_PER_DAY, TIME_MAX, format_duration


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


@dataclass(frozen=True, slots=True)
class PAliveBelow(Step):
    """Due when P(alive) falls below ``p`` with no new order (``{ p_alive_below = 0.6
    }``, docs/prediction.md "The churn_risk rule"), under the model ``params`` of
    the file's ``[model]``.  Anchored on the last order: every order restarts the
    ladder with the customer's new inputs.

    The threshold is the closed-form crossing, rounded up to the whole minute
    (:func:`agents.core.prediction.crossing_at`), less the anchor; 0 when P(alive)
    is already at or below ``p`` at the anchor (the engine records the step
    ``skipped`` at the anchor and moves on); None when it never falls (BG/NBD, one
    order day), or when the crossing is more than 100 years after the anchor:
    nothing due until the next order."""

    p: float
    params: NbdParams
    # The last inputs and threshold, ``[last, first, order_days, threshold]``: the
    # engine asks for a customer's next due time several times per event, with the
    # same facts (not part of the step's value).  Compared field by field, the last
    # order first (docs/performance.md "The core fast paths").
    memo: list[Any] = field(
        default_factory=lambda: [None, None, None, None], compare=False, hash=False, repr=False
    )
    # crossing_at for this model and threshold, its constants worked out once.
    crossing: CrossingSince = field(init=False, compare=False, hash=False, repr=False)
    kind: ClassVar[str] = "p_alive_below"

    def __post_init__(self) -> None:
        object.__setattr__(self, "crossing", CrossingSince(self.params, self.p))

    def threshold(self, facts: Facts) -> int | None:
        last = facts.last_order_at
        if last is None:
            return None
        first = facts.first_order_at
        if first is None:
            return None
        days = facts.order_days
        memo = self.memo
        if memo[0] == last and memo[1] == first and memo[2] == days:
            threshold: int | None = memo[3]
            return threshold
        threshold = self._threshold(first, last, days)
        memo[0], memo[1], memo[2], memo[3] = last, first, days, threshold
        return threshold

    def _threshold(self, first: int, last: int, order_days: int) -> int | None:
        try:
            after = self.crossing.after(order_days - 1, first, last)
        except OverflowError:
            return None  # a root too far to compute: more than far enough to never fall due
        # Beyond the longest duration a setting may hold: never (a due time stays a
        # representable datetime, as for a cadence step).
        return None if after is None or after > MAX_DURATION else after

    @property
    def least(self) -> int:
        return 0

    def label(self) -> str:
        return f"P(alive) < {self.p:g}"

    def canonical(self) -> Any:
        # The model's parameters and time unit of its kind: a new model changes
        # the rule's version (docs/prediction.md "The churn_risk rule").
        p = self.params
        return {
            "p_alive_below": self.p,
            "model": p.kind,
            "r": p.r,
            "alpha": p.alpha,
            "a": p.a,
            "b": p.b,
            "time_unit": p.unit,
        }


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


# The largest milestone steps a rule may name (docs/lifecycle.md "Rules"): the k-th
# order and the n-th yearly anniversary of the first order.
MAX_MILESTONE_ORDER = 1000
MAX_ANNIVERSARY = 10


@dataclass(frozen=True, slots=True)
class OrderMilestone(Step):
    """Due at the customer's k-th order, net of cancellations (``{ order = 3 }``), on
    a ``first_order`` anchor: threshold = t_k - first order's time, 0 for a k-th order
    at that instant (docs/lifecycle.md "Rules")."""

    k: int
    kind: ClassVar[str] = "order"

    def threshold(self, facts: Facts) -> int | None:
        first = facts.first_order_at
        at = facts.order_at(self.k)
        if first is None or at is None:
            return None
        return at - first

    @property
    def least(self) -> int:
        return 0

    def label(self) -> str:
        return f"order {self.k}"

    def canonical(self) -> Any:
        return {"order": self.k}


@dataclass(frozen=True, slots=True)
class Anniversary(Step):
    """Due ``n`` calendar years after the first order, in UTC, a 29 February read as
    28 February in other years (``{ anniversary = 1 }``: docs/lifecycle.md "Rules")."""

    n: int
    kind: ClassVar[str] = "anniversary"

    def threshold(self, facts: Facts) -> int | None:
        first = facts.first_order_at
        if first is None:
            return None
        return years_after(first, self.n) - first

    @property
    def least(self) -> int:
        return 365 * self.n * MICROS_PER_DAY

    def label(self) -> str:
        return f"{self.n} year" + ("s" if self.n != 1 else "")

    def canonical(self) -> Any:
        return {"anniversary": self.n}


def years_after(t: int, n: int) -> int:
    """``t`` plus ``n`` calendar years in UTC (29 February -> 28 February); past year
    9999, the last representable instant."""
    moment = EPOCH + timedelta(microseconds=t)
    year = moment.year + n
    if year > 9999:
        return TIME_MAX
    day = moment.day
    if moment.month == 2 and day == 29 and not calendar.isleap(year):
        day = 28
    later = moment.replace(year=year, day=day)
    return (later - EPOCH) // timedelta(microseconds=1)
