"""Faults against the real broker (docs/crash-safety.md "Crash safety"): after each, every decision
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
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from agents.core.timeutil import MICROS_PER_DAY, MICROS_PER_SECOND, iso, parse_timestamp, to_micros
from agents.offline.reference import compute_decisions
from streams.config import Config
from streams.feed.sample import generate
from streams.kafka import client_kwargs
from tests.e2e.harness import (
    Deployment,
    Expected,
    WorkerProcess,
    compare_with_reference,
    marker_before,
    published,
    wait_published,
)
from tests.fixtures.kafka import RestartableStack

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


@dataclass
class Joined:
    """Two workers sharing the partitions after the second joined mid-replay."""

    dep: Deployment
    w1: WorkerProcess
    w2: WorkerProcess
    shared: tuple[int, int]  # partitions owned by w1 and by w2 once w2 has joined
    published: int  # decisions on the decisions topic by then


async def second_worker_joins_mid_replay(
    make_deployment: Callable[..., Deployment], lines: list[bytes], b: int, chunks: int
) -> Joined:
    """w1 replays the first 30 % of ``lines``; w2 joins while ``lines`` up to ``b`` are
    produced paced in ``chunks`` (the group rebalances under load).  Returns once w2
    owns a partition and that part of the replay is produced."""
    dep = make_deployment(**FAST_TAKEOVER)
    topic = dep.config.topics.decisions
    a = len(lines) * 3 // 10
    w1 = dep.start_worker()
    await w1.wait_ready()
    await dep.produce(lines[:a], until=marker_before(lines[a:]))
    await wait_published(dep, topic, 1, [w1])
    w2 = dep.start_worker()
    feeder = asyncio.create_task(
        dep.produce_paced(lines[a:b], chunks=chunks, pause=0.5, until=marker_before(lines[b:]))
    )
    await w2.wait_ready()
    deadline = time.monotonic() + 120
    while await owned(w2) == 0:
        assert time.monotonic() < deadline, f"w2 got no partition\n{w2.log_tail()}"
        await asyncio.sleep(0.5)
    await feeder
    shared = (await owned(w1), await owned(w2))
    return Joined(dep, w1, w2, shared, await published(dep, topic))


@pytest.mark.timeout(600)
async def test_second_worker_joins_mid_replay_then_first_is_killed(
    make_deployment: Callable[..., Deployment], history: tuple[list[bytes], Expected]
) -> None:
    lines, expected = history
    b = len(lines) * 6 // 10
    joined = await second_worker_joins_mid_replay(make_deployment, lines, b, chunks=20)
    dep, w1, w2, shared = joined.dep, joined.w1, joined.w2, joined.shared
    topic = dep.config.topics.decisions
    # The rest of the replay, and kill -9 of the first worker once it is under way.
    feeder = asyncio.create_task(dep.produce(lines[b:], until=END))
    await wait_published(dep, topic, joined.published + 50, [w1, w2])
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


# A rolling restart (docs/crash-safety.md "Other faults"). It gave a decision the reference
# lacks until the consumer stopped its flow at every rebalance and seek (docs/crash-safety.md
# "Flow stopped at every rebalance and seek"); the recorded runs are in CHANGELOG.md.
# In the slow tier (make test-slow): the kill -9 variant above is the harder handover,
# and the whole suite keeps within its 35 minutes (docs/testing.md).
@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_second_worker_joins_mid_replay_then_first_is_stopped_gracefully(
    make_deployment: Callable[..., Deployment], history: tuple[list[bytes], Expected]
) -> None:
    """A rolling restart's shape: w2 joins under load, then w1 gets SIGTERM while the
    replay goes on, so w2 takes every partition (a graceful leave, no session timeout)."""
    lines, expected = history
    b = len(lines) * 5 // 10
    joined = await second_worker_joins_mid_replay(make_deployment, lines, b, chunks=10)
    dep, w1, w2, shared = joined.dep, joined.w1, joined.w2, joined.shared
    topic = dep.config.topics.decisions
    # The rest of the replay lasts >= 9.5 s; w1 is stopped once it is under way.
    feeder = asyncio.create_task(dep.produce_paced(lines[b:], chunks=20, pause=0.5, until=END))
    await wait_published(dep, topic, joined.published + 50, [w1, w2])
    started = time.monotonic()
    w1.stop(timeout=30)
    took = time.monotonic() - started
    assert w1.proc is not None
    code = w1.proc.returncode
    stopped_at = await published(dep, topic)
    assert not feeder.done() and stopped_at < len(expected.decisions), "stopped too late"
    assert code != -9, f"no graceful stop within 30 s\n{w1.log_tail()}"
    # w2 takes over every partition while the replay is still being produced.
    deadline = time.monotonic() + 60
    while await owned(w2) != dep.config.partitions:
        assert time.monotonic() < deadline, f"w2 did not take over\n{w2.log_tail()}"
        await asyncio.sleep(0.2)
    took_over = time.monotonic() - started
    replay_running_at_takeover = not feeder.done()
    await feeder
    await dep.wait_idle(timeout=300)
    assert w2.alive, w2.log_tail()
    assert await owned(w2) == dep.config.partitions
    counts = await compare_with_reference(
        dep,
        expected,
        "second_worker_joins_then_first_sigterm",
        partitions_w1_w2=list(shared),
        published_before_stop=stopped_at,
        exit_code=code,
        stop_seconds=round(took, 1),
        takeover_seconds=round(took_over, 1),
        replay_running_at_takeover=replay_running_at_takeover,
    )
    assert counts.lost == 0


@pytest.mark.timeout(600)
async def test_restart_on_an_empty_data_dir_recovers_from_the_changelog(
    make_deployment: Callable[..., Deployment], history: tuple[list[bytes], Expected]
) -> None:
    lines, expected = history
    dep = make_deployment(**FAST_TAKEOVER)
    topics = dep.config.topics
    w = dep.start_worker()
    half = len(lines) // 2
    await dep.produce(lines[:half], until=marker_before(lines[half:]))
    await wait_published(dep, topics.decisions, len(expected.decisions) // 10, [w])
    # Kill once the group has committed internal messages (every ~3 s): those are
    # not replayed, so their effect on the table can only come back from the changelog.
    deadline = time.monotonic() + 60
    while (done := await committed(dep, topics.customer_events)) == 0:
        assert time.monotonic() < deadline, f"nothing committed\n{w.log_tail()}"
        await asyncio.sleep(0.2)
    w.kill9()
    killed_at = await published(dep, topics.decisions)
    w.wipe_data()
    assert not w.data_dir.exists()
    w.start()
    await w.wait_ready()
    await dep.produce(lines[half:], until=END)
    await dep.wait_idle(timeout=400)
    assert w.alive, w.log_tail()
    await compare_with_reference(
        dep,
        expected,
        "restart_on_empty_data_dir",
        published_before_kill=killed_at,
        internal_committed_before_kill=done,
    )


@pytest.mark.timeout(600)
async def test_broker_stopped_and_restarted_mid_replay(
    restartable_stack: RestartableStack,
    unique_prefix: str,
    tmp_path: Path,
    history: tuple[list[bytes], Expected],
) -> None:
    lines, expected = history
    info = restartable_stack.info
    assert info is not None
    dep = Deployment(info.kafka, info.redis, unique_prefix, tmp_path / "dep", FAST_TAKEOVER)
    topic = dep.config.topics.decisions
    w = dep.start_worker()
    try:
        await dep.produce(lines, until=END)
        await wait_published(dep, topic, len(expected.decisions) // 10, [w])
        stopped_at = await published(dep, topic)
        down_for = restartable_stack.stop_broker()
        await asyncio.sleep(10)  # the broker stays down for a while
        survived_outage = w.alive
        up_in = await asyncio.to_thread(restartable_stack.start_broker)
        restarts = 0
        # A supervisor's job (systemd, Kubernetes): start the worker again if it exited.
        deadline = time.monotonic() + 400
        while True:
            if not w.alive:
                restarts += 1
                assert restarts <= 3, f"worker keeps exiting\n{w.log_tail()}"
                w.start()
            try:
                await dep.wait_idle(timeout=30)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, w.log_tail()
        assert w.alive, w.log_tail()
        await compare_with_reference(
            dep,
            expected,
            "broker_restart_mid_replay",
            published_before_stop=stopped_at,
            broker_stop_seconds=round(down_for, 1),
            broker_ready_seconds=round(up_in, 1),
            worker_survived_outage=survived_outage,
            worker_restarts=restarts,
        )
    finally:
        dep.stop_all()


@pytest.mark.timeout(600)
async def test_sigterm_mid_stream_then_restart(
    make_deployment: Callable[..., Deployment], history: tuple[list[bytes], Expected]
) -> None:
    lines, expected = history
    dep = make_deployment()
    topic = dep.config.topics.decisions
    w = dep.start_worker()
    # The stream keeps flowing while the worker is stopped and restarted.
    feeder = asyncio.create_task(dep.produce_paced(lines, chunks=10, pause=1.0, until=END))
    await wait_published(dep, topic, len(expected.decisions) // 10, [w])
    started = time.monotonic()
    w.stop(timeout=30)
    took = time.monotonic() - started
    assert w.proc is not None
    code = w.proc.returncode
    stopped_at = await published(dep, topic)
    assert not feeder.done() and stopped_at < len(expected.decisions), "stopped too late"
    # A graceful stop: the worker exits by itself (not the kill -9 after 30 s).
    assert code != -9, f"no graceful stop within 30 s\n{w.log_tail()}"
    w.start()
    await feeder
    await dep.wait_idle(timeout=400)
    assert w.alive, w.log_tail()
    await compare_with_reference(
        dep,
        expected,
        "sigterm_then_restart",
        published_before_stop=stopped_at,
        exit_code=code,
        stop_seconds=round(took, 1),
    )


# --- wall-clock mode -------------------------------------------------------------

# A year of history squeezed into a few seconds of wall time, and ladders in
# seconds (any ISO 8601 duration is allowed, docs/configuration.md "Configuration").
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
