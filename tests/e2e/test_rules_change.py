"""A rules change published to a running deployment (issue 21 "Done when";
docs/operations.md "Changing rules live", docs/rules.md "Changing rules").

Stream mode: a history replayed in two parts with `retention rules publish FILE
--effective T` in between gives the offline reference's decisions given both
versions, for a `pin` file and a `restart` file (tests/fixtures/rules/change-*.toml),
with one worker, with two, and with a kill -9 of one worker during the switch.

Wall mode: two workers switch at T together (decisions due before T under the old
version, after it under the new one, the steps the new version passed over
superseded), and a version that arrives after its time raises the late counter the
`RetentionRulesLate` alert fires on.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from agents.core.rules import default_text, load_rules
from agents.core.rules.history import set_id
from agents.core.timeutil import MICROS_PER_SECOND, iso, parse_timestamp, to_micros
from agents.offline.reference import compute_decisions
from streams.config import Config
from streams.feed.sample import generate
from streams.kafka import client_kwargs
from streams.ops.registry import read_registry
from tests.e2e.harness import (
    Deployment,
    Expected,
    WorkerProcess,
    compare_with_reference,
    published,
    wait_published,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "rules"
FILES = {"pin": FIXTURES / "change-pin.toml", "restart": FIXTURES / "change-restart.toml"}
END = "2026-11-01T00:00:00Z"
# The switch: mid-way through the history, with customers in every ladder.
SWITCH = "2026-09-20T00:00:00Z"
CUSTOMERS = 300
DAYS = 120
# A killed member leaves the group when its session times out (Faust's default 60 s);
# 10 s lets the survivor take over sooner (as in tests/e2e/test_rules_file.py).
FAST_TAKEOVER = {"BROKER_SESSION_TIMEOUT": "10"}
DAY = 86_400 * MICROS_PER_SECOND


def occurred(line: bytes) -> int | None:
    try:
        return to_micros(parse_timestamp(orjson.loads(line)["occurred_at"]))
    except Exception:  # a malformed line: a dead letter whenever it goes
        return None


def split(lines: list[bytes], at: int) -> tuple[list[bytes], list[bytes]]:
    """The history before ``at`` (and every line without a time) and from ``at`` on."""
    before = [line for line in lines if (t := occurred(line)) is None or t < at]
    after = [line for line in lines if (t := occurred(line)) is not None and t >= at]
    return before, after


@pytest.fixture(scope="module")
def history() -> list[bytes]:
    return list(generate(CUSTOMERS, DAYS, seed=41, end=to_micros(parse_timestamp(END))))


def reference(lines: list[bytes], policy: str) -> tuple[Expected, list[dict[str, Any]]]:
    """What the offline reference says: the default file as the seed, the change at T."""
    change = (to_micros(parse_timestamp(SWITCH)), FILES[policy].read_text())
    result = compute_decisions(
        lines,
        Config(),
        rules=default_text(),
        changes=[change],
        until=to_micros(parse_timestamp(END)),
    )
    return Expected.of(result), result.decisions


def retention(dep: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    """`retention ARGS` against the deployment, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env={**dep.env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def publish(dep: Deployment, policy: str, effective: str) -> str:
    out = retention(dep, "rules", "publish", str(FILES[policy]), "--effective", effective)
    assert out.returncode == 0, out.stderr
    vid = set_id(load_rules(FILES[policy].read_text()))
    assert f"version {vid} effective {effective} published to" in out.stdout, out.stdout
    return vid


def versions_of(decisions: list[dict[str, Any]], rule: str) -> Counter[str]:
    return Counter(d["rule_version"] for d in decisions if d["rule"] == rule)


async def replay_with_a_change(
    dep: Deployment,
    lines: list[bytes],
    policy: str,
    workers: list[WorkerProcess],
    *,
    during_switch: Callable[[], Any] | None = None,
) -> None:
    """Part one up to just before T, publish at T, part two to the end."""
    for w in workers:
        await w.wait_ready()
    t = to_micros(parse_timestamp(SWITCH))
    before, after = split(lines, t)
    await dep.produce(before, until=iso(t - 1))
    publish(dep, policy, SWITCH)
    if during_switch is None:
        await dep.produce(after, until=END)
    else:
        feeder = asyncio.create_task(dep.produce_paced(after, chunks=8, pause=0.5, until=END))
        await during_switch()
        await feeder
    await dep.wait_idle(timeout=300)


@pytest.mark.parametrize("policy", ["restart", "pin"])
async def test_one_worker_switches_like_the_reference(
    make_deployment: Callable[..., Deployment], history: list[bytes], policy: str
) -> None:
    expected, decisions = reference(history, policy)
    # The change does something here: both versions decide, and a restart supersedes.
    old, new = set_id(load_rules(default_text())), set_id(load_rules(FILES[policy].read_text()))
    assert len(versions_of(decisions, "second_purchase")) == 2
    outcomes = Counter(d["outcome"] for d in decisions)
    assert outcomes["superseded"] > 0  # check_in's past steps, and restarted ladders
    dep = make_deployment()
    w = dep.start_worker()
    await replay_with_a_change(dep, history, policy, [w])
    assert w.alive, w.log_tail()
    await compare_with_reference(dep, expected, f"rules_change_{policy}_one_worker")
    registry = await read_registry(dep.config)
    assert [p.id for p in registry.versions] == [old, new]
    stream = await dep.read(dep.config.topics.decisions)
    assert versions_of(stream, "second_purchase") == versions_of(decisions, "second_purchase")


@pytest.mark.parametrize("policy", ["restart", "pin"])
async def test_two_workers_switch_like_the_reference(
    make_deployment: Callable[..., Deployment], history: list[bytes], policy: str
) -> None:
    expected, _ = reference(history, policy)
    dep = make_deployment()
    workers = [dep.start_worker(), dep.start_worker()]
    await replay_with_a_change(dep, history, policy, workers)
    assert all(w.alive for w in workers), [w.log_tail() for w in workers]
    await compare_with_reference(dep, expected, f"rules_change_{policy}_two_workers")


# "pin" runs in the slow tier (make test-slow): a kill -9 mid-switch is the same
# recovery for both policies, and the suite keeps within its 35 minutes.
@pytest.mark.parametrize("policy", ["restart", pytest.param("pin", marks=pytest.mark.slow)])
async def test_kill_9_of_a_worker_during_the_switch(
    make_deployment: Callable[..., Deployment], history: list[bytes], policy: str
) -> None:
    expected, decisions = reference(history, policy)
    t = to_micros(parse_timestamp(SWITCH))
    dep = make_deployment(**FAST_TAKEOVER)
    w1, w2 = dep.start_worker(), dep.start_worker()
    topic = dep.config.topics.decisions
    before_switch = sum(1 for d in decisions if to_micros(parse_timestamp(d["due_at"])) < t)
    killed_at = 0

    async def kill_when_the_switch_starts() -> None:
        nonlocal killed_at
        # The first decisions of part two: the switch has started on some partition.
        await wait_published(dep, topic, before_switch + 1, [w1, w2])
        w1.kill9()
        killed_at = await published(dep, topic)

    await replay_with_a_change(
        dep, history, policy, [w1, w2], during_switch=kill_when_the_switch_starts
    )
    assert killed_at < len(expected.decisions), "killed too late to prove anything"
    assert w2.alive, w2.log_tail()
    await compare_with_reference(
        dep, expected, f"rules_change_{policy}_kill9", published_before_kill=killed_at
    )


async def test_a_history_with_a_control_rules_line_replays_like_the_reference(
    make_deployment: Callable[..., Deployment], history: list[bytes], tmp_path: Path
) -> None:
    """The other route of the issue: the change is a line of the history file, and
    `retention replay` sends it to every input partition before the events at or past
    its time (docs/rules.md "History files")."""
    expected, _ = reference(history, "restart")
    change = orjson.dumps(
        {
            "schema": "control/rules",
            "effective_at": SWITCH,
            "rules": FILES["restart"].read_text(),
        }
    )
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join([change, *history]) + b"\n")
    dep = make_deployment()
    w = dep.start_worker()
    await w.wait_ready()
    out = retention(dep, "replay", str(path), "--until", END)
    assert out.returncode == 0, out.stderr
    await dep.wait_idle(timeout=300)
    assert w.alive, w.log_tail()
    await compare_with_reference(dep, expected, "rules_change_replayed_history")


