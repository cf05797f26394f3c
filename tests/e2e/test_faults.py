"""Faults against the real broker (README "Crash safety"): after each, every decision
of the offline reference is on the decisions topic with its verdict, nothing else
is, a repeat carries the same trigger_id, the nudges topic holds exactly the
delivered decisions and the outcomes topic exactly the reference's conversions.

Each test prints (``pytest -s``) and records in ``artifacts/fault-results.json``
the decisions compared, lost and duplicated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from agents.core.timeutil import MICROS_PER_DAY, MICROS_PER_SECOND, iso, parse_timestamp, to_micros
from agents.offline.reference import compute_decisions
from streams.config import Config
from streams.kafka import client_kwargs
from streams.sample import generate
from tests.e2e.harness import (
    Deployment,
    Expected,
    WorkerProcess,
    compare_with_reference,
    marker_before,
    published,
    wait_published,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

END = "2026-11-01T00:00:00Z"
CUSTOMERS = 1500
# A killed member leaves the consumer group only when its session times out
# (Faust's default: 60 s); 10 s lets the survivor (or the restarted worker) take
# over sooner without changing what is tested.  Faust reads it from the environment.
FAST_TAKEOVER = {"BROKER_SESSION_TIMEOUT": "10"}


@pytest.fixture(scope="module")
def history() -> tuple[list[bytes], Expected]:
    """1,500 customers over a year (the generator's noisy defaults), and the reference."""
    until = to_micros(parse_timestamp(END))
    lines = list(generate(CUSTOMERS, 365, seed=23, end=until))
    expected = Expected.of(compute_decisions(lines, Config(), until=until))
    assert len(expected.decisions) > 5000 and expected.outcomes
    return lines, expected


async def owned(worker: WorkerProcess) -> int:
    return int(await worker.metric("retention_partitions_owned") or 0)


async def committed(dep: Deployment, topic: str) -> int:
    """Offsets the app's group has committed on ``topic`` (all partitions)."""
    admin = AIOKafkaAdminClient(**client_kwargs(dep.config))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(dep.config.app_id)
    finally:
        await admin.close()
    return sum(max(0, m.offset) for tp, m in offsets.items() if tp.topic == topic)


@pytest.mark.timeout(600)
async def test_second_worker_joins_mid_replay_then_first_is_killed(
    make_deployment: Callable[..., Deployment], history: tuple[list[bytes], Expected]
) -> None:
    lines, expected = history
    dep = make_deployment(**FAST_TAKEOVER)
    topic = dep.config.topics.decisions
    a, b = len(lines) * 3 // 10, len(lines) * 6 // 10
    w1 = dep.start_worker()
    await w1.wait_ready()
    await dep.produce(lines[:a], until=marker_before(lines[a:]))
    await wait_published(dep, topic, 1, [w1])
    # w2 joins while the replay goes on: the group rebalances under load.
    w2 = dep.start_worker()
    feeder = asyncio.create_task(
        dep.produce_paced(lines[a:b], chunks=20, pause=0.5, until=marker_before(lines[b:]))
    )
    await w2.wait_ready()
    deadline = time.monotonic() + 120
    while await owned(w2) == 0:
        assert time.monotonic() < deadline, f"w2 got no partition\n{w2.log_tail()}"
        await asyncio.sleep(0.5)
    await feeder
    before_join_done = await published(dep, topic)
    shared = (await owned(w1), await owned(w2))
    # The rest of the replay, and kill -9 of the first worker once it is under way.
    feeder = asyncio.create_task(dep.produce(lines[b:], until=END))
    await wait_published(dep, topic, before_join_done + 50, [w1, w2])
    w1.kill9()
    killed_at = await published(dep, topic)
    assert killed_at < len(expected.decisions), "killed too late to prove anything"
    await feeder
    await dep.wait_idle(timeout=400)
    assert w2.alive, w2.log_tail()
    assert await owned(w2) == dep.config.partitions  # the survivor took everything over
    counts = await compare_with_reference(
        dep,
        expected,
        "second_worker_joins_then_kill9",
        partitions_w1_w2=list(shared),
        published_before_kill=killed_at,
    )
    assert counts.lost == 0


# --- wall-clock mode -------------------------------------------------------------

# A year of history squeezed into a few seconds of wall time, and ladders in
# seconds (any ISO 8601 duration is allowed, README "Configuration").
WALL_DAYS = 60
WALL_SPAN = 24 * MICROS_PER_SECOND  # the whole history, in wall time
WALL_LEAD = 15 * MICROS_PER_SECOND  # first event this far after the produce starts
WALL_ENV = {
    "RETENTION_CLOCK": "wall",
    "RETENTION_SECOND_PURCHASE_STEPS": "PT2S,PT4S,PT8S",
    "RETENTION_INACTIVITY_STEPS": "PT3S,PT6S,PT12S",
    "RETENTION_OVERDUE_FLOOR": "PT2S",
    "RETENTION_MIN_GAP": "PT1S",
    "RETENTION_FREQUENCY_WINDOW": "PT10S",
    "RETENTION_ATTRIBUTION_WINDOW": "PT2S",
    "RETENTION_ACTIVE_WINDOW": "PT30S",
}


def squeeze(lines: list[bytes], start: int, t0: int) -> list[bytes]:
    """Map event times from [start, start + WALL_DAYS] to [t0, t0 + WALL_SPAN].

    Lines without a readable ``occurred_at`` (the sample's malformed ones) stay as
    they are: they are dead letters either way.
    """
    out = []
    scale = WALL_SPAN / (WALL_DAYS * MICROS_PER_DAY)
    for line in lines:
        try:
            event = orjson.loads(line)
            t = to_micros(parse_timestamp(event["occurred_at"]))
        except Exception:
            out.append(line)
            continue
        event["occurred_at"] = iso(t0 + int((t - start) * scale))
        out.append(orjson.dumps(event))
    return out


@pytest.mark.timeout(300)
async def test_wall_clock_mode_end_to_end(make_deployment: Callable[..., Deployment]) -> None:
    end = to_micros(parse_timestamp(END))
    raw = list(generate(1000, WALL_DAYS, seed=29, end=end))
    dep = make_deployment(**WALL_ENV)
    w = dep.start_worker()
    await w.wait_ready()
    produced_at = time.time_ns() // 1000
    t0 = produced_at + WALL_LEAD
    lines = squeeze(raw, end - WALL_DAYS * MICROS_PER_DAY, t0)
    # Every event is dated after its send, as live events can be within the
    # future tolerance: it waits in the customer's pending list until its time.
    await dep.produce(lines)
    sent_in = time.time_ns() // 1000 - produced_at
    assert sent_in < WALL_LEAD, f"producing took {sent_in / 1e6:.1f} s, over the lead"
    last_event = t0 + WALL_SPAN
    # Let the wall clock run past the history and most of the ladders' steps.
    await asyncio.sleep((last_event - time.time_ns() // 1000) / 1e6 + 14)
    read_at = time.time_ns() // 1000
    # Decisions due up to a few seconds ago must all be out by now (ticks every
    # second); the ones due since may still be on their way.
    until = read_at - 5 * MICROS_PER_SECOND
    assert w.alive, w.log_tail()
    decisions = await dep.read(dep.config.topics.decisions)
    fired = [to_micros(parse_timestamp(d["fired_at"])) for d in decisions]
    dues = [to_micros(parse_timestamp(d["due_at"])) for d in decisions]
    assert all(d["clock"] == "wall" for d in decisions)
    # Never early: a step fires once the wall clock has passed its due time.
    early = [d for d, f, u in zip(decisions, fired, dues, strict=True) if f < u]
    assert not early, early[:3]
    # Most steps fired after every event was in, from the wall clock alone.
    assert sum(1 for u in dues if u > last_event) > 100
    lateness = sorted(f - u for f, u in zip(fired, dues, strict=True))
    reference = compute_decisions(lines, dep.config, until=until, now=produced_at)
    expected = Expected.of(reference)
    assert len(expected.decisions) > 1000
    counts = await compare_with_reference(
        dep,
        expected,
        "wall_clock_mode",
        due_until=until,
        compared_due_until=iso(until),
        fired_after_due_p50_ms=lateness[len(lateness) // 2] // 1000,
        fired_after_due_max_ms=lateness[-1] // 1000,
        decisions_due_after_last_event=sum(1 for u in dues if u > last_event),
    )
    assert counts.lost == 0
