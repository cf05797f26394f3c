"""The customer-partition processor over a dict-backed store (no Faust, no Kafka)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.contract import CLOCK_KEY_PREFIX, CUSTOMER_KEY_PREFIX
from agents.core.clock import ManualClock
from agents.core.rules import default_rules
from agents.core.settings import DAY, CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import to_micros
from agents.customer import CustomerProcessor, Result, input_sources
from agents.wire import bundles
from schemas.records import Event
from tests.unit.agents.factories import T0, at, consent, lag_needed, processors, purchase, session

INPUTS = ("retention.purchases", "retention.sessions", "retention.consents")
NUDGES, DECISIONS = "retention.nudges", "retention.decisions"
OUTCOMES = "retention.outcomes"
DLQ, INTERNAL = "retention.dlq", "retention.customer-events"
SOURCES = input_sources(INPUTS, 2)
SRC = {"purchase": "retention.purchases:0", "session": "retention.sessions:0"}
SRC["consent"] = "retention.consents:0"
FIRED_AT = at(days=500)  # the wall clock: only used for fired_at in stream mode


class DictStore:
    """The StateStore protocol over a dict: ``scan`` yields one partition's rows."""

    def __init__(self, data: dict[str, bytes] | None = None) -> None:
        self.data = dict(data or {})

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def scan(self, partition: int) -> Iterable[tuple[str, bytes]]:
        def of(key: str, value: bytes) -> int:
            if key.startswith(CUSTOMER_KEY_PREFIX):
                return int(orjson.loads(value)["partition"])
            return int(key.rpartition("/")[2])  # clock/<partition>

        return [(k, v) for k, v in self.data.items() if of(k, v) == partition]

    def commit(self, result: Result) -> Result:
        self.data.update(result.writes)
        return result

    def state(self, cid: str) -> CustomerState:
        raw = self.data[CUSTOMER_KEY_PREFIX + cid]
        return CustomerState.from_dict(orjson.loads(raw))


def processor(
    mode: str = "stream",
    core: CoreSettings | None = None,
    wall: ManualClock | None = None,
    sources: Iterable[str] = SOURCES,
    future_tolerance: int = DAY,
    min_event_time: int = 0,
) -> CustomerProcessor:
    wall = wall or ManualClock(FIRED_AT)
    return processors(
        wall,
        mode=mode,
        core=core,
        future_tolerance=future_tolerance,
        sources=sources,
        min_event_time=min_event_time,
    ).customer


def ev(event: Event, src: str | None = None) -> bytes:
    return orjson.dumps({"type": "ev", "src": src or SRC[event.kind], "ev": event.to_wire()})


def adv(src: str, until: int) -> bytes:
    return orjson.dumps({"type": "adv", "src": src, "until": until})


def run(
    proc: CustomerProcessor, store: DictStore, messages: list[bytes], partition: int = 0
) -> list[tuple[str, str, dict[str, Any]]]:
    """Handle messages as the agent does (outputs, then writes); return the outputs."""
    out = []
    for m in messages:
        result = store.commit(proc.handle(partition, m, store))
        out += [(o.topic, o.key, orjson.loads(o.value)) for o in result.outputs]
    return out


def advance_all(until: int, sources: Iterable[str] = SOURCES) -> list[bytes]:
    return [adv(s, until) for s in sources]


def decisions(outputs: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, str, int, str]]:
    return [
        (d["customer_id"], d["rule"], d["step"], d["due_at"])
        for t, _, d in outputs
        if t == DECISIONS
    ]


# --- stream clock ----------------------------------------------------------------------


def test_events_are_stored_and_wait_for_the_clock_of_every_source() -> None:
    proc, store = processor(), DictStore()
    result = store.commit(proc.handle(0, ev(purchase("cus_a", T0, "ORD-1")), store))
    assert result.outputs == []
    assert set(result.writes) == {"c/cus_a"}
    state = store.state("cus_a")
    assert (state.partition, state.version) == (0, 1)
    assert len(state.pending) == 1  # sessions and consents have not spoken yet
    assert proc.counters["events"] == 1


