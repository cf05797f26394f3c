"""kill -9 at points *inside* a batch (docs/design.md, "Crash safety").

The worker kills itself (``RETENTION_FAULT``, streams/worker/faults.py) after a batch's
outputs are acknowledged but before its table rows are written, after the rows
are written but before its offsets are committed, and in the ingest agent after
its bundles are acknowledged.  After a restart on the same data dir: every
decision of the offline reference is there with its verdict, nothing else is,
the nudges topic holds exactly the delivered ones, and any duplicate carries the
same trigger_id.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.core.timeutil import parse_timestamp, to_micros
from agents.offline.reference import compute_decisions
from streams.config import Config
from streams.feed.sample import generate
from tests.e2e.harness import Deployment, decision_key, end_offsets

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

END = "2026-11-01T00:00:00Z"
REPORT = Path(__file__).resolve().parents[2] / "artifacts" / "crash-batch-results.json"


@pytest.fixture(scope="module")
def history() -> tuple[list[bytes], dict[tuple[str, str, int, str, str], tuple[str, str, bool]]]:
    until = to_micros(parse_timestamp(END))
    lines = list(generate(2500, 365, seed=11, end=until))
    expected = {
        decision_key(d): (d["trigger_id"], d["outcome"], bool(d["holdout"]))
        for d in compute_decisions(lines, Config(), until=until).decisions
    }
    return lines, expected


# Small batches; the slice points count outputs (streams/worker/faults.py), so the kill
# lands mid-replay however the batches happen to be cut.  `after_writes` stays in
# `make test` as the representative: its restart replays a batch whose outputs *and*
# rows were sent but whose events were not acked.  The other three points (83-96 s
# each) run in `make test-slow` (docs/testing.md), which keeps `make test` within its
# budget.
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param("ingest_after_sends:20", marks=SLOW),
        pytest.param("after_sends:4000", marks=SLOW),
        "after_writes:8000",
        pytest.param("after_batch:1", marks=SLOW),
    ],
)
async def test_kill9_inside_a_batch_loses_nothing(
    make_deployment: Any,
    history: tuple[list[bytes], dict[tuple[str, str, int, str, str], tuple[str, str, bool]]],
    fault: str,
) -> None:
    lines, expected = history
    dep: Deployment = make_deployment(RETENTION_FAULT=fault, RETENTION_BATCH_MAX="500")
    worker = dep.start_worker()
    await dep.produce(lines, until=END)
    assert worker.proc is not None
    code = worker.proc.wait(300)
    assert code == -9, f"the worker did not reach {fault}: exit {code}\n{worker.log_tail()}"
    killed_at = sum((await end_offsets(dep.config, [dep.config.topics.decisions])).values())
    assert killed_at < len(expected), "killed too late to prove anything"

    del worker.env["RETENTION_FAULT"]
    worker.start()  # same data dir, same group: a real restart
    await dep.wait_idle(timeout=600)
    assert worker.alive, worker.log_tail()

    decisions = await dep.read(dep.config.topics.decisions)
    got: dict[tuple[str, str, int, str, str], tuple[str, str, bool]] = {}
    for d in decisions:
        verdict = (d["trigger_id"], d["outcome"], bool(d["holdout"]))
        # A duplicate is the same decision: same trigger_id, same verdict.
        first = got.setdefault(decision_key(d), verdict)
        if first != verdict:  # what this customer saw, for the report
            cid = d["customer_id"]
            seen = [
                (x["rule"], x["step"], x["due_at"], x["outcome"])
                for x in decisions
                if x["customer_id"] == cid
            ]
            ref = sorted((k[1], k[2], k[4], v[1]) for k, v in expected.items() if k[0] == cid)
            print("STREAM", seen, "\nREFERENCE", ref)
        assert first == verdict, (
            f"{decision_key(d)}: first {first[1:]}, then {verdict[1:]}, "
            f"reference {expected.get(decision_key(d), ('', 'none'))[1:]}"
        )
    lost, extra = set(expected) - set(got), set(got) - set(expected)
    assert not lost and not extra, f"lost {len(lost)}, unexpected {len(extra)}"
    assert got == expected

    nudges = await dep.read(dep.config.topics.nudges)
    delivered = {tid for tid, outcome, _ in expected.values() if outcome == "delivered"}
    assert {n["trigger_id"] for n in nudges} == delivered

    duplicates = sum(n - 1 for n in Counter(d["trigger_id"] for d in decisions).values())
    REPORT.parent.mkdir(exist_ok=True)
    results = orjson.loads(REPORT.read_bytes()) if REPORT.exists() else {}
    results[fault] = {
        "decisions": len(expected),
        "published_before_kill": killed_at,
        "duplicate_decisions_after_restart": duplicates,
        "duplicate_nudges_after_restart": len(nudges) - len(delivered),
    }
    REPORT.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"{fault}: {len(expected)} decisions, killed at {killed_at}, {duplicates} duplicates")
