"""The pending queue beyond the row's share (agents.core.pending, docs/budget.md "Byte budget").

Whatever order events come in and however the queue is cut into the row and
overflow rows, it gives them back in (time, event id) order, every overflow row
stays within its size, the row's share within its own, and a state written and
read back (the overflow rows through a store) holds the same queue.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core.budget import entry_size
from agents.core.pending import PendingLimits, PendingQueue, entry_key
from agents.core.state import CustomerState

LIMITS = PendingLimits(head_events=3, head_bytes=600, chunk_bytes=400)


def entry(t: int, e: str) -> dict[str, Any]:
    return {"k": "session", "e": e, "t": t}


def check(state: CustomerState, limits: PendingLimits) -> None:
    head = state.pending
    spill = state.spill
    assert not spill or head, "the head holds the earliest event whenever any waits"
    assert len(head) <= max(limits.head_events, 1)
    assert len(head) == 1 or state.pending_bytes() + spill.index_bytes() <= limits.head_bytes
    if spill:
        assert entry_key(head[-1]) < spill.first_key()
        chunks = [spill._load(i) for i in range(len(spill.index))]
        flat = [x for c in chunks for x in c]
        assert [entry_key(x) for x in flat] == sorted(entry_key(x) for x in flat)
        for row, chunk in zip(spill.index, chunks, strict=True):
            assert chunk and (row[1], row[2]) == entry_key(chunk[0])
            assert len(chunk) == 1 or sum(map(entry_size, chunk)) <= limits.chunk_bytes
        assert spill.events == len(flat) and spill.size == sum(map(entry_size, flat))


def reload(state: CustomerState, store: dict[int, bytes]) -> CustomerState:
    """Written as the processor writes a row, read back as it loads one."""
    chunks, emptied = state.spill.flush()
    store.update(chunks)
    for slot in emptied:
        store[slot] = b"[]"
    again = CustomerState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    again.spill.fetch = lambda slot: orjson.loads(store[slot]) if slot in store else None
    return again


ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 60), st.text("abcé\x01", max_size=12)),
        st.tuples(st.just("pop"), st.just(0), st.just("")),
        st.tuples(st.just("save"), st.just(0), st.just("")),
    ),
    max_size=150,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_any_pushes_and_pops_come_back_in_order_within_their_bounds(
    program: list[tuple[str, int, str]],
) -> None:
    state = CustomerState(customer_id="c")
    store: dict[int, bytes] = {}
    waiting: set[tuple[int, str]] = set()
    popped: list[tuple[int, str]] = []
    for op, t, e in program:
        if op == "push" and (t, e) not in waiting:
            state.push_pending(entry(t, e), LIMITS)
            waiting.add((t, e))
        elif op == "pop" and state.pending:
            ev = state.pop_pending(LIMITS)
            key = (ev.occurred_at, ev.event_id)
            assert key == min(waiting)
            waiting.remove(key)
            popped.append(key)
        elif op == "save":
            state = reload(state, store)
        check(state, LIMITS)
        assert state.pending_count() == len(waiting)
    while state.pending:
        ev = state.pop_pending(LIMITS)
        popped.append((ev.occurred_at, ev.event_id))
        waiting.remove(popped[-1])
    assert not waiting and not state.spill


def test_a_changed_overflow_row_is_written_to_a_slot_the_stored_row_does_not_name() -> None:
    state = CustomerState(customer_id="c")
    for i in range(40):
        state.push_pending(entry(100 + i, f"e{i:02d}"), LIMITS)
    store: dict[int, bytes] = {}
    state = reload(state, store)
    named = {row[0] for row in state.spill.index}
    assert len(named) > 3
    state.push_pending(entry(200, "late"), LIMITS)  # goes to the last overflow row
    chunks, emptied = state.spill.flush()
    assert len(chunks) == 1 and not set(chunks) & named  # copy-on-write
    (old,) = emptied  # the row it replaces: emptied once the customer row is written
    assert old in named and old not in {row[0] for row in state.spill.index}


def test_the_queue_alone_gives_events_back_in_time_then_id_order_and_counts_them() -> None:
    queue = PendingQueue()
    assert not queue and queue.first_time() is None and queue.count() == 0
    pushed = [entry(30, "b"), entry(10, "z"), entry(30, "a"), entry(20, "x")]
    pushed += [entry(50 + i, f"y{i}") for i in range(8)]
    for x in pushed:
        queue.push(x, LIMITS)
    assert len(queue.head) <= LIMITS.head_events and queue.spill  # the rest overflowed
    assert queue.count() == len(pushed)
    assert queue.total_bytes() == sum(map(entry_size, pushed))
    assert queue.first_time() == 10
    out = []
    while queue:
        out.append(queue.pop(LIMITS))
    assert out == sorted(pushed, key=entry_key)
    assert queue.count() == 0 and queue.total_bytes() == 0 and not queue.spill


def test_without_limits_the_queue_keeps_everything_in_the_row() -> None:
    queue = PendingQueue()
    for i in range(50):
        queue.push(entry(100 - i, f"e{i:02d}"))
    assert len(queue.head) == 50 and not queue.spill
    assert queue.head_bytes() == queue.total_bytes() == sum(map(entry_size, queue.head))
    assert queue.first_time() == 51
