"""Retention reports (docs/reports.md "Reports"): plain functions over one row per customer.

Two paths produce the rows - the live one from the processor's tables
(:meth:`CustomerRow.from_state`) and the offline one from an event file
(:mod:`agents.offline.reference`) - and both are aggregated here.  The
aggregation is checked on small hand-computed cases in the unit tests; the
end-to-end test checks that both paths give the same rows, hence the same report.

Definitions (all times UTC, durations in days of 24 h):

* TTSP cohort = calendar month of the first order.  ``repeaters`` have a second
  order by ``as_of``; median (mean of the middle two for an even count), p75 and
  p90 (nearest rank) of their TTSP in days.  ``repeat_within[N]`` = share of the
  cohort's buyers whose first order is at least N days before ``as_of`` (so all
  had N days to come back) that ordered again within N days.
* RPR = customers with >= 2 orders / customers with >= 1.
* CRR per calendar month = (E - N) / S0: S0 = customers active just before the
  month starts, N = customers whose first order falls in the month, E = customers
  active at its last instant (or at ``as_of`` for the running month).  Active = an
  order within the trailing ``active_window`` (default 90 days).  Months where
  S0, N and E are all 0 are left out, so the rows (and the time to make them)
  follow the data, not the calendar span from the first order to ``as_of``.
* Simple CLV per currency = average order value x orders per year x expected
  lifetime in years (a setting, default 2).  Orders per year = orders per buyer /
  years observed (first order in the data to ``as_of``, at least 30 days).
* Lift per rule and step = (CR delivered - CR holdout) / CR holdout x 100, where
  CR = conversions / firings of that group.
* Funnel per cohort = UTC month of the first product view: customers, those with a
  cart (with items), with a checkout, with an order (net of cancellations).
* Recovered revenue per abandonment rule (anchor ``last_view`` or ``cart``) and
  group: the converting orders' amounts as placed, per currency, and per customer
  of the group (customers with a firing of the rule in that group).
* Cancellations: placed orders (net orders + full cancellations), full and partial
  cancellations, their rates over placed orders, the amounts refunded per currency.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from agents.core.guardrails import (
    OUTCOME_CANCELLED,
    OUTCOME_DELIVERED,
    OUTCOME_HOLDOUT,
    OUTCOME_OUTSIDE_WINDOW,
    OUTCOMES,
    WINDOW_OUTCOMES,
)
from agents.core.prediction import p_alive
from agents.core.scores import KIND_ORDER, ScoreInputs, ScoreModel
from agents.core.send_counts import add_counts
from agents.core.state import STAGES, CountKey, CustomerState
from agents.core.timeutil import (
    MICROS_PER_DAY,
    iso,
    month_name,
    month_of,
    month_start_at,
)

SCHEMA_REPORT = "report/1"
REPEAT_WINDOWS = (30, 60, 90)
# TTSP histogram buckets in days: [lower, upper), the last one open.
HISTOGRAM_EDGES = (0, 7, 14, 30, 60, 90, 180)
YEAR = 365 * MICROS_PER_DAY
MIN_OBSERVED = 30 * MICROS_PER_DAY


@dataclass(frozen=True, slots=True)
class ReportSettings:
    active_window: int = 90 * MICROS_PER_DAY
    clv_lifetime_years: float = 2.0


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """What the reports need about one customer."""

    customer_id: str
    orders: int = 0
    first_order_at: int | None = None
    second_order_at: int | None = None
    spend: Mapping[str, str] = field(default_factory=dict)  # currency -> decimal string
    order_currencies: Mapping[str, int] = field(default_factory=dict)
    active_spans: tuple[tuple[int, int], ...] = ()  # [start, end) merged, ascending
    stage: str = "prospect"
    decision_counts: Mapping[CountKey, int] = field(default_factory=dict)  # by outcome
    conversion_counts: Mapping[CountKey, int] = field(default_factory=dict)  # by group
    # Per rule with a send window: [deferred, delivered at local hour 0..23].
    send_counts: Mapping[str, list[int]] = field(default_factory=dict)
    # The lifecycle (docs/reports.md "Funnel", "Recovered revenue", "Cancellations").
    first_view_at: int | None = None
    first_cart_at: int | None = None
    first_checkout_at: int | None = None
    cancelled_orders: int = 0  # full cancellations of placed orders
    partial_cancels: int = 0
    refunded: Mapping[str, str] = field(default_factory=dict)  # currency -> decimal string
    # abandonment rule -> group -> currency -> decimal string (row key "rr")
    recovered: Mapping[str, Mapping[str, Mapping[str, str]]] = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: CustomerState) -> CustomerRow:
        return cls(
            customer_id=state.customer_id,
            orders=state.orders,
            first_order_at=state.first_order_at,
            second_order_at=state.second_order_at,
            spend=dict(state.spend),
            order_currencies=dict(state.order_currencies),
            active_spans=tuple((s, e) for s, e in state.active_spans),
            stage=state.stage,
            decision_counts=dict(state.decision_counts),
            conversion_counts=dict(state.conversion_counts),
            send_counts={rule: list(row) for rule, row in state.send_counts.items()},
            first_view_at=state.first_view_at,
            first_cart_at=state.first_cart_at,
            first_checkout_at=state.first_checkout_at,
            cancelled_orders=state.cancelled_orders,
            partial_cancels=state.partial_cancels,
            refunded=dict(state.refunded),
            recovered=state.recovered,
        )


# --- small statistics ----------------------------------------------------------------


def median(values: list[float]) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least p% at or below it."""
    if not values:
        return None
    xs = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(xs)))
    return xs[rank - 1]