def test_an_advance_from_every_source_fires_what_is_due() -> None:
    proc, store = processor(), DictStore()
    run(proc, store, [ev(purchase("cus_a", T0, "ORD-1", amount="59.90"))])
    # Advancing from all but one source fires nothing.
    assert run(proc, store, advance_all(at(days=8), SOURCES[:-1])) == []
    outputs = run(proc, store, advance_all(at(days=8), SOURCES[-1:]))
    assert [(t, k) for t, k, _ in outputs] == [(DECISIONS, "cus_a"), (NUDGES, "cus_a")]
    decision, nudge = outputs[0][2], outputs[1][2]
    assert decision == {
        "schema": "decision/1",
        "trigger_id": decision["trigger_id"],
        "customer_id": "cus_a",
        "rule": "second_purchase",
        "step": 1,
        "threshold": {"iso": "P7D", "seconds": 604_800},
        "anchor_at": "2026-03-02T10:00:00Z",
        "due_at": "2026-03-09T10:00:00Z",
        "fired_at": "2027-07-15T10:00:00Z",
        "delivered": True,
        "outcome": "delivered",
        "holdout": False,
        "reason": "no second order 7 days after the first on 2026-03-02",
        "context": {
            "order_count": 1,
            "spend": {"EUR": "59.90"},
            "first_purchase_at": "2026-03-02T10:00:00Z",
            "last_purchase_at": "2026-03-02T10:00:00Z",
            "last_activity_at": "2026-03-02T10:00:00Z",
            "lifecycle_stage": "new",
        },
        "clock": "stream",
        "rule_version": default_rules().versions()["second_purchase"],
    }
    assert nudge["schema"] == "nudge/1"
    assert {k: v for k, v in nudge.items() if k != "schema"} == {
        k: v for k, v in decision.items() if k not in ("schema", "delivered", "outcome", "clock")
    }
    assert proc.decision_counts[("second_purchase", 1, "delivered")] == 1
    assert store.state("cus_a").ladders["second_purchase"].step == 1


def test_an_advance_persists_the_clock() -> None:
    proc, store = processor(), DictStore()
    result = store.commit(proc.handle(0, adv(SOURCES[0], at(days=3)), store))
    clock = orjson.loads(result.writes[CLOCK_KEY_PREFIX + "0"])
    assert clock["markers"] == {SOURCES[0]: at(days=3)}


def test_a_duplicate_produces_nothing() -> None:
    proc, store = processor(), DictStore()
    order = purchase("cus_a", T0, "ORD-1")
    run(proc, store, [ev(order), *advance_all(at(days=1))])
    result = proc.handle(0, ev(order), store)
    assert (result.outputs, result.writes) == ([], {})
    resent = Event.from_wire({**order.to_wire(), "e": "evt-producer-retry"})
    result = proc.handle(0, ev(resent), store)
    assert (result.outputs, result.writes) == ([], {})
    assert proc.counters["duplicates"] == 2
    assert store.state("cus_a").orders == 1


def test_events_from_the_stream_move_the_clock_and_fire_for_other_customers() -> None:
    sources = (SRC["purchase"], SRC["session"])
    proc = processor(sources=sources, core=CoreSettings(stream_allowed_lateness=DAY))
    store = DictStore()
    run(proc, store, [ev(purchase("cus_a", T0)), ev(session("cus_b", T0))])
    # Purchases and sessions from other customers carry the clock to day 8 - 1 day.
    out = run(proc, store, [ev(purchase("cus_c", at(days=8))), ev(session("cus_d", at(days=8)))])
    assert decisions(out) == [("cus_a", "second_purchase", 1, "2026-03-09T10:00:00Z")]


def test_simultaneous_firings_go_out_by_due_then_customer_rule_and_step() -> None:
    proc, store = processor(), DictStore()
    run(proc, store, [ev(purchase("cus_b", T0)), ev(purchase("cus_a", T0))])
    out = run(proc, store, advance_all(at(days=14)))
    assert decisions(out) == [
        ("cus_a", "second_purchase", 1, "2026-03-09T10:00:00Z"),
        ("cus_b", "second_purchase", 1, "2026-03-09T10:00:00Z"),
        ("cus_a", "second_purchase", 2, "2026-03-16T10:00:00Z"),
        ("cus_a", "inactivity", 1, "2026-03-16T10:00:00Z"),
        ("cus_b", "second_purchase", 2, "2026-03-16T10:00:00Z"),
        ("cus_b", "inactivity", 1, "2026-03-16T10:00:00Z"),
    ]


