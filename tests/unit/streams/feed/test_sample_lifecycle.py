"""The sample's lifecycle events (`retention sample --lifecycle`, docs/lifecycle.md
"Sample and demo"): every new kind at its documented rate, deterministic, and the
orders, sessions and consents those of the sample without them."""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.core.timeutil import parse_timestamp, to_micros
from agents.core.validation import ValidationError, validate
from streams.cli import main
from streams.feed.sample import generate
from streams.feed.sample_options import SampleOptions

END = to_micros(datetime(2026, 3, 1, tzinfo=UTC))
LIFECYCLE = SampleOptions(lifecycle=True)
NEW = {"signup/1", "product_view/1", "cart/1", "order_cancelled/1"}


def objects(lines: list[bytes]) -> list[dict[str, Any]]:
    """The well-formed lines, once each (exact duplicates dropped)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "customer_id" in obj and obj["event_id"] not in seen:
            seen.add(obj["event_id"])
            with contextlib.suppress(ValueError):
                obj["_at"] = to_micros(parse_timestamp(obj["occurred_at"]))
                out.append(obj)
    return out


def at(obj: dict[str, Any]) -> int:
    return int(obj["_at"])


@pytest.fixture(scope="module")
def sample() -> list[dict[str, Any]]:
    # Without malformed lines (they are the other kinds' and test_sample.py's).
    options = SampleOptions(lifecycle=True, malformed_rate=0)
    return objects(list(generate(3000, 365, seed=11, end=END, options=options)))


def test_same_seed_same_bytes_and_off_by_default() -> None:
    a = list(generate(200, 60, seed=3, end=END, options=LIFECYCLE))
    assert a == list(generate(200, 60, seed=3, end=END, options=LIFECYCLE))
    assert a != list(generate(200, 60, seed=4, end=END, options=LIFECYCLE))
    default = objects(list(generate(200, 60, seed=3, end=END)))
    # (A malformed copy may name purchase/2 as its unknown schema: none has a cart.)
    assert not {o["schema"] for o in default} & NEW
    assert not any("cart_id" in o for o in default)


def test_orders_sessions_and_consents_are_those_of_the_sample_without_it() -> None:
    """The bench compares the two samples: they differ only by the lifecycle events
    and an order's cart fields (malformed copies of a purchase/2 differ too, so none)."""
    quiet = SampleOptions(malformed_rate=0)
    old = list(generate(400, 120, seed=5, end=END, options=quiet))
    new = list(
        generate(400, 120, seed=5, end=END, options=SampleOptions(malformed_rate=0, lifecycle=True))
    )
    kept = []
    for line in new:
        obj = orjson.loads(line)
        if obj["schema"] in NEW:
            continue
        if obj["schema"] == "purchase/2":
            del obj["cart_id"], obj["items"]
            obj["schema"] = "purchase/1"
            line = orjson.dumps(obj)
        kept.append(line)
    assert kept == old


def test_every_customer_signs_up_once_at_or_before_their_first_event(
    sample: list[dict[str, Any]],
) -> None:
    first: dict[str, int] = {}
    signups: dict[str, list[int]] = defaultdict(list)
    for o in sample:
        if o["schema"] == "signup/1":
            signups[o["customer_id"]].append(at(o))
        else:
            first[o["customer_id"]] = min(first.get(o["customer_id"], at(o)), at(o))
    assert set(signups) == set(first) and len(first) == 3000
    assert all(len(s) == 1 and s[0] <= first[c] for c, s in signups.items())


def test_about_ten_views_per_order_and_browsing_only_customers_view_too(
    sample: list[dict[str, Any]],
) -> None:
    orders = {o["order_id"] for o in sample if o["schema"] in ("purchase/1", "purchase/2")}
    buyers = {o["customer_id"] for o in sample if o["schema"] in ("purchase/1", "purchase/2")}
    views = Counter(o["customer_id"] for o in sample if o["schema"] == "product_view/1")
    buyer_views = sum(n for c, n in views.items() if c in buyers)
    assert 9 < buyer_views / len(orders) < 11
    browsers = set(views) - buyers
    assert len(browsers) > 0.1 * 3000
    assert sum(views[c] for c in browsers) / len(browsers) > 5