def ratio(num: int | float, den: int | float) -> float | None:
    return None if den == 0 else num / den


def crr(s0: int, n: int, e: int) -> float | None:
    """Customer retention rate (E - N) / S0; None when nobody was active at the start."""
    return ratio(e - n, s0)


def clv(average_order_value: float, orders_per_year: float, lifetime_years: float) -> float:
    return average_order_value * orders_per_year * lifetime_years


def lift_percent(rate_delivered: float | None, rate_holdout: float | None) -> float | None:
    if rate_delivered is None or rate_holdout is None or rate_holdout == 0:
        return None
    return (rate_delivered - rate_holdout) / rate_holdout * 100


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


def month_label(t: int) -> str:
    """The UTC calendar month holding ``t``: ``"2026-03"``."""
    return month_name(month_of(t))


def _months(first: int, last: int, candidates: Iterable[int]) -> list[tuple[str, int, int]]:
    """Calendar months (label, start, end) among ``candidates`` (month numbers, see
    :func:`agents.core.timeutil.month_of`) from the one holding ``first`` to
    ``last``'s, ascending.

    A month starting exactly at ``last`` has no time in it yet and is left out,
    unless it is the first month.
    """
    lo = month_of(first)
    out: list[tuple[str, int, int]] = []
    for k in sorted(set(candidates)):
        start = month_start_at(k)
        if k < lo or start > last or (start == last and k != lo):
            continue
        out.append((month_name(k), start, month_start_at(k + 1)))
    return out


def crr_months(buyers: Iterable[CustomerRow], as_of: int) -> Iterator[int]:
    """The months whose S0, N or E a buyer can count in, ascending, each once: the
    month of a first order and, for each active span [lo, hi), the months it
    touches up to ``as_of`` and the one after (whose S0 looks at the instant
    before it starts).  The spans' month ranges are merged first, so the cost is
    the number of spans and of months with data, whatever the spans' lengths."""
    ranges: list[tuple[int, int]] = []
    for r in buyers:
        if r.first_order_at is not None:
            k = month_of(r.first_order_at)
            ranges.append((k, k))
        for lo, hi in r.active_spans:
            ranges.append((month_of(lo), month_of(min(hi - 1, as_of)) + 1))
    ranges.sort()
    done = None  # the last month yielded
    for lo, hi in ranges:
        start = lo if done is None else max(lo, done + 1)
        yield from range(start, hi + 1)
        done = hi if done is None else max(done, hi)


