"""A stream clock that never starts, and the heartbeat that keeps clocks moving, on a
real worker and broker (docs/time.md "Time", "A stuck clock" and "Heartbeat").

Producers that key by ``customer_id`` (as ``retention produce`` does) send a
customer partition events from one input partition only and no
``control/advance``: its stream clock, the minimum over every input partition,
never starts.  The worker says so from the first event on (``/metrics``, then
``/health/ready`` and its log); with ``RETENTION_STREAM_HEARTBEAT`` the leader
advances every input partition and the decisions come.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from tests.e2e.harness import Deployment, WorkerProcess, published, wait_published
from tests.e2e.test_ops import metric_values, total

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CUSTOMERS = 40


def purchases(now: datetime) -> list[bytes]:
    """One first order per customer ten days ago: the 7-day step of second_purchase
    is due three days ago, the rules' other steps are still ahead."""
    at = (now - timedelta(days=10)).isoformat().replace("+00:00", "Z")
    return [
        orjson.dumps(
            {
                "schema": "purchase/1",
                "event_id": f"evt-{n}",
                "customer_id": f"cus_{n}",
                "occurred_at": at,
                "order_id": f"ORD-{n}",
                "amount": 20.0,
                "currency": "EUR",
            }
        )
        for n in range(CUSTOMERS)
    ]


async def until(
    what: str, worker: WorkerProcess, check: Callable[[], Awaitable[bool]], timeout: float = 30.0
) -> None:
    """Poll ``check`` every 0.5 s until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert worker.alive, worker.log_tail()
        assert time.monotonic() < deadline, f"{what} after {timeout} s\n{worker.log_tail()}"
        await asyncio.sleep(0.5)


async def test_a_clock_that_never_starts_is_reported_and_the_heartbeat_starts_it(
    deployment: Deployment,
) -> None:
    dep = deployment
    dep.extra_env["RETENTION_CLOCK_IDLE_TIMEOUT"] = "PT2S"
    decisions = dep.config.topics.decisions
    first = dep.start_worker()
    await first.wait_ready()
    await dep.produce(purchases(datetime.now(UTC)))  # keyed by customer_id, no marker

    async def metrics() -> dict[str, float]:
        return metric_values((await first.get("/metrics"))[2].decode())

    async def taken_in() -> bool:
        return total(await metrics(), "retention_events_processed_total") == CUSTOMERS

    await until("events taken in", first, taken_in)
    values = await metrics()
    stuck = {k: v for k, v in values.items() if k.startswith("retention_stream_clock_stuck")}
    assert len(stuck) == 4  # every customer partition got events: each is seen
    assert not any(k.startswith("retention_stream_clock_seconds") for k in values)
    clocks = (await first.get_json("/health/ready"))["stream_clocks"]
    assert [(c["partition"], c["started"]) for c in clocks] == [(p, False) for p in range(4)]

    async def warned() -> bool:
        ready = await first.get_json("/health/ready")
        return sum("has not started" in w for w in ready["warnings"]) == 4

    await until("four 'has not started' warnings", first, warned)
    assert all(v > 0 for k, v in (await metrics()).items() if k in stuck)
    assert await published(dep, decisions) == 0

    async def logged() -> bool:
        return "has not started" in first.log_tail(200)

    await until("the warning in the log", first, logged)

    # The same deployment with the heartbeat: every clock starts, the due steps fire.
    first.stop()
    dep.extra_env["RETENTION_STREAM_HEARTBEAT"] = "PT1S"
    second = dep.start_worker()
    await second.wait_ready()
    assert await wait_published(dep, decisions, CUSTOMERS, [second], timeout=40) == CUSTOMERS
    fired = await dep.read(decisions)
    assert {(d["rule"], d["step"]) for d in fired} == {("second_purchase", 1)}

    async def moving() -> bool:
        ready = await second.get_json("/health/ready")
        values = metric_values((await second.get("/metrics"))[2].decode())
        clocks = [k for k in values if k.startswith("retention_stream_clock_seconds")]
        return ready["warnings"] == [] and len(clocks) == 4

    await until("clocks moving, no warning", second, moving)
