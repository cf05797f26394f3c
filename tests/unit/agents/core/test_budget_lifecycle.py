"""The lifecycle's facts within the byte budget (docs/budget.md "Lifecycle"): the
worst-case customer of tests/unit/agents/core/test_budget.py also carrying every
lifecycle part at its widest (5 views and 3 carts of 10 items with 128-character
escaped ids, the order log, 8 pending cancellations, a refund per currency slot,
every rule's progress pinned in every cart, recovered revenue of 16 rules in both
groups and many currencies) keeps its row within 256 KiB, with the firings' memory
and the row's share of pending full."""

from __future__ import annotations

import orjson

from agents.core import budget, state
from agents.core.budget import (
    FIRINGS_BUDGET,
    FIXED_ROW_BOUND,
    LIFECYCLE_BUDGET,
    MAX_CURRENCIES,
    MAX_ENTRY_BYTES,
    MAX_PENDING_BYTES,
    MAX_RECOVERED_CURRENCIES,
    OTHER_CURRENCY,
    PENDING_BUDGET,
    PENDING_CHUNK_BUDGET,
    ROW_BUDGET,
    ROW_PENDING_BUDGET,
    WINDOW_RESERVE,
    lifecycle_bytes,
    max_index_bytes,
)
from agents.core.emissions import Refused
from agents.core.settings import DAY
from agents.core.state import RecentFiring
from schemas.records import (
    CANCEL_PARTIAL,
    CART_CHECKOUT,
    KIND_CANCEL,
    KIND_CART,
    KIND_VIEW,
    MAX_CART_ITEMS,
    Event,
    Item,
)
from tests.unit.agents.core.test_budget import (
    REST_BOUND,
    WIDE,
    firings_size,
    largest_file_row,
    lifecycle_size,
    rest_size,
    row_size,
    wide_purchase,
)

AMOUNT = "9" * 16 + "." + "9" * 15


def wide(n: int) -> str:
    return f"{n:08d}" + WIDE[8:]


def test_the_budget_reads_the_state_s_bounds() -> None:
    assert (budget._VIEWS, budget._CARTS, budget._CART_ITEMS) == (
        state.MAX_VIEWS,
        state.MAX_CARTS,
        MAX_CART_ITEMS,
    )
    assert budget._LOG == state.ORDER_LOG_FIRST + state.ORDER_LOG_NEWEST
    assert budget._CANCELS == state.MAX_PENDING_CANCELS
    # The arithmetic of docs/budget.md "Lifecycle": about 51 KB at the widest.
    assert 50_000 < lifecycle_bytes() <= LIFECYCLE_BUDGET
    # Taken from the row's share of pending, which still holds the overflow index
    # at its largest and the widest entries beside it (two 10-line carts: the
    # widest pending entry, docs/lifecycle.md "Inputs").
    assert ROW_PENDING_BUDGET == PENDING_BUDGET - LIFECYCLE_BUDGET
    index = max_index_bytes(MAX_PENDING_BYTES, PENDING_CHUNK_BUDGET)
    assert index + 2 * MAX_ENTRY_BYTES <= ROW_PENDING_BUDGET