# --- the report's blocks, from aggregated counts ----------------------------------------
#
# Both ways of making a report, from customer rows here (build_report) and from
# workers' mergeable counts (agents/core/report_merge.py), aggregate in their own way and
# then finish with these functions, so the formulas exist once.


def ttsp_summary(
    buyers: int, days: list[float], mature: list[int], back: list[int]
) -> dict[str, Any]:
    """A TTSP block: ``days`` are the repeaters' times to a second order;
    ``mature[i]`` / ``back[i]`` the buyers with REPEAT_WINDOWS[i] days behind them
    and those of them who ordered again within that many days."""
    return {
        "first_time_buyers": buyers,
        "repeaters": len(days),
        "median_days": _r(median(days), 2),
        "p75_days": _r(percentile(days, 75), 2),
        "p90_days": _r(percentile(days, 90), 2),
        "repeat_within": {
            str(n): _r(ratio(back[i], mature[i])) for i, n in enumerate(REPEAT_WINDOWS)
        },
    }


def histogram(days: Iterable[float]) -> list[dict[str, Any]]:
    """TTSP histogram over HISTOGRAM_EDGES, lower-inclusive buckets."""
    counts = [0] * len(HISTOGRAM_EDGES)
    for d in days:
        counts[bisect.bisect_right(HISTOGRAM_EDGES, d) - 1] += 1
    out = []
    for i, lo in enumerate(HISTOGRAM_EDGES):
        hi = HISTOGRAM_EDGES[i + 1] if i + 1 < len(HISTOGRAM_EDGES) else None
        label = f"{lo}-{hi} d" if hi is not None else f"{lo}+ d"
        out.append({"label": label, "lower_days": lo, "upper_days": hi, "count": counts[i]})
    return out


def crr_block(
    first: int | None,
    as_of: int,
    months: Iterable[int],
    cell: Callable[[str, int, int], tuple[int, int, int]],
) -> list[dict[str, Any]]:
    """CRR per calendar month from the one of the first order to ``as_of``'s, for
    the ``months`` (numbers, see :func:`agents.core.timeutil.month_of`) that may
    hold data; ``cell(label, start, last_instant)`` gives that month's (S0, N, E).
    A month where all three are 0 is left out: a history with one order in 1970
    and the rest today has a handful of rows, not one per month in between."""
    if first is None:
        return []
    out: list[dict[str, Any]] = []
    for label, start, end in _months(first, as_of, months):
        last_instant = min(end - 1, as_of)
        s0, n, e = cell(label, start, last_instant)
        if s0 == n == e == 0:
            continue
        out.append(
            {
                "period": label,
                "partial": last_instant < end - 1,
                "s0": s0,
                "n": n,
                "e": e,
                "crr": _r(crr(s0, n, e)),
            }
        )
    return out


def clv_block(
    first: int | None,
    as_of: int,
    buyers: int,
    orders: int,
    spend: Mapping[str, Decimal],
    currencies: Mapping[str, int],
    lifetime: float,
) -> list[dict[str, Any]]:
    """Simple CLV per currency: ``orders`` of ``buyers`` since ``first``, with the
    spend and the order count of each currency."""
    if first is None or buyers == 0:
        return []
    years = max(as_of - first, MIN_OBSERVED) / YEAR
    per_year = orders / buyers / years
    out = []
    for cur in sorted(spend):
        if currencies.get(cur, 0) == 0:
            continue
        aov = float(spend[cur] / currencies[cur])
        out.append(
            {
                "currency": cur,
                "orders": currencies[cur],
                "average_order_value": round(aov, 2),
                "orders_per_year": round(per_year, 4),
                "lifetime_years": lifetime,
                "clv": round(clv(aov, per_year, lifetime), 2),
            }
        )
    return out


def sum_counts(counts: Iterable[Mapping[CountKey, int]]) -> Counter[CountKey]:
    """Lifetime counts added up; a key counted 0 times stays (its step is listed)."""
    total: Counter[CountKey] = Counter()
    for c in counts:
        for key, n in c.items():
            total[key] += n
    return total