# --- wall-clock mode -----------------------------------------------------------------------


def line(schema: str, customer: str, at: int, **fields: Any) -> bytes:
    doc = {"schema": schema, "customer_id": customer, "occurred_at": iso(at), **fields}
    return orjson.dumps(doc)


def first_order(customer: str, at: int) -> bytes:
    return line(
        "purchase/1",
        customer,
        at,
        event_id=f"e-{customer}",
        order_id=f"o-{customer}",
        amount="20.00",
        currency="EUR",
        channel="web",
    )


async def metric_sum(w: WorkerProcess, name: str) -> float:
    """Every sample of ``name`` on the worker's /metrics, summed (0 when absent)."""
    status, _, body = await w.get("/metrics", timeout=5)
    assert status == 200
    total = 0.0
    for row in body.decode().splitlines():
        metric, _, value = row.rpartition(" ")
        if metric.split("{")[0] == name:
            total += float(value)
    return total


async def test_wall_mode_two_workers_switch_at_t_and_a_late_version_raises_the_alert(
    make_deployment: Callable[..., Deployment],
) -> None:
    dep = make_deployment(
        RETENTION_CLOCK="wall", RETENTION_RULES_LEAD="PT3S", RETENTION_TICK_INTERVAL="0.5"
    )
    workers = [dep.start_worker(), dep.start_worker()]
    for w in workers:
        await w.wait_ready()
    t = int(time.time() * MICROS_PER_SECOND) + 12 * MICROS_PER_SECOND
    customers = [f"wall-{i}" for i in range(24)]
    # Per customer, a first order placed so that under the seed (P7D) or the change
    # (P5D, restart) step 1 of second_purchase falls just before or just after T.
    groups = {
        "old": t - 7 * DAY - 4 * MICROS_PER_SECOND,  # due T-4 s: under the seed
        "superseded": t - 7 * DAY + 6 * MICROS_PER_SECOND,  # new due T-2 d: passed over
        "new": t - 5 * DAY + 6 * MICROS_PER_SECOND,  # new due T+6 s: under the change
    }
    placed = {c: list(groups)[i % 3] for i, c in enumerate(customers)}
    await dep.produce([first_order(c, groups[g]) for c, g in placed.items()])
    vid = publish(dep, "restart", iso(t))
    old = set_id(load_rules(default_text()))
    new_rule = load_rules(FILES["restart"].read_text()).rule("second_purchase")
    old_rule = load_rules(default_text()).rule("second_purchase")
    assert new_rule is not None and old_rule is not None
    topic = dep.config.topics.decisions
    deadline = time.monotonic() + 60
    while True:
        decisions = [d for d in await dep.read(topic) if d["rule"] == "second_purchase"]
        if {d["customer_id"] for d in decisions} >= set(customers):
            break
        assert time.monotonic() < deadline, (decisions, [w.log_tail() for w in workers])
        await asyncio.sleep(1)
    assert vid != old
    by_customer = {d["customer_id"]: d for d in decisions if int(d["step"]) == 1}
    for c, group in placed.items():
        d = by_customer[c]
        due = to_micros(parse_timestamp(d["due_at"]))
        if group == "old":
            assert (d["rule_version"], d["outcome"] != "superseded") == (old_rule.version, True)
            assert due < t
        elif group == "superseded":
            assert (d["rule_version"], d["outcome"]) == (new_rule.version, "superseded")
            assert due < t
        else:
            assert d["rule_version"] == new_rule.version and d["outcome"] != "superseded"
            assert due > t
    assert all(w.alive for w in workers)

    # A version whose marker arrives after its time: written straight onto the inputs.
    late_text = FILES["pin"].read_text()
    marker = orjson.dumps(
        {
            "schema": "control/rules",
            "effective_at": iso(int(time.time() * MICROS_PER_SECOND) - 60 * MICROS_PER_SECOND),
            "rules": late_text,
            "version": set_id(load_rules(late_text)),
        }
    )
    producer = AIOKafkaProducer(**client_kwargs(dep.config))
    await producer.start()
    try:
        for topic_name in dep.config.topics.inputs():
            for p in range(dep.config.partitions):
                await producer.send_and_wait(topic_name, marker, partition=p)
    finally:
        await producer.stop()
    deadline = time.monotonic() + 30
    while sum([await metric_sum(w, "retention_rules_late_total") for w in workers]) < 1:
        assert time.monotonic() < deadline, [w.log_tail() for w in workers]
        await asyncio.sleep(1)
    late = [await metric_sum(w, "retention_rules_late_total") for w in workers]
    # Every customer partition learned of it late, whichever worker owns it.
    assert sum(late) == dep.config.partitions, late