def test_each_partition_only_drives_its_own_customers() -> None:
    proc, store = processor(), DictStore()
    run(proc, store, [ev(purchase("cus_p0", T0))], partition=0)
    run(proc, store, [ev(purchase("cus_p1", T0))], partition=1)
    out = run(proc, store, advance_all(at(days=8)), partition=0)
    assert decisions(out) == [("cus_p0", "second_purchase", 1, "2026-03-09T10:00:00Z")]
    out = run(proc, store, advance_all(at(days=8)), partition=1)
    assert decisions(out) == [("cus_p1", "second_purchase", 1, "2026-03-09T10:00:00Z")]


def test_backfill_records_history_without_emitting_it() -> None:
    proc, store = processor(core=CoreSettings(backfill_until=at(days=20))), DictStore()
    run(proc, store, [ev(purchase("cus_a", T0))])
    out = run(proc, store, advance_all(at(days=40)))
    assert decisions(out) == [
        ("cus_a", "second_purchase", 3, "2026-04-01T10:00:00Z"),
        ("cus_a", "inactivity", 2, "2026-04-01T10:00:00Z"),
    ]
    assert proc.counters["backfill_silenced"] == 3
    assert store.state("cus_a").ladders["second_purchase"].step == 3


# --- restarts -------------------------------------------------------------------------


PHASE_1 = [
    ev(purchase("cus_a", T0, "ORD-A1")),
    ev(session("cus_a", at(days=1))),
    ev(purchase("cus_b", at(days=2), "ORD-B1")),
    ev(purchase("cus_c", at(days=3), "ORD-C1")),
    ev(consent("cus_c", at(days=3), "opted_in")),
    *advance_all(at(days=10)),
    ev(purchase("cus_b", at(days=11), "ORD-B2")),
]
PHASE_2 = [
    ev(session("cus_c", at(days=12))),
    ev(purchase("cus_d", at(days=12), "ORD-D1")),
    *advance_all(at(days=90)),
]


def test_a_rebuilt_runtime_gives_the_same_next_firings() -> None:
    continuous, store = processor(), DictStore()
    run(continuous, store, PHASE_1)
    expected_next = continuous.runtimes[0].index.next_time()
    expected = run(continuous, store, PHASE_2)

    proc, restarted = processor(), DictStore()
    run(proc, restarted, PHASE_1)
    proc.revoke()
    rebuilt = proc.runtime(0, restarted)
    assert rebuilt.index.next_time() == expected_next
    assert len(rebuilt.index) == 3
    assert proc.counters["index_rebuilt_customers"] == 3
    assert run(proc, restarted, PHASE_2) == expected
    assert restarted.data == store.data

    # A new process over the same store (a crash and restart) agrees too.
    fresh, again = processor(), DictStore()
    run(processor(), again, PHASE_1)
    assert run(fresh, again, PHASE_2) == expected


def test_revoking_one_partition_keeps_the_others() -> None:
    proc, store = processor(), DictStore()
    run(proc, store, [ev(purchase("cus_p0", T0))], partition=0)
    run(proc, store, [ev(purchase("cus_p1", T0))], partition=1)
    proc.revoke([1])
    assert set(proc.runtimes) == {0}


def test_a_crash_before_the_state_write_re_emits_the_same_decisions() -> None:
    proc, store = processor(), DictStore()
    run(proc, store, [ev(purchase("cus_a", T0)), *advance_all(at(days=5))])
    last = adv(SOURCES[0], at(days=8))
    run(proc, store, [adv(s, at(days=8)) for s in SOURCES[1:]])
    first = proc.handle(0, last, store)  # outputs sent, then the worker dies
    assert first.outputs
    again = processor().handle(0, last, store)
    assert [(o.topic, o.key, o.value) for o in again.outputs] == [
        (o.topic, o.key, o.value) for o in first.outputs
    ]


# --- wall clock -----------------------------------------------------------------------


def tick(wall: ManualClock) -> bytes:
    return orjson.dumps({"type": "tick", "now": wall()})