def _lift_block(
    decisions: Counter[CountKey], conversions: Counter[CountKey]
) -> list[dict[str, Any]]:
    steps = sorted({(rule, step) for rule, step, _ in decisions})
    out = []
    for rule, step in steps:
        groups: dict[str, dict[str, Any]] = {}
        rates: dict[str, float | None] = {}
        for group in (OUTCOME_DELIVERED, OUTCOME_HOLDOUT):
            firings = decisions[CountKey(rule, step, group)]
            conv = conversions[CountKey(rule, step, group)]
            rates[group] = ratio(conv, firings)
            groups[group] = {"firings": firings, "conversions": conv, "rate": _r(rates[group])}
        lift = lift_percent(rates[OUTCOME_DELIVERED], rates[OUTCOME_HOLDOUT])
        out.append({"rule": rule, "step": step, **groups, "lift_percent": _r(lift, 2)})
    return out


def send_windows_block(
    decisions: Counter[CountKey], sends: Mapping[str, list[int]]
) -> list[dict[str, Any]] | None:
    """Per rule with a send window (docs/send-windows.md "Outputs"): firings that
    waited for it, dropped outside it, cancelled before it, and delivered nudges by
    local send hour 0-23.  None when no firing had a window (no such count and no
    such outcome), so a report of rules without windows is unchanged."""
    dropped: Counter[tuple[str, str]] = Counter()
    for (rule, _, outcome), n in decisions.items():
        if outcome in WINDOW_OUTCOMES:
            dropped[(rule, outcome)] += n
    rules = sorted(set(sends) | {rule for rule, _ in dropped})
    if not rules:
        return None
    return [
        {
            "rule": rule,
            "deferred": sends[rule][0] if rule in sends else 0,
            OUTCOME_OUTSIDE_WINDOW: dropped[(rule, OUTCOME_OUTSIDE_WINDOW)],
            OUTCOME_CANCELLED: dropped[(rule, OUTCOME_CANCELLED)],
            "delivered_by_local_hour": list(sends[rule][1:]) if rule in sends else [0] * 24,
        }
        for rule in rules
    ]


# P(alive) in ten bins of 0.1 ("deciles" of the probability): bin i holds
# [i/10, (i+1)/10), the last one 1.0 too.  Counts, so workers' parts add up exactly.
P_ALIVE_BINS = 10


def p_alive_bin(p: float) -> int:
    return min(int(p * P_ALIVE_BINS), P_ALIVE_BINS - 1)


def count_p_alive(
    into: dict[str, list[int]], inputs: ScoreInputs | None, model: ScoreModel, as_of: int
) -> None:
    """Add one buyer's P(alive) at ``as_of`` under each kind of ``model`` to the bins
    keyed ``"<model version>/<kind>"`` (docs/reports.md "P(alive)")."""
    if inputs is None:
        return
    unit = 7 * MICROS_PER_DAY if model.time_unit == "week" else MICROS_PER_DAY
    x = inputs.x
    t_x = (inputs.last_order_at - inputs.first_order_at) / unit if x > 0 else 0.0
    T = (max(as_of, inputs.last_order_at) - inputs.first_order_at) / unit
    for kind in KIND_ORDER:
        params = model.kinds.get(kind)
        if params is None:
            continue
        key = f"{model.version}/{kind}"
        bins = into.get(key)
        if bins is None:
            bins = into[key] = [0] * P_ALIVE_BINS
        bins[p_alive_bin(p_alive(params, x, t_x, T))] += 1


def p_alive_block(counts: Mapping[str, list[int]]) -> list[dict[str, Any]]:
    """The P(alive) distribution per model version and kind: customers scored and
    how many fall in each tenth [0, 0.1), ..., [0.9, 1] (docs/reports.md "P(alive)")."""
    out = []
    for key in sorted(counts):
        version, kind = key.rsplit("/", 1)
        bins = counts[key]
        out.append(
            {"model_version": version, "kind": kind, "customers": sum(bins), "deciles": list(bins)}
        )
    return out


# --- the lifecycle's blocks (docs/reports.md "Funnel", "Recovered revenue",
# "Cancellations"): each None when no customer has such inputs, so a deployment
# without them reports exactly as before.

FUNNEL_STAGES = ("customers", "carts", "checkouts", "orders")


