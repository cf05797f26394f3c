"""Bad input never stops the worker: every malformed message is a dead letter with
the right code, every valid event is processed."""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest

from agents.core.timeutil import iso
from tests.e2e.harness import Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

BASE = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in micros
DAY = 86_400_000_000


def valid_purchase(i: int) -> bytes:
    return orjson.dumps(
        {
            "schema": "purchase/1",
            "event_id": f"ev-{i}",
            "customer_id": f"cust-{i % 500}",
            "occurred_at": iso(BASE + (i % 200) * DAY // 2),
            "order_id": f"order-{i}",
            "amount": "19.90",
            "currency": "EUR",
        }
    )


def malformed(i: int, rng: random.Random) -> tuple[str, bytes]:
    good = orjson.loads(valid_purchase(i))
    kind = rng.choice(
        [
            "invalid_json",
            "not_an_object",
            "unknown_schema",
            "missing_field",
            "invalid_field",
            "naive_timestamp",
            "invalid_timestamp",
            "future_timestamp",
            "early_timestamp",
            "too_large",
        ]
    )
    if kind == "invalid_json":
        return kind, b'{"schema": "purchase/1", "event_id": ' + str(i).encode()
    if kind == "not_an_object":
        return kind, b"[1, 2, 3]"
    if kind == "unknown_schema":
        good["schema"] = "purchase/9"
    elif kind == "missing_field":
        del good["customer_id"]
    elif kind == "invalid_field":
        good["amount"] = -5
    elif kind == "naive_timestamp":
        good["occurred_at"] = "2026-01-05T10:00:00"
    elif kind == "invalid_timestamp":
        good["occurred_at"] = "yesterday at noon"
    elif kind == "future_timestamp":
        good["occurred_at"] = "2999-01-01T00:00:00Z"
    elif kind == "early_timestamp":  # Go's zero time: a producer that forgot the time
        good["occurred_at"] = "0001-01-01T00:00:00Z"
    elif kind == "too_large":
        good["channel"] = "x" * 70_000
    return kind, orjson.dumps(good)


async def test_malformed_messages_become_dead_letters_and_valid_ones_flow(
    deployment: Deployment,
) -> None:
    rng = random.Random(7)
    lines: list[bytes] = []
    expected_codes: Counter[str] = Counter()
    valid_orders: Counter[str] = Counter()
    for i in range(6000):
        if rng.random() < 0.4:
            code, line = malformed(i, rng)
            expected_codes[code] += 1
        else:
            line = valid_purchase(i)
            valid_orders[f"cust-{i % 500}"] += 1
        lines.append(line)
    worker = deployment.start_worker()
    # An advance is bounded by now + the future tolerance like any event time.
    await deployment.produce(lines, until="2026-11-01T00:00:00Z")
    await deployment.wait_idle(timeout=300)
    assert worker.alive, worker.log_tail()

    letters = await deployment.read(deployment.config.topics.dlq)
    assert Counter(d["error_code"] for d in letters) == expected_codes
    assert sum(expected_codes.values()) > 2000
    # Every dead letter carries its source position and the original bytes.
    positions = {
        (d["source"]["topic"], d["source"]["partition"], d["source"]["offset"]) for d in letters
    }
    assert len(positions) == len(letters)
    sample = next(d for d in letters if d["error_code"] == "naive_timestamp")
    assert "UTC offset" in sample["error"]
    import base64

    original = base64.b64decode(sample["original_base64"])
    assert orjson.loads(original)["occurred_at"] == "2026-01-05T10:00:00"

    # Every valid event reached the customer state: each customer's last
    # inactivity step (fired long after its last order) counts all its orders.
    decisions = await deployment.read(deployment.config.topics.decisions)
    seen_orders: dict[str, int] = {}
    for d in decisions:
        cid = d["customer_id"]
        seen_orders[cid] = max(seen_orders.get(cid, 0), d["context"]["order_count"])
    assert seen_orders == dict(valid_orders)