def test_wall_mode_ticks_fire_at_the_due_time() -> None:
    wall = ManualClock(T0 + 3_600_000_000)
    proc, store = processor(mode="wall", wall=wall), DictStore()
    result = store.commit(proc.handle(0, ev(purchase("cus_a", T0)), store))
    assert store.state("cus_a").orders == 1  # applied at once: the wall clock passed it
    assert not any(k.startswith(CLOCK_KEY_PREFIX) for k in result.writes)

    wall.now = at(days=7) - 1_000_000
    assert run(proc, store, [tick(wall)]) == []
    wall.advance(1)
    out = run(proc, store, [tick(wall)])
    assert decisions(out) == [("cus_a", "second_purchase", 1, "2026-03-09T10:00:00Z")]
    decision = out[0][2]
    assert decision["fired_at"] == decision["due_at"]
    assert decision["clock"] == "wall"
    assert run(proc, store, [tick(wall)]) == []
    assert proc.counters["ticks"] == 3


def test_wall_mode_ignores_stream_advances() -> None:
    wall = ManualClock(T0 + 3_600_000_000)
    proc, store = processor(mode="wall", wall=wall), DictStore()
    run(proc, store, [ev(purchase("cus_a", T0))])
    assert run(proc, store, advance_all(at(days=60))) == []


# --- arrival order ----------------------------------------------------------------------


@st.composite
def partition_history(draw: st.DrawFn) -> list[Event]:
    events = []
    for i in range(draw(st.integers(2, 16))):
        cid = draw(st.sampled_from(["cus_a", "cus_b", "cus_c"]))
        t = at(hours=12 * draw(st.integers(0, 120)))
        if draw(st.booleans()):
            events.append(purchase(cid, t, f"ORD-{i}", event_id=f"evt-{i}"))
        else:
            events.append(session(cid, t, event_id=f"evt-{i}"))
    return events


@settings(max_examples=100, deadline=None)
@given(data=st.data(), events=partition_history())
def test_decisions_are_the_same_for_any_arrival_order_within_the_lateness(
    data: st.DataObject, events: list[Event]
) -> None:
    arrivals = data.draw(st.permutations(events))
    core = CoreSettings(stream_allowed_lateness=lag_needed(arrivals))
    sources = (SRC["purchase"], SRC["session"])
    final = advance_all(at(days=200), sources)

    shuffled = run(processor(core=core, sources=sources), DictStore(), [*map(ev, arrivals), *final])
    in_order = sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    reference = run(
        processor(core=core, sources=sources), DictStore(), [*map(ev, in_order), *final]
    )
    # What a consumer can see is the order on each topic (Kafka orders nothing across
    # topics: an outcome and a decision sent in one batch reach their readers apart).
    assert by_topic(shuffled) == by_topic(reference)
    assert sorted(map(repr, shuffled)) == sorted(map(repr, reference))


def by_topic(outputs: list[tuple[str, str, Any]]) -> dict[str, list[tuple[str, Any]]]:
    out: dict[str, list[tuple[str, Any]]] = {}
    for topic, key, value in outputs:
        out.setdefault(topic, []).append((key, value))
    return out


def test_a_customer_id_that_looks_like_the_clock_key_is_just_a_customer() -> None:
    proc, store = processor(), DictStore()
    run(proc, store, advance_all(at(days=-1)))
    odd = CLOCK_KEY_PREFIX + "0"
    run(proc, store, [ev(purchase(odd, T0)), ev(purchase("cus_a", T0))])
    out = run(proc, store, advance_all(at(days=8)))
    assert decisions(out) == [
        (odd, "second_purchase", 1, "2026-03-09T10:00:00Z"),
        ("cus_a", "second_purchase", 1, "2026-03-09T10:00:00Z"),
    ]


# --- batches and slices ------------------------------------------------------------------


def run_batched(
    proc: CustomerProcessor,
    store: DictStore,
    messages: list[bytes],
    batch: int,
    limit: int,
    pipelined: bool = False,
) -> list[tuple[str, str, dict[str, Any]]]:
    """Feed ``batch`` messages at a time and step ``limit`` units a slice, as the agent
    does; ``pipelined``: a slice's rows are committed only after the next slice ran
    (with the previous slice's states as its carry)."""
    out = []
    for i in range(0, len(messages), batch):
        proc.feed(0, [(i + j, m) for j, m in enumerate(messages[i : i + batch])], store)
        previous: Result | None = None
        while proc.has_work(0):
            result = proc.step(0, store, limit=limit, carry=previous.states if previous else None)
            out += [(o.topic, o.key, orjson.loads(o.value)) for o in result.outputs]
            if pipelined:
                if previous is not None:
                    store.commit(previous)
                previous = result
            else:
                store.commit(result)
        if previous is not None:
            store.commit(previous)
    return out


