"""A non-default rules file gives the same decisions live (1 worker; 2 workers with
kill -9 of one mid-stream), in `retention report --from-file` and in `retention rules
backtest` (issue 20 "Done when"; docs/rules.md "Rules file", "Backtest").

The file, tests/fixtures/rules/e2e.toml, has firings due at the same instant with
and without arbitration (cross_sell, second_purchase: `outranked`; check_in:
`min_gap`), a transactional rule and an audience that turns false before a step
(winback's step 2, after the lifecycle's at_risk move).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.core.timeutil import parse_timestamp, to_micros
from agents.offline.reference import compute_decisions
from streams.config import Config
from streams.feed.sample import generate
from tests.e2e.harness import (
    Deployment,
    Expected,
    compare_with_reference,
    published,
    wait_published,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "tests" / "fixtures" / "rules" / "e2e.toml"
END = "2026-11-01T00:00:00Z"
CUSTOMERS = 300
# A killed member leaves the group when its session times out (Faust's default 60 s);
# 10 s lets the survivor take over sooner (as in tests/e2e/test_faults.py).
FAST_TAKEOVER = {"BROKER_SESSION_TIMEOUT": "10"}

# trigger_id -> (outcome, rule_version)
Verdicts = dict[str, tuple[str, str | None]]


def verdicts(decisions: list[dict[str, Any]]) -> Verdicts:
    out: Verdicts = {}
    for d in decisions:
        value = (d["outcome"], d.get("rule_version"))
        assert out.setdefault(d["trigger_id"], value) == value, d  # a repeat is the same
    return out


def tally(decisions: list[dict[str, Any]]) -> Counter[tuple[str, int, str]]:
    """Decisions per (rule, step, outcome): what the backtest counts."""
    return Counter((d["rule"], int(d["step"]), d["outcome"]) for d in decisions)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes], Expected]:
    """300 customers over 120 days (the generator's noisy defaults) and the reference."""
    until = to_micros(parse_timestamp(END))
    lines = list(generate(CUSTOMERS, 120, seed=31, end=until))
    path = tmp_path_factory.mktemp("rules-e2e") / "history.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = compute_decisions(lines, Config(), rules=RULES.read_text(), until=until)
    outcomes = {d["outcome"] for d in result.decisions}
    # The file does what it is here for: both collisions and the transactional rule.
    assert {"outranked", "min_gap", "delivered", "holdout"} <= outcomes
    rules = {d["rule"] for d in result.decisions}
    assert {"review_request", "cross_sell", "second_purchase", "check_in", "winback"} <= rules
    assert not any(d["rule"] == "winback" and d["step"] == 2 for d in result.decisions)
    return path, lines, Expected.of(result)


def retention(*args: str, **env: str) -> Any:
    """`retention ARGS` in a subprocess with only ``env`` as settings; its JSON output."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    out = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()
    return orjson.loads(out.stdout)


async def test_one_worker_equals_the_report_and_the_backtest(
    make_deployment: Callable[..., Deployment],
    history: tuple[Path, list[bytes], Expected],
    tmp_path: Path,
) -> None:
    path, lines, expected = history
    dep = make_deployment(RETENTION_RULES_FILE=str(RULES))
    dep.start_worker()
    await dep.produce(lines, until=END)
    await dep.wait_idle(timeout=300)
    assert all(w.alive for w in dep.workers), dep.workers[0].log_tail()
    await compare_with_reference(dep, expected, "rules_file_one_worker")
    stream = await dep.read(dep.config.topics.decisions)
    assert all(d.get("rule_version") for d in stream)

    home = str(tmp_path / "home")
    report = retention(
        "report",
        "--from-file",
        str(path),
        "--until",
        END,
        "--decisions",
        "--format",
        "json",
        RETENTION_RULES_FILE=str(RULES),
        RETENTION_HOME=home,
    )
    assert verdicts(stream) == verdicts(report)

    # The backtest counts decisions due before --until; its FILE is explicit.
    backtest = retention(
        "rules",
        "backtest",
        str(RULES),
        "--from-file",
        str(path),
        "--until",
        END,
        "--format",
        "json",
        "--workers",
        "1",
        RETENTION_HOME=home,
    )
    end = to_micros(parse_timestamp(END))
    firsts = {d["trigger_id"]: d for d in stream}.values()
    counted = tally([d for d in firsts if to_micros(parse_timestamp(d["due_at"])) < end])
    figures: Counter[tuple[str, int, str]] = Counter()
    for rule in backtest["by_rule"]:
        for step in rule["steps"]:
            totals = step["totals"]
            figures[(rule["rule"], step["step"], "delivered")] = totals["delivered"]
            for code, n in totals["suppressed"].items():
                figures[(rule["rule"], step["step"], code)] = n
    assert +figures == counted
    assert backtest["totals"]["firings"] == sum(counted.values())


async def test_two_workers_and_kill_9_of_one_mid_stream(
    make_deployment: Callable[..., Deployment],
    history: tuple[Path, list[bytes], Expected],
) -> None:
    _, lines, expected = history
    dep = make_deployment(RETENTION_RULES_FILE=str(RULES), **FAST_TAKEOVER)
    w1, w2 = dep.start_worker(), dep.start_worker()
    await w1.wait_ready()
    await w2.wait_ready()
    topic = dep.config.topics.decisions
    feeder = asyncio.create_task(dep.produce_paced(lines, chunks=12, pause=0.5, until=END))
    await wait_published(dep, topic, len(expected.decisions) // 4, [w1, w2])
    w1.kill9()
    killed_at = await published(dep, topic)
    assert killed_at < len(expected.decisions), "killed too late to prove anything"
    await feeder
    await dep.wait_idle(timeout=300)
    assert w2.alive, w2.log_tail()
    await compare_with_reference(
        dep, expected, "rules_file_two_workers_kill9", published_before_kill=killed_at
    )
