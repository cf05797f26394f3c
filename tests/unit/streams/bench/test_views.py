"""The bench's product-views line (issue 24): its arithmetic, its arguments and its
section of docs/benchmarks.md (the runs themselves are the lead's `make bench`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from agents.core.timeutil import to_micros
from streams.bench import report as bench
from streams.bench import views
from streams.cli import build_parser
from streams.feed.sample import generate
from tests.unit.streams.bench.test_report import result

END = to_micros(datetime(2026, 3, 1, tzinfo=UTC))


def test_the_ratio_is_views_over_base_of_the_mean_rates_with_cpu_and_noise() -> None:
    # (events, seconds, CPU seconds): base 3,000 and 2,500 events/s; views 2,600.
    base = [(30_000, 10.0, 9.0), (30_000, 12.0, 9.6)]
    seen = [(90_000, 90_000 / 2_600, 27.0)]
    f = views.rate_figures(base, seen)
    assert f["base_events_per_s"] == [3000, 2500]
    assert f["views_events_per_s"] == [2600]
    assert f["base_us_per_event"] == [300.0, 320.0]
    assert f["views_us_per_event"] == [300.0]
    assert f["ratio_views_to_base"] == round(2600 / 2750, 3) == 0.945
    assert f["cpu_ratio_views_to_base"] == round(300 / 310, 3)
    assert f["noise_base_runs"] == round(500 / 2750, 3)
    assert f["criterion"] == 0.9 and f["meets_criterion"] is True
    slow = views.rate_figures(base, [(90_000, 90_000 / 2_400, 27.0)])
    assert slow["ratio_views_to_base"] == 0.873 and slow["meets_criterion"] is False
    assert views.rate_figures([], [])["meets_criterion"] is None


def test_the_views_sample_is_the_bench_sample_with_the_lifecycle() -> None:
    lines = list(generate(300, 60, seed=7, end=END, options=views.VIEWS))
    k = views.kinds(lines)
    assert {"signup/1", "product_view/1", "cart/1", "purchase/2"} <= set(k)
    assert 8 < k["product_view/1"] / k["orders"] < 14
    plain = views.kinds(generate(300, 60, seed=7, end=END))
    assert plain["session/1"] == k["session/1"] and plain["orders"] == k["orders"]
    assert "product_view/1" not in plain


def test_the_bench_runs_the_views_sample_unless_skipped() -> None:
    args = build_parser().parse_args(["bench"])
    assert args.skip_views is False and args.views_rounds == 1
    args = build_parser().parse_args(["bench", "--skip-views", "--views-rounds", "3"])
    assert args.skip_views is True and args.views_rounds == 3


def test_the_report_shows_the_views_runs_beside_the_worker_line(tmp_path: Path) -> None:
    base = [(30_000, 10.0, 9.0), (30_000, 12.0, 9.6)]
    figures = views.rate_figures(base, [(90_000, 90_000 / 2_600, 27.0)])
    figures["sample"] = {"orders": 1000, "product_view/1": 10_000, "signup/1": 900}
    figures["views_input_messages"] = 90_000
    out = tmp_path / "bench.md"
    bench.write_report(out, result(views=figures))
    text = out.read_text()
    assert "## Product views" in text and "10.0 views per order" in text
    rows = [
        "| orders and sessions (the worker line above) | 3,000 events/s | 300.0 µs |",
        "| **with views** | 2,600 events/s | 300.0 µs |",
        "| orders and sessions | 2,500 events/s | 320.0 µs |",
    ]
    assert "\n".join(rows) in text
    assert "**Views / orders and sessions: 0.945**" in text and "at least 0.9: met" in text
    assert orjson.loads(out.with_suffix(".json").read_bytes())["views"]["ratio_views_to_base"]
    bench.write_report(out, result())  # --skip-views: no section
    assert "Product views" not in out.read_text()


@pytest.mark.parametrize("ratio", [0.5, 0.89])
def test_a_rate_under_the_criterion_is_said_plainly(tmp_path: Path, ratio: float) -> None:
    base = [(1000, 1.0, 1.0), (1000, 1.0, 1.0)]
    figures = views.rate_figures(base, [(1000, 1 / ratio, 1.0)])
    figures["sample"] = {"orders": 0}
    figures["views_input_messages"] = 1000
    out = tmp_path / "bench.md"
    bench.write_report(out, result(views=figures))
    assert "**not met**" in out.read_text()