def per_customer(outputs: list[tuple[str, str, dict[str, Any]]]) -> dict[str, list[Any]]:
    """Outputs in topic order per key: what a keyed topic preserves."""
    by: dict[str, list[Any]] = {}
    for topic, key, value in outputs:
        by.setdefault(key, []).append((topic, value))
    return by


@settings(max_examples=150, deadline=None)
@given(
    events=partition_history(),
    batch=st.integers(1, 20),
    limit=st.integers(1, 12),
    pipelined=st.booleans(),
)
def test_decisions_and_rows_do_not_depend_on_batch_or_slice_boundaries(
    events: list[Event], batch: int, limit: int, pipelined: bool
) -> None:
    sources = (SRC["purchase"], SRC["session"])
    core = CoreSettings(stream_allowed_lateness=DAY)
    steps = [*advance_all(at(days=40), sources), *advance_all(at(days=200), sources)]
    messages = [*map(ev, events), ev(events[0]), *steps]  # one duplicate too
    one_by_one, s1 = DictStore(), DictStore()
    expected = run(processor(core=core, sources=sources), s1, messages)
    got = run_batched(
        processor(core=core, sources=sources), one_by_one, messages, batch, limit, pipelined
    )
    assert per_customer(got) == per_customer(expected)
    rows = {k for k in s1.data if k.startswith(CUSTOMER_KEY_PREFIX)}
    assert {k for k in one_by_one.data if k.startswith(CUSTOMER_KEY_PREFIX)} == rows
    for key in rows:
        a, b = orjson.loads(one_by_one.data[key]), orjson.loads(s1.data[key])
        a.pop("version"), b.pop("version")  # one bump per slice instead of per message
        assert a == b


def test_a_big_clock_advance_is_processed_in_slices() -> None:
    proc, store = processor(), DictStore()
    customers = [f"cus_{i:03d}" for i in range(120)]
    run(proc, store, [ev(purchase(c, T0, f"ORD-{c}")) for c in customers])
    proc.feed(0, [(1, m) for m in advance_all(at(days=8))], store)
    slices = []
    while proc.has_work(0):
        slices.append(store.commit(proc.step(0, store, limit=25)))
    assert len(slices) >= 120 // 25  # no single call fires everyone
    fired = decisions([(o.topic, o.key, orjson.loads(o.value)) for r in slices for o in r.outputs])
    assert sorted(c for c, *_ in fired) == customers
    assert all(len(r.writes) <= 25 + 1 for r in slices)  # rows of the slice + the clock


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        b'{"type": "adv", "src": "retention.purchases:0", "until": "soon"}',
        b'{"type": "adv", "src": "nowhere:9", "until": 5}',
        b'{"ev": {}}',
        b'{"type": "ev", "src": "retention.purchases:0", "ev": {}}',
        b'{"type": "ev", "src": "retention.purchases:0"}',
        b'{"type": "mystery"}',
        b"",
    ],
)
def test_an_unreadable_internal_message_is_a_dead_letter_not_a_crash(raw: bytes) -> None:
    proc, store = processor(), DictStore()
    result = proc.handle(0, raw, store, offset=41)
    [letter] = result.outputs
    assert (letter.topic, letter.key) == (DLQ, f"{INTERNAL}:0:41")
    record = orjson.loads(letter.value)
    assert record["error_code"] == "invalid_internal_message"
    assert record["source"] == {"topic": INTERNAL, "partition": 0, "offset": 41}
    assert record["error"]
    assert proc.dead_letters == {"invalid_internal_message": 1}
    # The partition goes on working after it.
    run(proc, store, [ev(purchase("cus_a", T0)), *advance_all(at(days=8))])
    assert store.state("cus_a").orders == 1


def bundle(messages: list[bytes]) -> bytes:
    [record] = bundles(messages)
    return record


def test_a_bundle_is_processed_as_its_messages_one_by_one() -> None:
    history = [
        ev(purchase("cus_a", T0, "ORD-1")),
        ev(session("cus_b", at(days=1))),
        ev(purchase("cus_b", at(days=2), "ORD-2")),
        *advance_all(at(days=20)),
        ev(purchase("cus_a", at(days=21), "ORD-3")),
        *advance_all(at(days=90)),
    ]
    expected_store = DictStore()
    expected = run(processor(), expected_store, history)
    store = DictStore()
    got = run(processor(), store, [bundle(history[:4]), bundle(history[4:])])
    assert decisions(expected)  # the history fires something
    assert got == expected
    assert store.state("cus_a").orders == expected_store.state("cus_a").orders == 2


