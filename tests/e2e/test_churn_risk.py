"""The churn_risk rule end to end (issue 23 part 2; docs/prediction.md "The churn_risk
rule").

2,000 sample customers over 120 days, with tests/fixtures/rules/churn-e2e.toml: an
MBG/NBD ladder (P(alive) below 0.6, 0.4, 0.2 since the last order) beside
second_purchase, its ``[model]`` fitted by ``retention model fit --format toml`` on
the history's first two months (the command is in the file):

* through one worker and through two, the decisions equal the offline reference's
  ``compute_decisions`` and each other's; steps crossed at their anchor are decided
  ``skipped`` (and never sent); nothing is sent twice;
* a model fitted on a month more (tests/fixtures/rules/churn-e2e-refit.toml)
  published with ``retention rules publish --effective T`` mid-stream: the decisions
  still equal the reference's given the change, and there is no mass send at T —
  the churn nudges due in the hour after T are at most the hour before's plus 3,
  while the steps the new model had already crossed at T (which a naive switch
  would send at once) are decided ``superseded``.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.core.rules import load_rules
from agents.core.timeutil import MICROS_PER_SECOND, iso, parse_timestamp, to_micros
from agents.offline.reference import compute_decisions
from streams.config import Config
from streams.feed.sample import generate
from tests.e2e.harness import Deployment, Expected, compare_with_reference

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "rules"
RULES = FIXTURES / "churn-e2e.toml"
REFIT = FIXTURES / "churn-e2e-refit.toml"
END = "2026-11-01T00:00:00Z"
# The refit's data ends here, and it is published to take effect here.
SWITCH = "2026-10-01T00:00:00Z"
CUSTOMERS = 2_000
DAYS = 120
SEED = 23
HOUR = 3_600 * MICROS_PER_SECOND


def occurred(line: bytes) -> int | None:
    try:
        return to_micros(parse_timestamp(orjson.loads(line)["occurred_at"]))
    except Exception:  # a malformed line: a dead letter whenever it goes
        return None


@pytest.fixture(scope="module")
def history() -> list[bytes]:
    return list(generate(CUSTOMERS, DAYS, seed=SEED, end=to_micros(parse_timestamp(END))))


def reference(lines: list[bytes], *, switch: bool) -> Expected:
    changes = [(to_micros(parse_timestamp(SWITCH)), REFIT.read_text())] if switch else []
    result = compute_decisions(
        lines,
        Config(),
        rules=RULES.read_text(),
        changes=changes,
        until=to_micros(parse_timestamp(END)),
    )
    return Expected.of(result)


async def replay(
    dep: Deployment, lines: list[bytes], workers: int, *, switch: bool = False
) -> dict[str, list[dict[str, Any]]]:
    started = [dep.start_worker() for _ in range(workers)]
    for w in started:
        await w.wait_ready()
    if not switch:
        await dep.produce(lines, until=END)
    else:
        t = to_micros(parse_timestamp(SWITCH))
        before = [x for x in lines if (at := occurred(x)) is None or at < t]
        after = [x for x in lines if (at := occurred(x)) is not None and at >= t]
        await dep.produce(before, until=iso(t - 1))
        publish = ["rules", "publish", str(REFIT), "--effective", SWITCH]
        out = subprocess.run(
            [sys.executable, "-m", "streams.cli", *publish],
            env={**dep.env, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        await dep.produce(after, until=END)
    await dep.wait_idle(timeout=300)
    for w in started:
        assert w.alive, w.log_tail()
    topics = dep.config.topics
    return {
        "decisions": await dep.read_sampled(topics.decisions),
        "nudges": await dep.read_sampled(topics.nudges),
        "outcomes": await dep.read(topics.outcomes),
    }


def check_churn(got: dict[str, list[dict[str, Any]]]) -> Counter[str]:
    """What a consumer sees of the ladder: skipped steps decided and never sent,
    nothing sent twice."""
    decisions, nudges = got["decisions"], got["nudges"]
    churn = Counter(d["outcome"] for d in decisions if d["rule"] == "churn_risk")
    assert churn["delivered"] > 100 and churn["skipped"] > 100, churn
    skipped = {d["trigger_id"] for d in decisions if d["outcome"] == "skipped"}
    assert all(d["rule"] == "churn_risk" for d in decisions if d["outcome"] == "skipped")
    sent = Counter(n["trigger_id"] for n in nudges)
    assert not skipped & set(sent), "a skipped step was sent"
    twice = [t for t, n in sent.items() if n > 1]
    assert not twice, f"{len(twice)} nudges sent twice, e.g. {twice[:3]}"
    return churn


@pytest.mark.timeout(600)
async def test_one_and_two_workers_decide_the_churn_ladder_like_the_reference(
    make_deployment: Callable[..., Deployment], history: list[bytes]
) -> None:
    expected = reference(history, switch=False)
    one = make_deployment(RETENTION_RULES_FILE=str(RULES))
    got_one = await replay(one, history, workers=1)
    check_churn(got_one)
    await compare_with_reference(one, expected, "churn_risk_one_worker")
    two = make_deployment(RETENTION_RULES_FILE=str(RULES))
    got_two = await replay(two, history, workers=2)
    check_churn(got_two)
    await compare_with_reference(two, expected, "churn_risk_two_workers")
    # And so two workers publish what one did, to the record.
    await compare_with_reference(
        two, Expected.of_records(got_one["decisions"], got_one["outcomes"]), "churn_risk_2_vs_1"
    )


@pytest.mark.timeout(600)
async def test_a_model_switched_mid_stream_sends_no_burst(
    make_deployment: Callable[..., Deployment], history: list[bytes]
) -> None:
    old = load_rules(RULES.read_text()).rule("churn_risk")
    new = load_rules(REFIT.read_text()).rule("churn_risk")
    assert old is not None and new is not None and old.version != new.version
    expected = reference(history, switch=True)
    dep = make_deployment(RETENTION_RULES_FILE=str(RULES))
    got = await replay(dep, history, workers=2, switch=True)
    check_churn(got)
    await compare_with_reference(dep, expected, "churn_risk_model_switch")
    churn = [d for d in got["decisions"] if d["rule"] == "churn_risk"]
    versions = Counter((d["rule_version"], d["outcome"]) for d in churn)
    # Both models decide: the old one before T, the new one after.
    assert versions[(old.version, "delivered")] > 100, versions
    assert versions[(new.version, "delivered")] > 50, versions
    # The steps the new model had already crossed at T are passed over, not sent.
    assert versions[(new.version, "superseded")] >= 20, versions
    t = to_micros(parse_timestamp(SWITCH))

    def delivered_in(lo: int, hi: int) -> int:
        return sum(
            1
            for d in churn
            if d["outcome"] == "delivered" and lo <= to_micros(parse_timestamp(d["due_at"])) < hi
        )

    before, after = delivered_in(t - HOUR, t), delivered_in(t, t + HOUR)
    assert after <= before + 3, (
        f"{after} churn nudges in the hour after the switch, {before} before"
    )
