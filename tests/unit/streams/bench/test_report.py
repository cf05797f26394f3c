"""retention bench's report: the figures it writes and the section it keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from agents.core.rules import default_text, load_rules
from streams.bench import churn, windows
from streams.bench import report as bench
from streams.feed.sample import generate


def result(**extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "date": "2026-12-02 02:00 UTC",
        "machine": "test",
        "customers": 100,
        "days": 30,
        "input_messages": 1234,
        "produce_msg_per_s": 1000,
        "raw_consume_decode_msg_per_s": 200000,
        "bare_faust_msg_per_s": 10000,
        "bare_faust_take_events_msg_per_s": 10500,
        "worker_events_per_s": 3100,
        "worker_seconds": 10.0,
        "worker_tail_seconds": 2.0,
        "worker_max_drift_seconds": 0.0,
        "worker_peak_rss_mb": 300,
        "bytes_per_customer": 3000,
        "ratio_worker_to_bare_faust": 0.31,
        "ratio_worker_to_raw": 0.0155,
        "settings": {
            "batch_max": 2000,
            "batch_within": 0.05,
            "producer_linger": 0.005,
            "producer_batch_bytes": 1048576,
            "commit_interval": 2.8,
            "partitions": 4,
        },
    }
    r.update(extra)
    return r


def test_the_report_keeps_the_text_after_the_marker_and_writes_json_beside_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.md"
    out.write_text(f"old table\n{bench.KEPT}\n## At 100,000 customers\nfigures\n")
    bench.write_report(out, result())
    text = out.read_text()
    assert "old table" not in text
    assert "| **worker / bare Faust agent** | **0.310** |" in text
    assert text.endswith(f"{bench.KEPT}\n## At 100,000 customers\nfigures\n")
    assert orjson.loads((tmp_path / "bench.json").read_bytes())["worker_events_per_s"] == 3100


def test_skipped_lines_and_the_large_scale_figures_show_in_the_table(tmp_path: Path) -> None:
    out = tmp_path / "big.md"
    r = result(
        bare_faust_msg_per_s=0,
        ratio_worker_to_bare_faust=None,
        ratio_worker_to_raw=None,
        recovery={"seconds": 41.5, "changelog_messages": 250000, "peak_rss_mb": 900},
        wall_clock_latency={
            "customers": 1000,
            "nudges": 900,
            "p50_seconds": 0.61,
            "p99_seconds": 1.2,
            "max_seconds": 1.4,
            "tick_interval": 1.0,
        },
    )
    bench.write_report(out, r)
    text = out.read_text()
    assert "| **worker / bare Faust agent** | **not measured** |" in text
    assert "| bare Faust agent (`async for`) | not measured |" in text
    assert "empty data dir (start to ready) | 41.5 s (250,000 changelog messages) |" in text
    assert "p50 / p99 / max (900 nudges) | 0.61 / 1.2 / 1.4 s |" in text
    assert bench.KEPT not in text  # nothing to keep in a new file


def test_percentiles_are_read_off_the_sorted_delays() -> None:
    delays = [float(x) for x in range(100, 0, -1)]  # 1..100, unsorted
    assert bench.percentile(delays, 0.5) == 51.0
    assert bench.percentile(delays, 0.99) == 100.0
    assert bench.percentile([], 0.5) == 0.0


def test_the_worker_cpu_seconds_show_per_input_message(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    bench.write_report(out, result(worker_cpu_seconds=12.3))
    assert "| worker CPU (user + system) | 12.3 s (9,968 µs per input message) |" in out.read_text()
    bench.write_report(out, result())  # an older result without the figure: no line
    assert "worker CPU" not in out.read_text()


def test_the_default_report_path_is_the_repositorys_docs() -> None:
    # make bench writes docs/benchmarks.md and keeps its figures in artifacts/bench.json;
    # a ROOT one level off (as after moving the module into streams/bench/) would drop a
    # stray docs/benchmarks.json beside it instead.
    from streams.bench import report

    assert (report.ROOT / "pyproject.toml").is_file()
    assert (report.ROOT / "docs" / "benchmarks.md").is_file()


def test_the_windows_runs_show_beside_the_worker_line_with_their_ratio_and_noise(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.md"
    figures = windows.cpu_figures(1000, off_cpu=[0.50, 0.48, 0.52], on_cpu=[0.54, 0.56])
    assert figures["ratio_on_to_off"] == round(550 / 500, 3)
    assert figures["noise_off_runs"] == round(40 / 500, 3)
    rates = {"off_events_per_s": [3100, 3050, 3000], "on_events_per_s": [2900, 2950]}
    bench.write_report(out, result(windows={**figures, **rates}))
    text = out.read_text()
    rows = [line for line in text.splitlines() if "µs | " in line and "events/s" in line]
    assert rows == [
        "| without windows (the worker line above) | 500.0 µs | 3,100 events/s |",
        "| **zones + windows** | 540.0 µs | 2,900 events/s |",
        "| without windows | 480.0 µs | 3,050 events/s |",
        "| **zones + windows** | 560.0 µs | 2,950 events/s |",
        "| without windows | 520.0 µs | 3,000 events/s |",
    ]
    assert "**Windows on / off: 1.100**" in text and "noise of 0.080" in text
    bench.write_report(out, result())  # a run with --skip-windows: no section
    assert "Zones and send windows" not in out.read_text()


def test_the_windows_rules_file_is_the_default_with_a_zone_and_a_window() -> None:
    rules = load_rules(windows.windows_rules_text())
    default = load_rules(default_text())
    assert [r.name for r in rules.rules] == [r.name for r in default.rules]
    assert all(r.send_window is not None for r in rules.rules)
    assert {r.send_window.default_zone for r in rules.rules if r.send_window} == {"Europe/Berlin"}


def test_the_churn_runs_show_after_the_windows_with_their_ratio_and_noise(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.md"
    figures = windows.cpu_figures(1000, off_cpu=[0.40, 0.42, 0.38], on_cpu=[0.44, 0.46])
    rates = {"off_events_per_s": [3100, 3050, 3000], "on_events_per_s": [2900, 2950]}
    bench.write_report(out, result(churn={**figures, **rates}))
    text = out.read_text()
    rows = [line for line in text.splitlines() if "µs | " in line and "events/s" in line]
    assert rows == [
        "| default rules (the worker line above) | 400.0 µs | 3,100 events/s |",
        "| **with churn_risk** | 440.0 µs | 2,900 events/s |",
        "| default rules | 420.0 µs | 3,050 events/s |",
        "| **with churn_risk** | 460.0 µs | 2,950 events/s |",
        "| default rules | 380.0 µs | 3,000 events/s |",
    ]
    assert "**churn_risk on / off: 1.125**" in text and "noise of 0.100" in text
    bench.write_report(out, result())  # a run with --skip-churn: no section
    assert "## churn_risk" not in out.read_text()


def test_the_churn_rules_file_is_the_default_plus_a_ladder_on_a_model_fitted_on_the_sample() -> (
    None
):
    end = 1_780_000_000_000_000
    lines = list(generate(2000, 365, seed=7, end=end))
    rules = load_rules(churn.churn_rules_text(lines, end, 65_536, 0))
    default = load_rules(default_text())
    assert [r.name for r in rules.rules] == [r.name for r in default.rules] + ["churn_risk"]
    assert rules.model is not None and set(rules.model.kinds) >= {"mbgnbd"}
    assert rules.model.time_unit == "day"
    churn_rule = rules.rule("churn_risk")
    assert churn_rule is not None
    assert [s.canonical()["p_alive_below"] for s in churn_rule.steps] == [0.6, 0.4, 0.2]