def funnel_stage_counts(
    first_cart_at: int | None, first_checkout_at: int | None, orders: int
) -> list[int]:
    """One viewing customer's contribution to its cohort: [1, cart, checkout, order]."""
    return [
        1,
        int(first_cart_at is not None),
        int(first_checkout_at is not None),
        int(orders >= 1),
    ]


def funnel_block(cohorts: Mapping[str, list[int]]) -> list[dict[str, Any]] | None:
    """Per first-view month: customers, with a cart, a checkout, an order (counts in
    FUNNEL_STAGES order), and each stage's share of the cohort's customers."""
    if not cohorts:
        return None
    out = []
    for label in sorted(cohorts):
        counts = cohorts[label]
        row: dict[str, Any] = {"cohort": label}
        row.update(zip(FUNNEL_STAGES, counts, strict=True))
        row["rates"] = {
            stage: _r(ratio(n, counts[0]))
            for stage, n in zip(FUNNEL_STAGES[1:], counts[1:], strict=True)
        }
        out.append(row)
    return out


def cancellations_block(
    placed: int, full: int, partial: int, refunded: Mapping[str, Decimal]
) -> dict[str, Any] | None:
    """Placed orders (net + fully cancelled), full and partial cancellations, their
    rates over the placed orders, and the refunded amounts per currency."""
    if full == 0 and partial == 0 and not refunded:
        return None
    return {
        "placed": placed,
        "full": full,
        "partial": partial,
        "rate": _r(ratio(full, placed)),
        "partial_rate": _r(ratio(partial, placed)),
        "refunded": {cur: format(refunded[cur], "f") for cur in sorted(refunded)},
    }


def group_customers(decisions: Mapping[CountKey, int]) -> set[tuple[str, str]]:
    """The (rule, group) pairs one customer is counted in for recovered revenue: a
    delivered or holdout firing of the rule."""
    return {
        (rule, outcome)
        for (rule, _, outcome), n in decisions.items()
        if n > 0 and outcome in (OUTCOME_DELIVERED, OUTCOME_HOLDOUT)
    }


def add_revenue(
    into: dict[str, dict[str, dict[str, Decimal]]],
    recovered: Mapping[str, Mapping[str, Mapping[str, str]]],
) -> None:
    """Add one row's (or part's) recovered revenue, exactly."""
    with localcontext(prec=80):
        for rule, groups in recovered.items():
            for group, sums in groups.items():
                cell = into.setdefault(rule, {}).setdefault(group, {})
                for cur, amount in sums.items():
                    cell[cur] = cell.get(cur, Decimal(0)) + Decimal(amount)


def recovered_block(
    revenue: Mapping[str, Mapping[str, Mapping[str, Decimal]]],
    customers: Mapping[tuple[str, str], int],
) -> list[dict[str, Any]] | None:
    """Per abandonment rule with a conversion, per group (delivered, holdout): the
    customers of the group, the revenue per currency and per customer."""
    if not revenue:
        return None
    out = []
    for rule in sorted(revenue):
        row: dict[str, Any] = {"rule": rule}
        for group in (OUTCOME_DELIVERED, OUTCOME_HOLDOUT):
            sums = revenue[rule].get(group, {})
            n = customers.get((rule, group), 0)
            row[group] = {
                "customers": n,
                "revenue": {cur: format(sums[cur], "f") for cur in sorted(sums)},
                "per_customer": {
                    cur: None if n == 0 else round(float(sums[cur] / n), 2) for cur in sorted(sums)
                },
            }
        out.append(row)
    return out


