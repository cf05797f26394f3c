"""Pending events when input partitions are consumed unevenly (docs/time.md
"Uneven consumption", docs/budget.md "Pending").

The whole pure path - raw input bytes -> ingest -> bundles -> customers over a
dict store - fed the same history two ways: lock-step (every input partition in
time order) and with one input partition consumed completely before the others
(a catching-up fetch, a worker restarting).  The stream clock is the minimum over
the input partitions, so in the second run nothing is applied until the others
catch up, and a busy customer's waiting events go far beyond its row's share:
they wait in overflow rows of the same table, and the decisions are those of the
lock-step run and of the offline reference.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator

import orjson
from aiokafka.partitioner import DefaultPartitioner

from agents.contract import CUSTOMER_KEY_PREFIX, PENDING_KEY_PREFIX
from agents.core.budget import CODE_PENDING_OVERFLOW, ROW_BUDGET
from agents.core.clock import ManualClock
from agents.core.settings import DAY, HOUR, CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import iso
from agents.customer import CustomerProcessor, Result
from agents.offline.reference import compute_decisions
from agents.wire import bundles
from schemas.records import Event
from streams.config import Config
from tests.unit.agents.factories import T0, DictStore, processors, purchase, session

TOPICS = {
    "purchase/1": "retention.purchases",
    "session/1": "retention.sessions",
    "consent/1": "retention.consents",
}
# Every input topic is a source of the stream clock (docs/lifecycle.md "Inputs"):
# the final markers go to all of them.
INPUTS = Config().topics.inputs()
PARTITIONS = 2
DAYS = 120
UNTIL = T0 + (DAYS + 90) * DAY
NOW = T0 + (DAYS + 91) * DAY  # the wall clock: after every event and the final advance
AHEAD = ("retention.sessions", 0)  # the input partition consumed first
# Messages per ingest batch, each processed in one slice: decisions never depend
# on batch or slice boundaries (test_customer.py), and fewer slices decode fewer rows.
BATCH = 10_000
_partitioner = DefaultPartitioner()


def history(seed: int = 17) -> list[tuple[int, bytes]]:
    """(time, raw message) of >= 100,000 events, in time order: 2,200 ordinary
    customers, one with 3,000 sessions and 3 orders inside one day (the allowed
    lateness), one with 5,000 events over the whole span."""
    rng = random.Random(seed)
    out: list[tuple[int, dict[str, object]]] = []
    n = 0

    def add(cid: str, t: int, kind: str) -> None:
        nonlocal n
        n += 1
        base: dict[str, object] = {"event_id": f"e{n}", "customer_id": cid, "occurred_at": iso(t)}
        if kind == "purchase":
            base |= {"schema": "purchase/1", "order_id": f"o{n}", "amount": "19.90"}
            base["currency"] = "EUR"
        elif kind == "session":
            base |= {"schema": "session/1", "session_id": f"s{n}"}
        else:
            base |= {"schema": "consent/1", "status": rng.choice(["opted_in", "opted_out"])}
        out.append((t, base))

    for c in range(2200):
        cid = f"cus-{c:05d}"
        start = rng.randrange(DAYS * DAY)
        for _ in range(rng.randrange(20, 70)):
            t = start + rng.randrange(0, DAYS * DAY - start + 1)
            add(cid, T0 + t, rng.choices(["purchase", "session", "consent"], [20, 78, 2])[0])
    burst = T0 + 40 * DAY
    for _ in range(3000):
        add("busy-burst", burst + rng.randrange(DAY - HOUR), "session")
    for i in range(3):
        add("busy-burst", burst + DAY - HOUR + i, "purchase")
    for i in range(5000):
        kind = "purchase" if i % 50 == 0 else "session"
        add("busy-always", T0 + rng.randrange(DAYS * DAY), kind)
    out.sort(key=lambda x: x[0])
    return [(t, orjson.dumps(msg)) for t, msg in out]


def placed(lines: list[tuple[int, bytes]]) -> list[tuple[str, int, bytes]]:
    """(topic, input partition, raw) as unkeyed producers spread them (at random)."""
    rng = random.Random(5)
    return [
        (TOPICS[orjson.loads(raw)["schema"]], rng.randrange(PARTITIONS), raw) for _, raw in lines
    ]


def run(messages: Iterable[tuple[str, int, bytes]]) -> tuple[list[tuple[str, str, str]], Counter]:
    """Every message through ingest and the customers in batches, then a
    ``control/advance`` to UNTIL on every input partition (as ``retention replay``
    ends); returns the decisions (trigger id, due time, outcome) and dead letters."""
    wall = ManualClock(NOW)
    ingest, customers = processors(wall, core=CoreSettings(), partitions=PARTITIONS)
    stores = {p: DictStore() for p in range(PARTITIONS)}
    decisions: list[tuple[str, str, str]] = []
    dead: Counter[str] = Counter()
    offsets: Counter[tuple[str, int]] = Counter()
    parts = list(range(PARTITIONS))

    def batch(chunk: list[tuple[str, int, bytes]]) -> None:
        routed: dict[int, list[bytes]] = {}
        for topic, partition, raw in chunk:
            outputs, controls = ingest.handle(raw, topic, partition, offsets[(topic, partition)])
            offsets[(topic, partition)] += 1
            for out in outputs:
                p = int(_partitioner(out.key.encode(), parts, parts))
                routed.setdefault(p, []).append(out.value)
            for p, payload in controls:
                routed.setdefault(p, []).append(payload)
        for p, items in routed.items():
            customers.feed(p, [(0, b) for b in bundles(items)], stores[p])
            while customers.has_work(p):
                commit(customers.step(p, stores[p], limit=1 << 30), stores[p])

    def commit(result: Result, store: DictStore) -> None:
        for key, row in result.writes.items():
            assert len(row) <= ROW_BUDGET, key
        store.data.update(result.writes)
        for o in result.outputs:
            record = orjson.loads(o.value)
            if o.topic == "retention.decisions":
                decisions.append((record["trigger_id"], record["due_at"], record["outcome"]))
            elif o.topic == "retention.dlq":
                dead[record["error_code"]] += 1

    for chunk in _chunks(list(messages)):
        batch(chunk)
    assert not ingest.dead_letters
    marker = orjson.dumps({"schema": "control/advance", "until": iso(UNTIL)})
    batch([(t, p, marker) for t in INPUTS for p in parts])
    for store in stores.values():  # nothing waits any more, in a row or an overflow row
        for key, raw in store.data.items():
            if key.startswith(CUSTOMER_KEY_PREFIX):
                row = orjson.loads(raw)
                assert row["pending"] == [] and "spill" not in row, key
            elif key.startswith(PENDING_KEY_PREFIX):
                assert raw == b"[]", key
    return sorted(decisions), dead


def _chunks(items: list[tuple[str, int, bytes]]) -> Iterator[list[tuple[str, int, bytes]]]:
    for i in range(0, len(items), BATCH):
        yield items[i : i + BATCH]


def test_one_input_partition_consumed_first_decides_as_lock_step_and_the_reference() -> None:
    lines = history()
    assert len(lines) >= 100_000
    messages = placed(lines)
    ahead = [m for m in messages if (m[0], m[1]) == AHEAD]
    # The busy customers' events on the partition consumed first: thousands, each
    # waiting (the clock stays put until every input partition has spoken).
    busy = Counter(orjson.loads(raw)["customer_id"] for _, _, raw in ahead)
    assert busy["busy-always"] > 2000 and busy["busy-burst"] > 1000
    lock_step, lock_dead = run(messages)
    one_first, first_dead = run(ahead + [m for m in messages if (m[0], m[1]) != AHEAD])
    assert lock_dead[CODE_PENDING_OVERFLOW] == 0 and first_dead[CODE_PENDING_OVERFLOW] == 0
    assert one_first == lock_step
    reference = compute_decisions(
        (raw for _, raw in lines), Config(partitions=PARTITIONS), until=UNTIL, now=NOW
    )
    assert CODE_PENDING_OVERFLOW not in reference.dead_letters
    assert sorted((d["trigger_id"], d["due_at"], d["outcome"]) for d in reference.decisions) == (
        lock_step
    )
    # The busy customers decide too (today's main refused their events past 1,024).
    mine = {d["customer_id"] for d in reference.decisions}
    assert {"busy-always", "busy-burst"} <= mine


# Small overflow rows, so that a few hundred waiting events fill several (as small
# as the widest entry allows: agents.core.budget MAX_ENTRY_BYTES).
SMALL = CoreSettings(max_pending_events=4, pending_chunk_bytes=13_000, max_pending_bytes=64_000)


def test_a_crash_between_any_two_row_writes_loses_no_waiting_event() -> None:
    """Overflow rows go first, the customer row next, emptied rows last: killed
    after any prefix of a slice's writes and restarted (the slice's messages are
    delivered again), the customer ends with every event applied."""
    events = [
        purchase("c", T0 + i * HOUR) if i % 10 == 0 else session("c", T0 + i * HOUR)
        for i in range(400)
    ]
    random.Random(3).shuffle(events)
    msgs = [
        (i, orjson.dumps({"type": "ev", "src": "retention.sessions:0", "ev": e.to_wire()}))
        for i, e in enumerate(events)
    ]
    sources = [f"{t}:{p}" for t in INPUTS for p in range(PARTITIONS)]
    end = [(0, orjson.dumps({"type": "adv", "src": s, "until": T0 + 20 * DAY})) for s in sources]

    def customers() -> CustomerProcessor:
        return processors(ManualClock(NOW), core=SMALL, partitions=PARTITIONS).customer

    first, store = customers(), DictStore()
    first.feed(0, msgs[:200], store)
    store.data.update(first.step(0, store, limit=1 << 30).writes)
    assert orjson.loads(store.data["c/c"])["spill"]["n"] > 100  # the clock has not moved
    before = dict(store.data)
    first.feed(0, msgs[200:], store)
    writes = list(first.step(0, store, limit=1 << 30).writes.items())
    assert [k for k, _ in writes].index("c/c") not in (0, len(writes) - 1)
    for cut in range(len(writes) + 1):
        crashed = DictStore()
        crashed.data = before | dict(writes[:cut])
        again = customers()
        again.feed(0, msgs[200:] + end, crashed)
        while again.has_work(0):
            crashed.data.update(again.step(0, crashed).writes)
        state = CustomerState.from_dict(orjson.loads(crashed.data["c/c"]))
        assert state.pending_count() == 0
        assert (state.orders, state.last_session_at) == (40, T0 + 399 * HOUR), cut


def test_an_event_refused_at_the_cap_and_sent_again_is_applied() -> None:
    """Past the hostile-input cap an event is a ``pending_overflow`` dead letter;
    the same event sent again once the clock has moved is applied (today's main
    remembered its ids, so the re-send was dropped as a duplicate for good)."""
    core = CoreSettings(max_pending_events=4, max_pending_bytes=2000)
    customers = processors(ManualClock(NOW), core=core, partitions=PARTITIONS).customer
    store = DictStore()
    order = purchase("c", T0 + 100 * HOUR, "ORD-1")

    def ev(e: Event) -> bytes:
        return orjson.dumps({"type": "ev", "src": "retention.sessions:0", "ev": e.to_wire()})

    def deliver(messages: list[bytes]) -> Counter[str]:
        customers.feed(0, list(enumerate(messages)), store)
        dead: Counter[str] = Counter()
        while customers.has_work(0):
            result = customers.step(0, store)
            store.data.update(result.writes)
            for o in result.outputs:
                if o.topic == "retention.dlq":
                    dead[orjson.loads(o.value)["error_code"]] += 1
        return dead

    sessions = [ev(session("c", T0 + i * HOUR)) for i in range(60)]
    # The other input partitions are silent: the clock stays put and the cap fills.
    assert deliver([*sessions, ev(order)])[CODE_PENDING_OVERFLOW] > 1
    sources = [f"{t}:{p}" for t in INPUTS for p in range(PARTITIONS)]
    advance = [orjson.dumps({"type": "adv", "src": s, "until": T0 + 5 * DAY}) for s in sources]
    assert not deliver(advance)
    assert CustomerState.from_dict(orjson.loads(store.data["c/c"])).orders == 0
    assert not deliver([ev(order)])  # sent again: applied, not a duplicate
    state = CustomerState.from_dict(orjson.loads(store.data["c/c"]))
    assert (state.orders, state.last_order_at) == (1, T0 + 100 * HOUR)
