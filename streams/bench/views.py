"""The bench's product-views line (issue 24 "Done when"): what the lifecycle inputs cost.

Views are the highest-volume input (about 10 per order).  `retention bench`
(streams/cli/bench.py) runs one worker on the views sample — the bench's sample with
``--lifecycle`` (docs/lifecycle.md "Sample and demo": the same customers, orders,
sessions and consents plus sign-ups, views, carts and cancellations) — and one on
the orders-and-sessions sample, each in a deployment of its own with the default
rules, alternating (views, without, views, without ...) after the worker line, which
is the first run without.  The figure is the worker's events per second on the
views sample over its rate on the orders-and-sessions sample, the means of the runs,
measured in the same run; the issue asks for at least 0.9.  Per-message CPU is
given beside it, and the spread of the runs without is the noise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson

from streams.feed.sample_options import SampleOptions

VIEWS = SampleOptions(lifecycle=True)
# Issue 24: events/s on the views sample >= 0.9 x on the orders-and-sessions sample.
CRITERION = 0.9
ORDER_SCHEMAS = ("purchase/1", "purchase/2")


def kinds(lines: Iterable[bytes]) -> dict[str, int]:
    """Lines per ``schema`` (malformed lines under ``"malformed"``), and views per
    order (distinct order ids)."""
    counts: Counter[str] = Counter()
    orders: set[str] = set()
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            counts["malformed"] += 1
            continue
        schema = obj.get("schema") if isinstance(obj, dict) else None
        counts[schema if isinstance(schema, str) else "malformed"] += 1
        if schema in ORDER_SCHEMAS and isinstance(obj.get("order_id"), str):
            orders.add(obj["order_id"])
    out = dict(sorted(counts.items()))
    out["orders"] = len(orders)
    return out


def rate_figures(
    base: list[tuple[int, float, float]], views: list[tuple[int, float, float]]
) -> dict[str, Any]:
    """Each run's events/s and CPU µs per event, from (events, seconds, CPU seconds)
    of the runs on the orders-and-sessions sample (``base``, the worker line first)
    and on the views sample; the ratio views / base of the mean rates (and of the
    mean CPU per event), the criterion and whether it is met, and the noise: the
    spread of the base runs' rates over their mean."""

    def rates(runs: list[tuple[int, float, float]]) -> list[float]:
        return [events / seconds if seconds > 0 else 0.0 for events, seconds, _ in runs]

    def cpu(runs: list[tuple[int, float, float]]) -> list[float]:
        return [c / max(1, events) * 1e6 for events, _, c in runs]

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else 0.0

    base_rates, views_rates = rates(base), rates(views)
    base_cpu, views_cpu = cpu(base), cpu(views)
    ratio = round(mean(views_rates) / mean(base_rates), 3) if mean(base_rates) else None
    cpu_ratio = round(mean(views_cpu) / mean(base_cpu), 3) if mean(base_cpu) else None
    noise = (
        round((max(base_rates) - min(base_rates)) / mean(base_rates), 3)
        if mean(base_rates)
        else None
    )
    return {
        "base_events_per_s": [round(x) for x in base_rates],
        "views_events_per_s": [round(x) for x in views_rates],
        "base_us_per_event": [round(x, 1) for x in base_cpu],
        "views_us_per_event": [round(x, 1) for x in views_cpu],
        "ratio_views_to_base": ratio,
        "cpu_ratio_views_to_base": cpu_ratio,
        "noise_base_runs": noise,
        "criterion": CRITERION,
        "meets_criterion": None if ratio is None else ratio >= CRITERION,
    }
