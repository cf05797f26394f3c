"""The per-partition due index: a clock advance touches only the customers due."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core.due_index import DueIndex
from tests.unit.agents.factories import at


def test_pop_due_returns_only_customers_due_by_then_earliest_first() -> None:
    index = DueIndex()
    index.set("cus_c", at(days=30))
    index.set("cus_a", at(days=7))
    index.set("cus_b", at(days=14))
    index.set("cus_d", at(days=14, hours=1))
    assert index.pop_due(at(days=14)) == ["cus_a", "cus_b"]
    assert len(index) == 2
    assert index.next_time() == at(days=14, hours=1)
    assert index.pop_due(at(days=14)) == []
    assert index.pop_due(at(days=100)) == ["cus_d", "cus_c"]
    assert len(index) == 0
    assert index.next_time() is None


def test_due_exactly_at_the_clock_is_due() -> None:
    index = DueIndex()
    index.set("cus_a", at(days=7))
    assert index.pop_due(at(days=7) - 1) == []
    assert index.pop_due(at(days=7)) == ["cus_a"]


def test_reindexing_replaces_the_previous_time() -> None:
    index = DueIndex()
    index.set("cus_a", at(days=7))
    index.set("cus_a", at(days=21))  # a second order moved the customer's next step
    assert len(index) == 1
    assert index.next_time() == at(days=21)
    assert index.pop_due(at(days=20)) == []
    index.set("cus_a", at(days=7))  # and back again: only one entry surfaces
    assert index.pop_due(at(days=30)) == ["cus_a"]
    assert index.pop_due(at(days=30)) == []


def test_none_removes_a_customer() -> None:
    index = DueIndex()
    index.set("cus_a", at(days=7))
    index.set("cus_b", at(days=8))
    index.set("cus_a", None)
    index.set("cus_never_indexed", None)
    assert len(index) == 1
    assert index.next_time() == at(days=8)
    assert index.pop_due(at(days=30)) == ["cus_b"]


def test_a_popped_customer_can_be_indexed_again_at_the_same_time() -> None:
    index = DueIndex()
    index.set("cus_a", at(days=7))
    assert index.pop_due(at(days=7)) == ["cus_a"]
    index.set("cus_a", at(days=7))
    assert index.pop_due(at(days=7)) == ["cus_a"]


def test_many_reindexings_stay_correct_after_compaction() -> None:
    index = DueIndex()
    for round_ in range(600):
        for n in range(10):
            index.set(f"cus_{n}", at(days=n + 1, hours=round_))
    assert len(index) == 10
    assert len(index._heap) <= 2 * len(index) + 1024 + 1
    expected = [f"cus_{n}" for n in range(10) if at(days=n + 1, hours=599) <= at(days=30)]
    assert index.pop_due(at(days=30)) == expected


def test_a_tick_on_a_large_index_returns_just_the_due_customers() -> None:
    index = DueIndex()
    for n in range(100_000):
        index.set(f"cus_{n:06d}", at(days=60, hours=n % 1000))
    due = ["cus_031337", "cus_000007", "cus_099999"]
    for hours, cid in enumerate(due):
        index.set(cid, at(days=1, hours=hours))
    assert index.pop_due(at(days=2)) == due
    assert len(index) == 100_000 - 3
    assert index.next_time() == at(days=60)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([f"cus_{n}" for n in range(8)]), st.none() | st.integers(0, 50)),
        max_size=40,
    ),
    st.integers(0, 50),
)
def test_pop_due_matches_the_latest_setting_of_each_customer(
    ops: list[tuple[str, int | None]], upto: int
) -> None:
    index, latest = DueIndex(), {}
    for cid, when in ops:
        index.set(cid, when)
        latest[cid] = when
    live = {c: t for c, t in latest.items() if t is not None}
    assert len(index) == len(live)
    expected = sorted((t, c) for c, t in live.items() if t <= upto)
    assert index.pop_due(upto) == [c for _, c in expected]
    rest = [t for t in live.values() if t > upto]
    assert index.next_time() == (min(rest) if rest else None)