def report_document(
    *,
    as_of: int,
    customers: int,
    buyers: int,
    repeaters: int,
    ttsp: dict[str, Any],
    crr: list[dict[str, Any]],
    clv: list[dict[str, Any]],
    lifecycle: Mapping[str, int],
    decisions: Counter[CountKey],
    conversions: Counter[CountKey],
    sends: Mapping[str, list[int]] | None = None,
    p_alive: Mapping[str, list[int]] | None = None,
    funnel: list[dict[str, Any]] | None = None,
    recovered: list[dict[str, Any]] | None = None,
    cancellations: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``report/1`` document from its blocks and the summed lifetime counts
    (``sends``: the summed send-window counts, agents.core.send_counts; ``p_alive``:
    the P(alive) bins, None when the rules have no ``[model]``)."""
    by_outcome = dict.fromkeys(OUTCOMES, 0)
    for (_, _, outcome), n in decisions.items():
        by_outcome[outcome] = by_outcome.get(outcome, 0) + n
    windows = send_windows_block(decisions, sends or {})
    doc = {
        "schema": SCHEMA_REPORT,
        "as_of": iso(as_of),
        "customers": customers,
        "buyers": buyers,
        "ttsp": ttsp,
        "rpr": {"buyers": buyers, "repeaters": repeaters, "rate": _r(ratio(repeaters, buyers))},
        "crr": crr,
        "clv": clv,
        "lifecycle": dict(lifecycle),
        "decisions": {"total": sum(decisions.values()), "by_outcome": by_outcome},
        "lift": _lift_block(decisions, conversions),
    }
    if windows is not None:
        doc["send_windows"] = windows
    # Only with a model: a report of rules without one is byte-identical.
    if p_alive is not None:
        doc["p_alive"] = p_alive_block(p_alive)
    # The lifecycle's blocks only with their inputs (docs/reports.md "Funnel").
    if funnel is not None:
        doc["funnel"] = funnel
    if recovered is not None:
        doc["recovered_revenue"] = recovered
    if cancellations is not None:
        doc["cancellations"] = cancellations
    return doc


# --- the report over customer rows -----------------------------------------------------


def _ttsp_block(rows: list[CustomerRow], as_of: int) -> dict[str, Any]:
    days = [
        (r.second_order_at - r.first_order_at) / MICROS_PER_DAY
        for r in rows
        if r.first_order_at is not None and r.second_order_at is not None
    ]
    mature: list[int] = []
    back: list[int] = []
    for n in REPEAT_WINDOWS:
        horizon = as_of - n * MICROS_PER_DAY
        ripe = [r for r in rows if r.first_order_at is not None and r.first_order_at <= horizon]
        mature.append(len(ripe))
        back.append(
            sum(
                1
                for r in ripe
                if r.second_order_at is not None
                and r.first_order_at is not None
                and r.second_order_at - r.first_order_at <= n * MICROS_PER_DAY
            )
        )
    return ttsp_summary(len(rows), days, mature, back)


def _crr_cell(buyers: list[CustomerRow]) -> Callable[[str, int, int], tuple[int, int, int]]:
    """S0 / N / E of a month by binary search, in O(log n) per month.

    A buyer's spans are merged and disjoint, so it is active at b in at most one
    of them, and the buyers active at b are the spans started at or before b less
    those ended at or before b."""
    starts = sorted(s for r in buyers for s, _ in r.active_spans)
    ends = sorted(e for r in buyers for _, e in r.active_spans)
    firsts = sorted(r.first_order_at for r in buyers if r.first_order_at is not None)

    def active(b: int) -> int:
        return bisect.bisect_right(starts, b) - bisect.bisect_right(ends, b)

    def cell(_label: str, start: int, last_instant: int) -> tuple[int, int, int]:
        n = bisect.bisect_right(firsts, last_instant) - bisect.bisect_left(firsts, start)
        return active(start - 1), n, active(last_instant)

    return cell


def build_report(
    rows: Iterable[CustomerRow],
    *,
    as_of: int,
    settings: ReportSettings | None = None,
    model: ScoreModel | None = None,
    score_inputs: Mapping[str, ScoreInputs] | None = None,
) -> dict[str, Any]:
    """The ``report/1`` document (JSON-able) for these customers as of ``as_of``;
    with a ``model``, the distribution of their P(alive) at ``as_of`` too, from each
    customer's ``score_inputs`` (by customer id: :func:`agents.core.scores.inputs_of`
    of its state; a customer without any is not scored)."""
    settings = settings or ReportSettings()
    all_rows = sorted(rows, key=lambda r: r.customer_id)
    buyers = [r for r in all_rows if r.orders >= 1 and r.first_order_at is not None]
    cohorts: dict[str, list[CustomerRow]] = {}
    for r in buyers:
        assert r.first_order_at is not None
        cohorts.setdefault(month_label(r.first_order_at), []).append(r)
    lifecycle = dict.fromkeys(STAGES, 0)
    for r in all_rows:
        lifecycle[r.stage] = lifecycle.get(r.stage, 0) + 1
    first = min((r.first_order_at for r in buyers if r.first_order_at is not None), default=None)
    spend: dict[str, Decimal] = {}
    currencies: Counter[str] = Counter()
    for r in buyers:
        for cur, amount in r.spend.items():
            spend[cur] = spend.get(cur, Decimal(0)) + Decimal(amount)
        currencies.update(r.order_currencies)
    gaps = [
        (r.second_order_at - r.first_order_at) / MICROS_PER_DAY
        for r in buyers
        if r.first_order_at is not None and r.second_order_at is not None
    ]
    return report_document(
        as_of=as_of,
        customers=len(all_rows),
        buyers=len(buyers),
        repeaters=sum(1 for r in buyers if r.orders >= 2),
        ttsp={
            "overall": _ttsp_block(buyers, as_of),
            "cohorts": [
                {"cohort": label, **_ttsp_block(members, as_of)}
                for label, members in sorted(cohorts.items())
            ],
            "histogram": histogram(gaps),
        },
        crr=crr_block(first, as_of, crr_months(buyers, as_of), _crr_cell(buyers)),
        clv=clv_block(
            first,
            as_of,
            len(buyers),
            sum(r.orders for r in buyers),
            spend,
            currencies,
            settings.clv_lifetime_years,
        ),
        lifecycle=lifecycle,
        decisions=sum_counts(r.decision_counts for r in all_rows),
        conversions=sum_counts(r.conversion_counts for r in all_rows),
        sends=_sum_sends(all_rows),
        p_alive=None if model is None else _p_alive_counts(buyers, model, as_of, score_inputs),
        **lifecycle_blocks(all_rows),
    )


def lifecycle_blocks(rows: Iterable[CustomerRow]) -> dict[str, Any]:
    """The funnel, recovered revenue and cancellations over customer rows, as
    :func:`report_document` takes them."""
    cohorts: dict[str, list[int]] = {}
    revenue: dict[str, dict[str, dict[str, Decimal]]] = {}
    in_group: Counter[tuple[str, str]] = Counter()
    refunded: dict[str, Decimal] = {}
    placed = full = partial = 0
    for r in rows:
        if r.first_view_at is not None:
            counts = funnel_stage_counts(r.first_cart_at, r.first_checkout_at, r.orders)
            cell = cohorts.setdefault(month_label(r.first_view_at), [0] * len(FUNNEL_STAGES))
            for i, n in enumerate(counts):
                cell[i] += n
        add_revenue(revenue, r.recovered)
        in_group.update(group_customers(r.decision_counts))
        if r.orders >= 1 and r.first_order_at is not None:  # a buyer, as the report counts
            placed += r.orders
        placed += r.cancelled_orders
        full += r.cancelled_orders
        partial += r.partial_cancels
        with localcontext(prec=80):
            for cur, amount in r.refunded.items():
                refunded[cur] = refunded.get(cur, Decimal(0)) + Decimal(amount)
    return {
        "funnel": funnel_block(cohorts),
        "recovered": recovered_block(revenue, in_group),
        "cancellations": cancellations_block(placed, full, partial, refunded),
    }


def _p_alive_counts(
    buyers: Iterable[CustomerRow],
    model: ScoreModel,
    as_of: int,
    score_inputs: Mapping[str, ScoreInputs] | None,
) -> dict[str, list[int]]:
    counts: dict[str, list[int]] = {}
    found = score_inputs or {}
    for r in buyers:
        count_p_alive(counts, found.get(r.customer_id), model, as_of)
    return counts


def _sum_sends(rows: Iterable[CustomerRow]) -> dict[str, list[int]]:
    total: dict[str, list[int]] = {}
    for r in rows:
        add_counts(total, r.send_counts)
    return total
