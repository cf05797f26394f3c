"""P(alive) and its crossing instant, the offline reference's own reading
(docs/prediction.md "The models" and "Crossing").

Written from the formulas, not from the engine's :mod:`agents.core.prediction`
(tests/unit/test_import_graph.py keeps them apart), so that a slip on either side
shows up as a disagreement.  The reference holds a customer's whole history, so its
inputs are plain: the set of UTC days with an order, the first and the last order.

* x = distinct UTC days with an order - 1; t_x = last - first in the model's unit
  (0 when x = 0); T = the instant scored - first.
* P(alive) = 1 / (1 + c ((alpha+T)/(alpha+t_x))^(r+x)), c = a/(b+x) (MBG/NBD) or
  a/(b+x-1) for x > 0 and 0 for x = 0 (BG/NBD: a one-time buyer is alive for ever).
* The step ``p_alive_below = p`` after the anchor A (the last order): solving
  P(alive) = p for T gives T* = (alpha+t_x) ((1-p)/(p c))^(1/(r+x)) - alpha; the
  instant first + T*, rounded up to the whole minute, is the due time ("at"); a
  root at or before A is "crossed" (a ``skipped`` decision at A); c = 0 is "never",
  and so is a root more than 100 years after A or too far to compute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from agents.core.timeutil import MAX_DURATION, MICROS_PER_DAY

MICROS_PER_MINUTE = 60 * 1_000_000
# The model's time unit in micros (docs/prediction.md "The churn_risk rule": day or week).
UNITS = {"day": MICROS_PER_DAY, "week": 7 * MICROS_PER_DAY}
KINDS = ("mbgnbd", "bgnbd")

AT = "at"
CROSSED = "crossed"
NEVER = "never"


@dataclass(frozen=True, slots=True)
class Model:
    """One model's four parameters, as a rules file's ``[model]`` gives them."""

    kind: str  # "mbgnbd" | "bgnbd"
    r: float
    alpha: float
    a: float
    b: float
    unit: str  # "day" | "week"


def repeat_days(order_times: Iterable[int]) -> int:
    """x: the distinct UTC days with an order, less one (0 without a repeat day)."""
    days = {t // MICROS_PER_DAY for t in order_times}
    return max(len(days) - 1, 0)


def _odds(model: Model, x: int) -> float:
    """c: the odds of "gone after the last order"."""
    if model.kind == "mbgnbd":
        return model.a / (model.b + x)
    return 0.0 if x == 0 else model.a / (model.b + x - 1)


def p_alive(model: Model, x: int, first: int, last: int, at: int) -> float:
    """P(alive) at ``at`` (micros) of a customer with ``x`` repeat order days whose
    first and last orders were at ``first`` and ``last``."""
    unit = UNITS[model.unit]
    t_x = (last - first) / unit if x else 0.0
    big_t = (at - first) / unit
    c = _odds(model, x)
    if c == 0.0:
        return 1.0
    ratio = (model.alpha + big_t) / (model.alpha + t_x)
    try:
        return 1.0 / (1.0 + c * math.pow(ratio, model.r + x))
    except OverflowError:
        return 0.0


@dataclass(frozen=True, slots=True)
class Due:
    """When a ``p_alive_below`` step falls due: ``status`` "at" (``at`` the instant),
    "crossed" (already at or below the threshold at the anchor) or "never"."""

    status: str
    at: int | None = None


def crossing(model: Model, p: float, x: int, first: int, last: int, anchor: int) -> Due:
    """The step ``p_alive_below = p`` of a customer as of the anchor (module doc)."""
    c = _odds(model, x)
    if c == 0.0:
        return Due(NEVER)
    unit = UNITS[model.unit]
    t_x = (last - first) / unit if x else 0.0
    try:
        growth = math.pow((1.0 - p) / (p * c), 1.0 / (model.r + x))
    except OverflowError:
        return Due(NEVER)  # beyond any instant (docs/prediction.md "Crossing")
    root = (model.alpha + t_x) * growth - model.alpha
    # The instant in micros, a real number: first + root x unit.
    # The root's instant to the nearest millisecond (halves to even), then the
    # smallest epoch minute at or after it (docs/prediction.md "Crossing").
    millis = round(root * unit / 1000)
    instant = first + millis * 1000
    if instant <= anchor:
        return Due(CROSSED)
    at = -(-instant // MICROS_PER_MINUTE) * MICROS_PER_MINUTE
    if at - anchor > MAX_DURATION:
        # More than 100 years after the anchor: never, as a due time must stay a
        # datetime (the cap a cadence step has too).
        return Due(NEVER)
    return Due(AT, at)