def test_every_lifecycle_part_at_its_widest_keeps_the_row_within_the_budget() -> None:
    engine, st8 = largest_file_row(windowed=True)
    t = max(st8.order_times) + DAY
    fed: list[Event] = []
    for n in range(8):  # more views than kept
        fed.append(Event(KIND_VIEW, wide(10_000 + n), WIDE, t + n, product_id=wide(n)))
    items = tuple(Item(wide(100 + i), 1_000_000, AMOUNT, "EUR") for i in range(MAX_CART_ITEMS))
    for n in range(5):  # more carts than kept
        fed.append(
            Event(
                KIND_CART,
                wide(20_000 + n),
                WIDE,
                t + 10 + n,
                cart_id=wide(200 + n),
                action=CART_CHECKOUT,
                items=items,
            )
        )
    codes = [a + b + "Q" for a in "ABCDEFGH" for b in "ABCDE"]
    for n, code in enumerate(codes):  # refunds in every currency slot
        fed.append(
            Event(
                KIND_CANCEL,
                wide(30_000 + n),
                WIDE,
                t + 20 + n,
                order_id=wide(2990 - n),
                amount=AMOUNT,
                currency=code,
                action=CANCEL_PARTIAL,
            )
        )
    for n in range(12):  # cancellations of orders not seen: 8 wait
        fed.append(
            Event(
                KIND_CANCEL,
                wide(40_000 + n),
                WIDE,
                t + 100 + n,
                order_id=wide(900_000 + n),
                amount=AMOUNT,
                currency="EUR",
                action=CANCEL_PARTIAL,
            )
        )
    for event in fed:
        assert not isinstance(engine.ingest(st8, event, event.occurred_at), Refused)
    for cart in st8.carts:
        cart.progress = {r.name: [-(2**62), 10, "f" * 12] for r in engine.rules}
    # Recovered revenue: 16 abandonment rules with 40-character names, both groups,
    # conversions in six currencies each (sums of many of the longest amounts).
    for r in range(16):
        for group in ("delivered", "holdout"):
            for code in ("GBP", "AUD", "USD", "CHF", "EUR", "JPY") * 3:
                st8.add_recovered(f"{r:02d}".rjust(40, "r"), group, code, AMOUNT)
    assert all(
        sorted(by_currency) == ["AUD", "CHF", OTHER_CURRENCY][: MAX_RECOVERED_CURRENCIES + 1]
        for groups in st8.recovered.values()
        for by_currency in groups.values()
    )
    assert len(st8.views) == 5 and len(st8.carts) == 3 and len(st8.order_log) == 35
    assert len(st8.pending_cancels) == 8 and st8.cancels_dropped == 4
    assert len(st8.refunded) == MAX_CURRENCIES + 1
    life = lifecycle_size(st8)
    assert 40_000 < life <= LIFECYCLE_BUDGET, life
    # The rest: within its bound and the windows' reserve (taken from the firings').
    assert rest_size(st8) <= REST_BOUND + WINDOW_RESERVE
    # The firings' memory full of its widest entries: still within the fixed part.
    longest = engine.rules[0].name
    widest = RecentFiring(-(2**62), longest, 10, -(2**62), "frequency_cap", -(2**62), -(2**62))
    st8.recent_firings = [widest] * engine.memory.entries
    assert firings_size(st8) <= FIRINGS_BUDGET - WINDOW_RESERVE
    assert row_size(st8) <= FIXED_ROW_BOUND, row_size(st8)
    # Then pending full: the row keeps its share, the rest waits in overflow rows.
    clock = t + 1000
    refused = 0
    for n in range(3000, 6000):
        fired = engine.ingest(st8, wide_purchase(n, clock + DAY + n, "EUR"), clock)
        refused += isinstance(fired, Refused)
    assert refused > 0
    assert st8.pending_bytes() + st8.spill.index_bytes() <= ROW_PENDING_BUDGET
    assert len(orjson.dumps(st8.to_dict())) <= ROW_BUDGET


def test_a_keyed_firing_is_measured_with_its_cart_id_at_its_widest() -> None:
    """A cart rule's remembered firing carries the cart id (docs/lifecycle.md
    "Rules"): the firing memory must count it at 128 escaped characters."""
    from agents.core.budget import firing_entry_bytes

    keyed = firing_entry_bytes("cart_abandonment", keyed=True)
    wire = [-(2**62), "cart_abandonment", 99, -(2**62), "frequency_cap", -(2**62), None, WIDE]
    assert keyed >= len(orjson.dumps(wire)) + 1
    assert keyed - firing_entry_bytes("cart_abandonment", windowed=True) == 770 + 1