def test_a_bad_item_in_a_bundle_is_a_dead_letter_and_the_others_go_through() -> None:
    proc, store = processor(), DictStore()
    record = bundle([b'{"type": "ev", "ev": {}}', ev(purchase("cus_a", T0, "ORD-1"))])
    result = store.commit(proc.handle(0, record, store, offset=7))
    [letter] = [o for o in result.outputs if o.topic == DLQ]
    assert orjson.loads(letter.value)["error_code"] == "invalid_internal_message"
    run(proc, store, advance_all(at(days=1)))
    assert store.state("cus_a").orders == 1
    [broken] = proc.handle(0, b'{"type": "bundle", "items": 5}', store).outputs
    assert "items" in orjson.loads(broken.value)["error"]


def test_events_behind_the_stream_clock_are_counted_per_topic_as_late() -> None:
    sources = (SRC["purchase"], SRC["session"], SRC["consent"])
    clocked, store = (
        processor(core=CoreSettings(stream_allowed_lateness=DAY), sources=sources),
        DictStore(),
    )
    run(clocked, store, advance_all(at(days=10), sources))
    run(clocked, store, [ev(session("cus_a", at(days=12))), ev(session("cus_b", at(days=3)))])
    assert clocked.late == {"retention.sessions": 1}
    assert clocked.runtimes[0].advanced_at == FIRED_AT  # the wall clock when it moved


def test_a_duplicate_behind_the_stream_clock_is_a_duplicate_not_a_late_event() -> None:
    sources = (SRC["purchase"], SRC["session"], SRC["consent"])
    clocked, store = (
        processor(core=CoreSettings(stream_allowed_lateness=DAY), sources=sources),
        DictStore(),
    )
    first = ev(session("cus_a", at(days=3)))
    run(clocked, store, [first])
    run(clocked, store, advance_all(at(days=10), sources))
    # The same event again (a producer retry), now far behind the clock.
    run(clocked, store, [first, first])
    assert clocked.counters["duplicates"] == 2
    assert clocked.late == {}


CLOCK_IDLE_TIMEOUT = 300 * 1_000_000  # RETENTION_CLOCK_IDLE_TIMEOUT's default


def test_a_clock_held_back_by_a_silent_source_is_reported() -> None:
    wall = ManualClock(FIRED_AT)
    proc, store = processor(wall=wall), DictStore()
    quiet = SOURCES[-1]
    # Every source is at day 100 but one, at day 5: it holds the clock back.
    run(proc, store, [adv(s, at(days=5 if s == quiet else 100)) for s in SOURCES])
    assert proc.clock_warnings(CLOCK_IDLE_TIMEOUT) == []
    for hour in range(0, 24 * 30, 12):  # events keep coming; one source stays silent
        wall.advance(60)
        run(proc, store, [ev(session("cus_a", at(days=6, hours=hour)))])
    [warning] = proc.clock_warnings(CLOCK_IDLE_TIMEOUT)
    assert "partition 0 stuck at 2026-03-07T10:00:00Z" in warning
    assert f"held back by {quiet} (" in warning
    run(proc, store, [adv(quiet, at(days=100))])
    wall.advance(1)
    run(proc, store, [ev(session("cus_a", at(days=41)))])
    assert proc.clock_warnings(CLOCK_IDLE_TIMEOUT) == []


def test_a_clock_that_never_starts_is_stuck_from_its_first_event_on() -> None:
    # docs/time.md "Time", "A stuck clock": producers keyed by customer_id send a customer
    # partition events from few input partitions, and no control/advance.
    wall = ManualClock(FIRED_AT)
    proc, store = processor(wall=wall), DictStore()
    run(proc, store, [ev(purchase("cus_a", at(days=1), "ORD-1"))])
    rt = proc.runtimes[0]
    wall.advance(299)
    assert proc.stuck_for(rt, wall()) == 299 * 1_000_000  # counted from the first event
    assert proc.clock_warnings(CLOCK_IDLE_TIMEOUT) == []  # not yet: the idle timeout
    wall.advance(2)  # no more events: still stuck, and now reported
    [warning] = proc.clock_warnings(CLOCK_IDLE_TIMEOUT)
    assert "stream clock of partition 0 has not started 301 s after its first event" in warning
    assert f"{len(SOURCES) - 1} of {len(SOURCES)} input partitions sent no event" in warning
    assert "RETENTION_STREAM_HEARTBEAT" in warning
    run(proc, store, advance_all(at(days=1)))  # a heartbeat, say: the clock starts
    assert proc.stuck_for(rt, wall()) == 0 and proc.clock_warnings(CLOCK_IDLE_TIMEOUT) == []


