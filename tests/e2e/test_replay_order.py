"""`retention replay FILE --until T` gives the decisions of `retention report
--from-file FILE --decisions --until T` whatever the order of the file's lines:
sorted by customer (as warehouse exports are), shuffled, reversed.

The history uses the generator's hostile options too: events later than the
allowed lateness, purchases re-delivered long after, orders re-sent under a new
event id stamped two hours later (which copy counts must not depend on the
file's order), opt-out and opt-in at the same instant, six currencies.  Each
case is one worker on its own topic prefix, fed by the real `retention replay`
command with a sort memory small enough that the file is spilled to disk in
several runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agents.core.timeutil import parse_timestamp, to_micros
from agents.offline.reference import ReferenceResult, compute_decisions
from streams.config import load_config
from streams.feed.history import event_time
from streams.feed.sample import generate
from streams.feed.sample_options import SampleOptions
from tests.e2e.harness import ROOT, Deployment, decision_key

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

END = "2026-11-01T00:00:00Z"
UNTIL = "2026-10-20T00:00:00Z"  # before the last events: those after it are held back
OPTIONS = SampleOptions(
    beyond_lateness_rate=0.01,
    far_duplicate_rate=0.02,
    consent_rate=0.1,
    consent_tie_rate=0.3,
    currencies=6,
    restamped_retry_rate=0.02,
)

REPLAY = [sys.executable, "-m", "streams.cli", "replay"]

Verdicts = dict[tuple[str, str, int, str, str], tuple[str, str, bool]]


@pytest.fixture(scope="module")
def history() -> list[bytes]:
    """1,500 customers over half a year, grouped by customer."""
    opts = dataclasses.replace(OPTIONS, customer_order=True)
    return list(generate(1500, 180, seed=21, end=to_micros(parse_timestamp(END)), options=opts))


def reorder(lines: list[bytes], order: str) -> list[bytes]:
    out = list(lines)
    if order == "shuffled":
        random.Random(5).shuffle(out)
    elif order == "reversed":
        out.reverse()
    return out


def late_share(lines: list[bytes], lateness: int) -> float:
    """Share of timed lines dated more than ``lateness`` before a line before them."""
    newest: int | None = None
    late = timed = 0
    for line in lines:
        t = event_time(line)
        if t is None:
            continue
        timed += 1
        if newest is not None and t < newest - lateness:
            late += 1
        newest = t if newest is None or t > newest else newest
    return late / timed


def verdicts(decisions: list[dict[str, Any]]) -> Verdicts:
    out: Verdicts = {}
    for d in decisions:
        value = (d["trigger_id"], d["outcome"], d["holdout"])
        # A repeated firing (at-least-once) must carry the same id and verdict.
        assert out.setdefault(decision_key(d), value) == value
    return out


@pytest.fixture(scope="module")
def reference(history: list[bytes]) -> ReferenceResult:
    config = load_config({}, use_stack_file=False)
    result = compute_decisions(history, config, until=to_micros(parse_timestamp(UNTIL)))
    outcomes = {d["outcome"] for d in result.decisions}
    assert len(result.decisions) > 4000
    assert outcomes >= {"delivered", "holdout", "min_gap", "opted_out"}
    return result


@pytest.mark.timeout(240)
# "by customer" and "reversed" run in the slow tier (make test-slow): "shuffled" is
# the stronger case and the whole suite keeps within its 35 minutes (docs/testing.md).
@pytest.mark.parametrize(
    "order",
    [
        pytest.param("by customer", marks=pytest.mark.slow),
        "shuffled",
        pytest.param("reversed", marks=pytest.mark.slow),
    ],
)
async def test_replay_in_any_order_gives_the_reference_decisions(
    make_deployment: Any,
    history: list[bytes],
    reference: ReferenceResult,
    tmp_path: Path,
    order: str,
) -> None:
    lines = reorder(history, order)
    day = 86_400_000_000
    # Hostile: most events would be later than the stream's allowed lateness.
    assert late_share(lines, day) > 0.3
    config = load_config({}, use_stack_file=False)
    # The reference does not depend on the order of the file either.
    assert compute_decisions(lines, config, until=reference.until).decisions == (
        reference.decisions
    )
    path = tmp_path / f"{order.replace(' ', '-')}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    dep: Deployment = make_deployment()
    worker = dep.start_worker()
    await worker.wait_ready()
    started = time.monotonic()
    # The command a user runs; 1 MiB of sort memory spills this 3 MB file in runs.
    done = await asyncio.to_thread(
        subprocess.run,
        [*REPLAY, str(path), "--until", UNTIL, "--sort-memory", "1", "--tmpdir", str(tmp_path)],
        cwd=ROOT,
        env=dep.env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    said = done.stdout.decode()
    assert "in event-time order" in said and "sorted in" in said, said
    assert "events dated after --until not sent" in said, said
    assert f"stream clock advanced to {UNTIL}" in said, said
    await dep.wait_idle(timeout=180)
    assert worker.alive, worker.log_tail()
    elapsed = time.monotonic() - started

    topics = dep.config.topics
    got = verdicts(await dep.read(topics.decisions))
    expected = verdicts(reference.decisions)
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
    assert not missing and not extra and not wrong, (
        f"{order}: {len(missing)} missing e.g. {missing[:3]}, {len(extra)} extra e.g. "
        f"{extra[:3]}, {len(wrong)} with another verdict e.g. "
        f"{[(k, got[k], expected[k]) for k in wrong[:3]]}"
    )
    # The nudges topic carries exactly the delivered decisions.
    nudges = {n["trigger_id"] for n in await dep.read(topics.nudges)}
    assert nudges == {v[0] for v in expected.values() if v[1] == "delivered"}
    # Every line without a usable time went first and is a dead letter, as offline.
    codes = Counter(d["error_code"] for d in await dep.read(topics.dlq))
    for code in ("invalid_json", "naive_timestamp"):
        assert codes[code] == reference.dead_letters[code] > 0, (code, codes)
    print(
        f"{order}: {len(expected)} decisions equal to the reference; replay+drain {elapsed:.0f} s"
    )
