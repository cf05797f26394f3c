"""The whole lifecycle end to end (issue 24 "Done when"; docs/lifecycle.md).

A sample with every new kind (`retention sample --lifecycle`, docs/lifecycle.md
"Sample and demo": sign-ups, product views, cart snapshots updated, checked out and
emptied, orders from a cart as purchase/2, full and partial cancellations, some
dated before their order) over a little more than a year, with
agents/core/rules/lifecycle.toml, its lines shuffled and fed by the real `retention
replay FILE --until END` through one worker and through two:

* the decisions (keyed cart firings one per cart), nudges and conversions equal the
  offline reference's ``compute_decisions`` on the same file and rules;
* every rule lifecycle.toml adds fires, and the nudges name what the customer left:
  a cart's items and value, the viewed products, the milestone.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

import agents.core.rules
from agents.core.timeutil import parse_timestamp, to_micros
from agents.offline.reference import ReferenceResult, compute_decisions
from streams.config import Config
from streams.feed.sample import generate
from streams.feed.sample_options import SampleOptions
from tests.e2e.harness import ROOT, Deployment, Expected, compare_with_reference

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

RULES = Path(agents.core.rules.__file__).with_name("lifecycle.toml")
END = "2026-11-01T00:00:00Z"
# A little over a year: some first orders reach their first anniversary.
DAYS = 400
CUSTOMERS = 300
SEED = 27  # a seed whose sample has cancellations dated before their order
NEW_RULES = ("welcome", "browse_abandonment", "cart_abandonment", "order_milestone", "anniversary")
REPLAY = [sys.executable, "-m", "streams.cli", "replay"]


@pytest.fixture(scope="module")
def history() -> list[bytes]:
    """The sample with the lifecycle, shuffled (any arrival order)."""
    options = SampleOptions(lifecycle=True)
    lines = list(
        generate(CUSTOMERS, DAYS, seed=SEED, end=to_micros(parse_timestamp(END)), options=options)
    )
    random.Random(5).shuffle(lines)
    return lines


@pytest.fixture(scope="module")
def reference(history: list[bytes]) -> ReferenceResult:
    return compute_decisions(
        history, Config(), rules=RULES.read_text(), until=to_micros(parse_timestamp(END))
    )


def test_the_sample_has_every_new_kind(history: list[bytes]) -> None:
    seen: Counter[str] = Counter()
    orders: dict[str, str] = {}
    cancels: list[dict[str, Any]] = []
    for line in history:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        schema = obj.get("schema")
        if schema == "cart/1":
            seen[f"cart/1 {obj['action']}"] += 1
        elif schema == "order_cancelled/1":
            seen[f"order_cancelled/1 {obj['scope']}"] += 1
            cancels.append(obj)
        else:
            seen[str(schema)] += 1
        if schema in ("purchase/1", "purchase/2") and {"customer_id", "order_id"} <= set(obj):
            orders[obj["order_id"]] = obj["occurred_at"]
    for kind in (
        "signup/1",
        "product_view/1",
        "cart/1 updated",
        "cart/1 checkout_started",
        "cart/1 emptied",
        "purchase/2",
        "order_cancelled/1 full",
        "order_cancelled/1 partial",
    ):
        assert seen[kind] > 0, (kind, seen)

    def at(text: str) -> int:
        return to_micros(parse_timestamp(text))

    # A cancellation dated before its order (kept pending until the order comes).
    assert any(at(c["occurred_at"]) < at(orders[c["order_id"]]) for c in cancels)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("workers", [1, 2])
async def test_replayed_in_any_order_the_lifecycle_decides_as_the_reference(
    make_deployment: Callable[..., Deployment],
    history: list[bytes],
    reference: ReferenceResult,
    tmp_path: Path,
    workers: int,
) -> None:
    fired = Counter(d["rule"] for d in reference.decisions)
    assert all(fired[rule] > 0 for rule in NEW_RULES), fired
    path = tmp_path / "shuffled.jsonl"
    path.write_bytes(b"\n".join(history) + b"\n")
    dep = make_deployment(RETENTION_RULES_FILE=str(RULES))
    started = [dep.start_worker() for _ in range(workers)]
    for w in started:
        await w.wait_ready()
    done = await asyncio.to_thread(
        subprocess.run,
        [*REPLAY, str(path), "--until", END, "--tmpdir", str(tmp_path)],
        cwd=ROOT,
        env=dep.env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    await dep.wait_idle(timeout=180)
    for w in started:
        assert w.alive, w.log_tail()
    # What the nudges of the new rules name (docs/lifecycle.md "Rules": context).
    nudges = await dep.read_sampled(dep.config.topics.nudges)
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for n in nudges:
        by_rule.setdefault(n["rule"], []).append(n)
    assert all(by_rule.get(rule) for rule in NEW_RULES if rule != "anniversary"), set(by_rule)
    for n in by_rule["cart_abandonment"]:
        cart = n["context"]["cart"]
        assert cart["items"] and cart["action"] in ("updated", "checkout_started")
        value: dict[str, Decimal] = {}
        for item in cart["items"]:
            worth = Decimal(item["unit_price"]) * item["quantity"]
            value[item["currency"]] = value.get(item["currency"], Decimal(0)) + worth
        assert {c: Decimal(v) for c, v in cart["value"].items()} == value
    # One ladder per cart: a customer's carts fire under ids of their own.
    carts = {
        (n["customer_id"], n["context"]["cart"]["cart_id"]) for n in by_rule["cart_abandonment"]
    }
    assert len(carts) > len({c for c, _ in carts})
    assert all(0 < len(n["context"]["products"]) <= 5 for n in by_rule["browse_abandonment"])
    assert {n["context"]["milestone"]["orders"] for n in by_rule["order_milestone"]} >= {3}

    await compare_with_reference(dep, Expected.of(reference), f"lifecycle_{workers}_workers")
