"""A purchase history read for the models: each customer's counted orders, and the
inputs (x, t_x, T) the models take (docs/prediction.md "A customer's inputs").

Lines are read like the offline reference reads them (README "Inputs"): each is
validated; sessions, consents, control records and invalid lines are skipped
(invalid ones counted per error code).  An order counts once, at the earliest
event carrying its ``order_id``; an ``event_id`` seen before is a duplicate.
Unlike the stream this keeps every order id exactly, and the whole history of
purchases in memory (one tuple an order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from agents.core.prediction import MICROS_PER_DAY, UNIT_MICROS, TimeUnit
from agents.core.timeutil import TIME_MAX
from agents.core.validation import ValidationError, validate
from schemas.records import KIND_PURCHASE

# (occurred_at micros, currency, amount) of one counted order.
Order = tuple[int, str, Decimal]


@dataclass
class History:
    """Each customer's counted orders in time order, and what was skipped."""

    orders: dict[str, list[Order]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0

    @property
    def last_order_at(self) -> int | None:
        return max((o[-1][0] for o in self.orders.values() if o), default=None)

    @property
    def first_order_at(self) -> int | None:
        return min((o[0][0] for o in self.orders.values() if o), default=None)


@dataclass(frozen=True, slots=True)
class Inputs:
    """One customer's model inputs at a cutoff, in the model's unit, and the
    repeat order days' values per currency (for Gamma-Gamma)."""

    customer_id: str
    x: int
    t_x: float
    T: float
    first_at: int
    last_at: int
    values: dict[str, list[Decimal]]


class NotEnoughData(ValueError):
    """The history is below the minimum a fit needs (the message says which)."""


@dataclass(frozen=True, slots=True)
class MinimumData:
    """The least data a fit accepts (``retention model fit --min-*``)."""

    customers: int = 100
    repeat_buyers: int = 20
    weeks: float = 8.0


DEFAULT_MINIMUM = MinimumData()


def check_minimum(inputs: Sequence[Inputs], weeks: float, minimum: MinimumData) -> None:
    """Raise :class:`NotEnoughData` naming each shortfall."""
    repeat = sum(1 for i in inputs if i.x > 0)
    short = []
    if len(inputs) < minimum.customers:
        short.append(f"{len(inputs)} customers (need {minimum.customers}, --min-customers)")
    if repeat < minimum.repeat_buyers:
        short.append(f"{repeat} repeat buyers (need {minimum.repeat_buyers}, --min-repeat-buyers)")
    if weeks < minimum.weeks:
        short.append(f"{weeks:.1f} weeks of history (need {minimum.weeks:g}, --min-weeks)")
    if short:
        raise NotEnoughData("not enough data to fit: " + "; ".join(short))


def read_history(
    lines: Iterable[bytes], *, until: int | None, max_bytes: int, earliest: int
) -> History:
    """The purchases of ``lines`` dated at or before ``until`` (all when None)."""
    valid: list[tuple[int, int, str, str, str, str, Decimal]] = []
    history = History()
    for seq, raw in enumerate(lines):
        line = raw.strip()
        if not line or b'"control/' in line[:64]:
            continue
        try:
            event = validate(
                line, now=TIME_MAX, max_bytes=max_bytes, future_tolerance=0, earliest=earliest
            )
        except ValidationError as exc:
            history.skipped[exc.code] = history.skipped.get(exc.code, 0) + 1
            continue
        if event.kind != KIND_PURCHASE or (until is not None and event.occurred_at > until):
            continue
        assert event.order_id is not None and event.amount is not None
        valid.append(
            (
                event.occurred_at,
                seq,
                event.customer_id,
                event.event_id,
                event.order_id,
                event.currency or "XXX",
                Decimal(event.amount),
            )
        )
    # Dedup in event-time order, file order among equal times: the order in which
    # `retention replay` delivers a file, so the file's own order does not matter.
    valid.sort(key=lambda v: (v[0], v[1]))
    seen: set[tuple[str, str]] = set()
    for t, _, customer, event_id, order_id, currency, amount in valid:
        if (customer, "e" + event_id) in seen or (customer, "o" + order_id) in seen:
            history.duplicates += 1
            continue
        seen.add((customer, "e" + event_id))
        seen.add((customer, "o" + order_id))
        history.orders.setdefault(customer, []).append((t, currency, amount))
    return history


def inputs_at(customer_id: str, orders: list[Order], cutoff: int, unit: TimeUnit) -> Inputs | None:
    """The model inputs of a customer at ``cutoff`` from orders in time order
    (None: no order by then).  Repeat orders count once per UTC day; t_x runs to
    the last order's instant; a day's orders add up to one value per currency."""
    counted = [o for o in orders if o[0] <= cutoff]
    if not counted:
        return None
    first_at = counted[0][0]
    first_day = first_at // MICROS_PER_DAY
    days: dict[int, dict[str, Decimal]] = {}
    for t, currency, amount in counted:
        day = days.setdefault(t // MICROS_PER_DAY, {})
        day[currency] = day.get(currency, Decimal(0)) + amount
    values: dict[str, list[Decimal]] = {}
    for day_number, totals in sorted(days.items()):
        if day_number == first_day:
            continue
        for currency, total in totals.items():
            values.setdefault(currency, []).append(total)
    x = len(days) - 1
    last_at = counted[-1][0]
    size = UNIT_MICROS[unit]
    return Inputs(
        customer_id=customer_id,
        x=x,
        t_x=(last_at - first_at) / size if x > 0 else 0.0,
        T=(cutoff - first_at) / size,
        first_at=first_at,
        last_at=last_at if x > 0 else first_at,
        values=values,
    )


def repeat_days_between(orders: list[Order], start: int, end: int) -> int:
    """Distinct UTC days with an order in (start, end] that had none at or before
    ``start`` (a holdout's repeat order days)."""
    before = {t // MICROS_PER_DAY for t, _, _ in orders if t <= start}
    after = {t // MICROS_PER_DAY for t, _, _ in orders if start < t <= end}
    return len(after - before)