def test_an_idle_clock_that_caught_up_with_its_events_is_not_stuck() -> None:
    wall = ManualClock(FIRED_AT)
    proc, store = processor(wall=wall), DictStore()
    run(proc, store, [*advance_all(at(days=1)), ev(purchase("cus_a", at(days=1), "ORD-1"))])
    run(proc, store, advance_all(at(days=2)))  # the clock moves past the last event
    wall.advance(86_400)  # then a quiet day: idle, not stuck
    assert proc.stuck_for(proc.runtimes[0], wall()) == 0
    assert proc.clock_warnings(CLOCK_IDLE_TIMEOUT) == []


# --- the internal topic is bounded like ingest's inputs (docs/time.md "Time") -----------------

YEAR_9999 = to_micros(datetime(9999, 12, 31, tzinfo=UTC))


def letters(outputs: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    return [d["error_code"] for t, _, d in outputs if t == DLQ]


def test_an_internal_advance_to_year_9999_is_a_dead_letter_and_fires_nothing() -> None:
    proc, store = processor(), DictStore()
    run(proc, store, [ev(purchase("cus_a", T0, "ORD-1")), *advance_all(at(days=1))])
    before = proc.runtimes[0].clock.watermark()
    # Something other than ingest writes one integer advance per source, far ahead.
    out = run(proc, store, advance_all(YEAR_9999))
    assert letters(out) == ["future_timestamp"] * len(SOURCES)
    assert decisions(out) == []  # no ladder fired at once
    assert proc.runtimes[0].clock.watermark() == before
    assert "until 9999-12-31T00:00:00" in next(d for t, _, d in out if t == DLQ)["error"]
    # The ladder still fires when the clock gets there honestly.
    assert decisions(run(proc, store, advance_all(at(days=8))))


def test_an_internal_event_dated_after_now_plus_the_tolerance_is_a_dead_letter() -> None:
    proc, store = processor(), DictStore()
    out = run(proc, store, [ev(purchase("cus_a", YEAR_9999, "ORD-1"))])
    assert letters(out) == ["future_timestamp"]
    assert CUSTOMER_KEY_PREFIX + "cus_a" not in store.data  # no row, nothing pending
    assert proc.dead_letters == {"future_timestamp": 1}
    assert proc.counters["events"] == 0


@pytest.mark.parametrize("mode", ["stream", "wall"])
def test_the_internal_bound_is_inclusive_like_ingest(mode: str) -> None:
    proc, store = processor(mode=mode), DictStore()
    limit = FIRED_AT + DAY  # the wall clock + the future tolerance
    out = run(proc, store, [ev(session("cus_a", limit)), ev(session("cus_b", limit + 1))])
    assert letters(out) == ["future_timestamp"]
    assert CUSTOMER_KEY_PREFIX + "cus_a" in store.data
    assert CUSTOMER_KEY_PREFIX + "cus_b" not in store.data
    if mode == "stream":
        assert letters(run(proc, store, [adv(SOURCES[0], limit)])) == []
        assert letters(run(proc, store, [adv(SOURCES[0], limit + 1)])) == ["future_timestamp"]


def test_the_internal_bound_follows_the_wall_clock_and_the_configured_tolerance() -> None:
    wall = ManualClock(FIRED_AT)
    proc, store = processor(wall=wall, future_tolerance=7 * DAY), DictStore()
    later = FIRED_AT + 10 * DAY
    assert letters(run(proc, store, [ev(session("cus_a", later))])) == ["future_timestamp"]
    wall.now += 3 * DAY  # the same message, once the wall clock has caught up
    assert letters(run(proc, store, [ev(session("cus_a", later))])) == []
    assert store.state("cus_a").pending  # waits for its time, like any event


def test_an_advance_beyond_any_datetime_is_a_readable_dead_letter() -> None:
    proc, store = processor(), DictStore()
    [(topic, _, letter)] = run(proc, store, [adv(SOURCES[0], 2**62)])
    assert topic == DLQ and letter["error_code"] == "future_timestamp"
    assert f"{2**62} micros" in letter["error"]


def test_old_history_on_the_internal_topic_is_not_bounded() -> None:
    """Past the earliest event time (1970) nothing is bounded: a stream-mode replay of
    1998 fires as it did."""
    old = to_micros(datetime(1998, 5, 15, tzinfo=UTC))
    proc, store = processor(), DictStore()
    out = run(
        proc,
        store,
        [ev(purchase("cus_a", old, "ORD-1")), *advance_all(old + 60 * DAY)],
    )
    assert letters(out) == []
    assert [r for _, r, _, _ in decisions(out)]  # the ladders fired in 1998
    assert all(d.startswith("1998-") for *_, d in decisions(out))


def test_the_worker_bounds_its_internal_topic_by_the_configured_tolerance() -> None:
    """RETENTION_FUTURE_TOLERANCE reaches the customers agent through the one Config."""
    from streams.config import load_config
    from streams.worker.app import RetentionApp

    env = {"RETENTION_STORE": "memory://", "RETENTION_FUTURE_TOLERANCE": "PT2H"}
    app = RetentionApp(load_config(env, use_stack_file=False), wall_clock=ManualClock(FIRED_AT))
    proc, store = app.processor, DictStore()
    assert proc.future_tolerance == app.ingest.future_tolerance == 2 * 3_600_000_000
    out = run(proc, store, [ev(session("cus_a", FIRED_AT + 3 * 3_600_000_000))])
    assert letters(out) == ["future_timestamp"]


# --- ... and by the earliest accepted event time (docs/time.md "Time") -------------------------

YEAR_1 = to_micros(datetime(1, 1, 1, tzinfo=UTC))  # Go's zero time, .NET's MinValue


@pytest.mark.parametrize("mode", ["stream", "wall"])
def test_an_internal_event_dated_year_1_is_a_dead_letter_and_fires_nothing(mode: str) -> None:
    # Under the wall clock such a customer would get every step at once ("no
    # second order 7 days after the first on 0001-01-01").
    proc, store = processor(mode=mode), DictStore()
    out = run(proc, store, [ev(purchase("cus_a", YEAR_1, "ORD-1")), *advance_all(at(days=90))])
    assert letters(out) == ["early_timestamp"]
    assert decisions(out) == []
    assert CUSTOMER_KEY_PREFIX + "cus_a" not in store.data
    assert proc.dead_letters == {"early_timestamp": 1}
    error = next(d for t, _, d in out if t == DLQ)["error"]
    assert "0001-01-01T00:00:00Z is before the earliest accepted event time 1970-01-01" in error


def test_an_internal_advance_before_the_earliest_event_time_is_a_dead_letter() -> None:
    proc, store = processor(), DictStore()
    out = run(proc, store, [*advance_all(YEAR_1), adv(SOURCES[0], -(2**62) + 1)])
    assert letters(out) == ["early_timestamp"] * (len(SOURCES) + 1)
    assert proc.runtime(0, store).clock.markers == {}  # the clock never started
    assert (
        f"until {-(2**62) + 1} micros is before"
        in next(d for t, _, d in reversed(out) if t == DLQ)["error"]
    )


def test_the_worker_bounds_its_internal_topic_by_the_configured_earliest_time() -> None:
    """RETENTION_MIN_EVENT_TIME reaches ingest and the customers agent alike."""
    from streams.config import load_config
    from streams.worker.app import RetentionApp

    env = {"RETENTION_STORE": "memory://", "RETENTION_MIN_EVENT_TIME": "2000-01-01T00:00:00Z"}
    app = RetentionApp(load_config(env, use_stack_file=False), wall_clock=ManualClock(FIRED_AT))
    proc, store = app.processor, DictStore()
    y2k = to_micros(datetime(2000, 1, 1, tzinfo=UTC))
    assert proc.min_event_time == app.ingest.min_event_time == y2k
    out = run(proc, store, [ev(session("cus_a", y2k - 1)), ev(session("cus_b", y2k))])
    assert letters(out) == ["early_timestamp"]
    assert CUSTOMER_KEY_PREFIX + "cus_b" in store.data
