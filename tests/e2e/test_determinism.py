"""The stream agrees with the offline reference, and with itself across worker
counts: same decisions, same trigger ids (SPEC section 5)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from agents.core.timeutil import iso, parse_timestamp, to_micros
from agents.offline.reference import compute_decisions
from streams.config import Config
from streams.sample import generate
from tests.e2e.harness import Deployment, decision_key

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

END = "2026-11-01T00:00:00Z"
CUSTOMERS = 10_000


@pytest.fixture(scope="module")
def sample_lines() -> list[bytes]:
    """10,000 customers over a year, with duplicates, retries, out-of-order,
    late and malformed messages (the generator's defaults)."""
    return list(generate(CUSTOMERS, 365, seed=11, end=to_micros(parse_timestamp(END))))


@pytest.fixture(scope="module")
def reference(sample_lines: list[bytes]) -> list[dict[str, Any]]:
    return compute_decisions(
        sample_lines, Config(), until=to_micros(parse_timestamp(END))
    ).decisions


async def run_stream(dep: Deployment, lines: list[bytes], workers: int) -> list[dict[str, Any]]:
    for _ in range(workers):
        dep.start_worker()
    if workers > 1:
        await asyncio.sleep(15)  # let the group settle so the replay is shared
    await dep.produce(lines, until=END)
    await dep.wait_idle(timeout=900)
    for w in dep.workers:
        assert w.alive, w.log_tail()
    return await dep.read(dep.config.topics.decisions)


def keyed(decisions: list[dict[str, Any]]) -> dict[tuple[str, str, int, str, str], str]:
    out: dict[tuple[str, str, int, str, str], str] = {}
    for d in decisions:
        key = decision_key(d)
        # A repeated firing must carry the same id (consumers deduplicate on it).
        assert out.setdefault(key, d["trigger_id"]) == d["trigger_id"]
    return out


async def test_one_and_two_workers_match_the_offline_reference(
    make_deployment: Callable[..., Deployment],
    sample_lines: list[bytes],
    reference: list[dict[str, Any]],
) -> None:
    expected = keyed(reference)
    assert len(expected) > 10_000  # a real workload, every rule and step present
    assert {(k[1], k[2]) for k in expected} == {
        ("second_purchase", 1),
        ("second_purchase", 2),
        ("second_purchase", 3),
        ("inactivity", 1),
        ("inactivity", 2),
        ("inactivity", 3),
    }

    one = keyed(await run_stream(make_deployment(), sample_lines, workers=1))
    missing = set(expected) - set(one)
    extra = set(one) - set(expected)
    assert not missing and not extra, (
        f"{len(missing)} missing e.g. {sorted(missing)[:3]}, "
        f"{len(extra)} extra e.g. {sorted(extra)[:3]}"
    )
    assert one == expected  # same trigger ids as the reference computes

    two = keyed(await run_stream(make_deployment(), sample_lines, workers=2))
    assert two == one


async def test_decisions_carry_due_time_order_and_readable_reasons(
    deployment: Deployment, sample_lines: list[bytes]
) -> None:
    lines = sample_lines[:3000]
    decisions = await run_stream(deployment, lines, workers=1)
    assert decisions
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for d in decisions:
        by_customer.setdefault(d["customer_id"], []).append(d)
        assert d["schema"] == "decision/1"
        assert d["reason"].startswith(("no second order", "no activity for"))
        assert iso(to_micros(parse_timestamp(d["due_at"]))) == d["due_at"]
    # Per customer (one partition), decisions come out in due-time order.
    for items in by_customer.values():
        dues = [to_micros(parse_timestamp(d["due_at"])) for d in items]
        assert dues == sorted(dues)
    nudges = await deployment.read(deployment.config.topics.nudges)
    assert Counter(n["trigger_id"] for n in nudges) == Counter(
        d["trigger_id"] for d in decisions if d["delivered"]
    )
