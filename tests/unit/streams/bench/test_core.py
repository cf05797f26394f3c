"""python -m streams.bench_core: the pure-core measurement whose digests vouch for
exact semantics (docs/performance.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from agents.core.rules import default_text
from streams.bench import core as bench_core

CHURN_BENCH = (
    Path(__file__).resolve().parents[4] / "tests" / "fixtures" / "rules" / "churn-bench.toml"
)


def args(**kw: int | bool | str) -> argparse.Namespace:
    base = {"customers": 60, "days": 90, "seed": 7, "batch": 200, "partitions": 4}
    return argparse.Namespace(**{**base, **kw})


def test_the_digests_repeat_and_do_not_depend_on_the_batch_size() -> None:
    first = bench_core.run(args())
    assert first["messages"] > 300 and first["outputs"] > 0 and first["rows_written"] > 0
    again = bench_core.run(args(batch=37))
    for key in ("messages", "outputs", "outputs_digest", "rows_digest"):
        assert again[key] == first[key], key


def test_another_sample_gives_other_digests() -> None:
    a, b = bench_core.run(args()), bench_core.run(args(seed=8))
    assert a["outputs_digest"] != b["outputs_digest"]
    assert a["rows_digest"] != b["rows_digest"]


def test_zones_alone_change_no_output_and_windows_change_when_they_are_sent() -> None:
    plain = bench_core.run(args())
    zones = bench_core.run(args(zones=True))
    # Without a window a zone decides nothing: the same outputs, rows that keep it.
    assert zones["outputs_digest"] == plain["outputs_digest"]
    assert zones["rows_digest"] != plain["rows_digest"]
    windows = bench_core.run(args(windows=True))
    assert windows["outputs_digest"] != plain["outputs_digest"]
    assert windows["messages"] == plain["messages"]


def test_a_rules_file_runs_in_place_of_the_default(tmp_path: Path) -> None:
    """``--rules FILE`` (docs/benchmarks.md "churn_risk"): the default file given by
    name decides as without it; the churn_risk file decides more."""
    plain = bench_core.run(args())
    default = tmp_path / "default.toml"
    default.write_text(default_text())
    named = bench_core.run(args(rules=str(default)))
    assert named["outputs_digest"] == plain["outputs_digest"]
    churn = bench_core.run(args(rules=str(CHURN_BENCH)))
    assert churn["outputs"] > plain["outputs"]
    assert churn["messages"] == plain["messages"]
