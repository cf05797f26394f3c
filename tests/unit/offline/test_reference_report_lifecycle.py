"""The report over the lifecycle (docs/reports.md "Funnel", "Recovered revenue",
"Cancellations"): ``retention report --from-file`` (the offline reference's rows)
and the live report (the engine's rows) give the same ``report/1``, the funnel,
the abandonment rules' recovered revenue and the cancellations included, on
histories with every lifecycle input arriving late and out of order."""

from __future__ import annotations

import pytest

from agents.core.reports import build_report
from tests.unit.offline import test_reference_vs_engine_lifecycle as life


@pytest.mark.parametrize("seed", range(4))
def test_the_offline_and_live_reports_agree_on_the_lifecycle_blocks(seed: int) -> None:
    lines = life.build(seed, 120)
    reference, _ = life.reference_side(lines, life.UNTIL)
    engine = life.engine_side(life.late_arrivals(lines, seed, life.UNTIL), life.UNTIL)
    offline = build_report(reference.rows.values(), as_of=life.UNTIL)
    live = build_report(engine.rows.values(), as_of=life.UNTIL)
    assert live == offline
    assert offline["funnel"] and sum(c["carts"] for c in offline["funnel"]) > 0
    assert offline["cancellations"]["full"] + offline["cancellations"]["partial"] > 0
    assert offline["cancellations"]["placed"] > offline["cancellations"]["full"]
    # Only rules anchored on a view or a cart have recovered revenue.
    recovered = {r["rule"] for r in offline["recovered_revenue"]}
    assert recovered and not recovered & {"welcome", "second_purchase", "inactivity"}