def test_carts_orders_checkouts_abandonment_and_emptied_at_their_rates(
    sample: list[dict[str, Any]],
) -> None:
    snapshots: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in sample:
        if o["schema"] == "cart/1":
            snapshots[o["cart_id"]].append(o)
    orders = {o["order_id"]: o for o in sample if o["schema"] in ("purchase/1", "purchase/2")}
    carted = {o["cart_id"]: o for o in orders.values() if o["schema"] == "purchase/2"}
    assert 0.75 < len(carted) / len(orders) < 0.85
    assert set(carted) <= set(snapshots)
    abandoned = len(set(snapshots) - set(carted)) / len(snapshots)
    assert 0.55 < abandoned < 0.65
    actions = {c: {s["action"] for s in snaps} for c, snaps in snapshots.items()}
    checkouts = sum("checkout_started" in a for a in actions.values()) / len(snapshots)
    emptied = sum("emptied" in a for a in actions.values()) / len(snapshots)
    assert 0.35 < checkouts < 0.45
    assert 0.03 < emptied < 0.07
    for cart_id, order in carted.items():
        newest = max(snapshots[cart_id], key=at)
        # The cart's newest snapshot is what was ordered, before the order; its
        # items add up to the order's amount.
        assert newest["items"] == order["items"] and at(newest) <= at(order)
        total = sum(Decimal(i["unit_price"]) * i["quantity"] for i in order["items"])
        assert total == Decimal(str(order["amount"]))
        assert {i["currency"] for i in order["items"]} == {order["currency"]}
    assert all(
        s["items"] == [] for snaps in snapshots.values() for s in snaps if s["action"] == "emptied"
    )
    assert max(len(s["items"]) for snaps in snapshots.values() for s in snaps) <= 10


def test_cancellations_full_partial_and_a_few_before_their_order(
    sample: list[dict[str, Any]],
) -> None:
    orders = {o["order_id"]: o for o in sample if o["schema"] in ("purchase/1", "purchase/2")}
    cancels = [o for o in sample if o["schema"] == "order_cancelled/1"]
    scopes = Counter(c["scope"] for c in cancels)
    assert 0.02 < scopes["full"] / len(orders) < 0.04
    assert 0.01 < scopes["partial"] / len(orders) < 0.03
    before = [c for c in cancels if at(c) < at(orders[c["order_id"]])]
    assert 0 < len(before) < 0.2 * len(cancels)
    for c in cancels:
        order = orders[c["order_id"]]
        assert c["currency"] == order["currency"] and c["customer_id"] == order["customer_id"]
        if c["scope"] == "full":
            assert Decimal(c["amount"]) == Decimal(str(order["amount"]))
        else:
            assert 0 < Decimal(c["amount"]) < Decimal(str(order["amount"]))


def test_every_event_lies_in_the_window(sample: list[dict[str, Any]]) -> None:
    times = [at(o) for o in sample]
    assert min(times) >= END - 365 * 86_400_000_000 and max(times) <= END


def test_command_takes_the_lifecycle_flag(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    args = ["sample", "--customers", "40", "--days", "30", "--end", "2026-03-01", "--lifecycle"]
    assert main([*args, "--out", str(out)]) == 0
    expected = list(generate(40, 30, seed=1, end=END, options=LIFECYCLE))
    assert out.read_bytes() == b"\n".join(expected) + b"\n"


def test_every_lifecycle_line_is_valid_and_of_its_kind() -> None:
    """The processor accepts every new line (purchase/2 orders included); the only
    dead letters are the malformed copies the other kinds already make."""
    kinds: Counter[str] = Counter()
    for line in generate(400, 120, seed=2, end=END, options=SampleOptions(lifecycle=True)):
        obj = orjson.loads(line) if line.startswith(b"{") and line.endswith(b"}") else {}
        try:
            event = validate(line, now=END, max_bytes=64 * 1024, future_tolerance=86_400_000_000)
        except ValidationError:
            assert obj.get("schema") not in NEW
            continue
        kinds[event.kind] += 1
        if obj.get("schema") == "purchase/2":
            assert event.cart_id == obj["cart_id"] and event.items is not None
    assert set(kinds) == {
        "signup", "product_view", "cart", "order_cancelled", "purchase", "session", "consent"
    }  # fmt: skip
