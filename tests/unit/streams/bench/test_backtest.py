"""python -m streams.bench.backtest: the backtest's rate and peak memory in `make bench`
(docs/rules.md "Backtest"; written to docs/benchmarks.md by streams/bench/report.py)."""

from __future__ import annotations

from pathlib import Path

from streams.bench import backtest as bench_backtest
from streams.bench import report
from tests.unit.streams.bench.test_report import result


def test_both_histories_are_measured_with_rate_and_memory() -> None:
    figures = bench_backtest.run(customers=40, days=60, scale=3, workers=2)
    sample, larger = figures["sample"], figures["x3"]
    assert (sample["customers_generated"], larger["customers_generated"]) == (40, 120)
    assert larger["lines"] > 2 * sample["lines"] > 0
    for h in (sample, larger):
        assert h["events_per_s"] > 0 and h["decisions"] > 0 and h["workers"] == 2
        # Each history in a fresh process: its own peaks, a Python's worth at least.
        assert 10 <= h["peak_rss_parent_mb"] < 1000 and h["peak_rss_worker_mb"] >= 10
        assert h["peak_rss_bound_mb"] >= h["peak_rss_parent_mb"] + 2 * h["peak_rss_worker_mb"] - 1


def test_the_bench_report_shows_the_backtest_lines(tmp_path: Path) -> None:
    history = {
        "customers_generated": 10000,
        "lines": 78130,
        "customers": 10000,
        "decisions": 51339,
        "workers": 2,
        "chunks": 5,
        "seconds": 5.49,
        "events_per_s": 14232,
        "peak_rss_parent_mb": 59,
        "peak_rss_worker_mb": 76,
        "peak_rss_bound_mb": 211,
    }
    figures = {"customers": 10000, "days": 365, "scale": 10, "sample": history, "x10": history}
    out = tmp_path / "bench.md"
    report.write_report(out, result(backtest=figures))
    text = out.read_text()
    assert "## Backtest" in text
    assert (
        "| bench sample (10,000 customers, 78,130 lines) | 14,232 events/s (5.49 s) | 59 MiB | "
        "76 MiB | 211 MiB |" in text
    )
    assert "| 10x larger (10,000 customers" in text
    report.write_report(out, result())  # a run without the backtest: no section
    assert "## Backtest" not in out.read_text()
