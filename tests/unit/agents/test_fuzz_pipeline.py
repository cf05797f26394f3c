"""Fuzz of the whole pure path: raw input bytes -> ingest -> bundles -> customers.

In-process, no broker: :class:`agents.ingest.IngestProcessor` validates and re-keys
each raw message, its outputs are bundled per customer partition as the ingest
agent does (murmur2 of the customer id, ``agents.wire.bundles``), and
:class:`agents.customer.CustomerProcessor` is fed and stepped in slices of any
size over a dict store, in stream-clock mode and in wall-clock mode with an
injected clock.  Inputs are hostile and valid: raw bytes, bad JSON, huge values,
wrong types, valid events with odd timestamps, lateness, duplicates, many
currencies and equal times, ``control/advance`` messages, and poison written
straight onto the internal topic.

Properties, for every input sequence:

* nothing raises: what cannot be used is a dead letter, and every dead letter
  carries a known error code;
* every table row and every output record stays within the byte budget
  (agents/core/budget.py, docs/budget.md "Byte budget");
* nothing is silently dropped: each raw input is a dead letter, an accepted
  event or a clock marker; each event reaching the customers is applied, a
  duplicate, or a dead letter; after the clock passes every event, each
  customer's orders and activity are exactly those of its accepted, non-duplicate,
  non-refused events.

``make unit`` runs a few thousand examples; ``make fuzz`` runs the same tests
with the ``long`` profile (``RETENTION_FUZZ_PROFILE=long``, docs/testing.md "Running tests").
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agents.contract import CLOCK_KEY_PREFIX, CUSTOMER_KEY_PREFIX, PENDING_KEY_PREFIX
from agents.core.budget import (
    CODE_CUSTOMER_OVER_BUDGET,
    CODE_PENDING_OVERFLOW,
    OUTPUT_BUDGET,
    ROW_BUDGET,
)
from agents.core.clock import ManualClock
from agents.core.settings import DAY, HOUR, CoreSettings, LadderSettings
from agents.core.state import CustomerState
from agents.core.timeutil import to_micros
from agents.core.validation import CODE_FUTURE_TIMESTAMP, ERROR_CODES
from agents.customer import Result, input_sources
from agents.wire import CODE_INTERNAL, bundles
from schemas.records import KIND_PURCHASE, KIND_SESSION, Event
from tests.unit.agents.factories import DictStore, processors

# --- profiles --------------------------------------------------------------------------

settings.register_profile(
    "fuzz-ci",
    max_examples=700,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz-long",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("fuzz-" + os.environ.get("RETENTION_FUZZ_PROFILE", "ci"))

# --- the pipeline under test -----------------------------------------------------------

NOW = to_micros(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
INPUTS = ("retention.purchases", "retention.sessions", "retention.consents")
TOPIC_OF = {"purchase/1": INPUTS[0], "session/1": INPUTS[1], "consent/1": INPUTS[2]}
IN_PARTITIONS = 2
PARTITIONS = 2
INTERNAL, DLQ = "retention.customer-events", "retention.dlq"
NUDGES, DECISIONS, OUTCOMES = "retention.nudges", "retention.decisions", "retention.outcomes"
SOURCES = input_sources(INPUTS, IN_PARTITIONS)
MAX_MESSAGE_BYTES = 64 * 1024
FUTURE_TOLERANCE = DAY
CODES = {*ERROR_CODES, CODE_PENDING_OVERFLOW, CODE_CUSTOMER_OVER_BUDGET, CODE_INTERNAL}
ENGINE_CODES = {CODE_PENDING_OVERFLOW, CODE_CUSTOMER_OVER_BUDGET}
# Short ladders and a tiny pending buffer make firings, conversions and overflows
# happen within the few days an example spans; the defaults run too.
SHORT = CoreSettings(
    second_purchase=LadderSettings("second_purchase", (HOUR, 6 * HOUR)),
    inactivity=LadderSettings("inactivity", (2 * HOUR, DAY)),
    overdue_floor=HOUR,
    min_gap=HOUR,
    # The row keeps 3 waiting events; the rest go to an overflow row until the
    # hostile-input cap of 8 KB.  The overflow rows are as small as the widest
    # entry allows (a cart snapshot's, agents.core.budget MAX_ENTRY_BYTES).
    max_pending_events=3,
    pending_chunk_bytes=11_500,
    max_pending_bytes=8000,
    holdout_percent=25.0,
)
_partitioner = DefaultPartitioner()


def partition_of(customer_id: str) -> int:
    """As the ingest agent routes a customer's events (streams/worker/app.py)."""
    parts = list(range(PARTITIONS))
    return int(_partitioner(customer_id.encode(), parts, parts))


@dataclass
class Pipeline:
    mode: str
    core: CoreSettings
    wall: ManualClock = field(default_factory=lambda: ManualClock(NOW))
    inputs: int = 0
    # What reached the customers agent, by what it should become.
    sent: Counter[str] = field(default_factory=Counter)
    # Accepted events in the order the customers agent sees them (per customer).
    accepted: list[Event] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    offsets: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.ingest, self.proc = processors(
            self.wall,
            mode=self.mode,
            core=self.core,
            partitions=PARTITIONS,
            max_message_bytes=MAX_MESSAGE_BYTES,
            future_tolerance=FUTURE_TOLERANCE,
            sources=SOURCES,
        )
        self.stores = {p: DictStore() for p in range(PARTITIONS)}
        self.queued: dict[int, list[bytes | None]] = {p: [] for p in range(PARTITIONS)}

    # --- ingest ------------------------------------------------------------------------

    def ingest_batch(self, batch: list[tuple[str, int, bytes | None]]) -> None:
        """One ingest batch: handle each message, then one bundle list per partition."""
        routed: dict[int, list[bytes]] = {}
        for topic, partition, value in batch:
            raw = None if value is None else bytes(value)  # as Kafka hands it over, not a Blob
            self.inputs += 1
            offset = self._offset(f"{topic}:{partition}")
            outputs, controls = self.ingest.handle(raw, topic, partition, offset)
            assert len(outputs) + bool(controls) == 1, (raw, outputs, controls)
            for out in outputs:
                self._check_output(out.topic, out.value)
                if out.topic == DLQ:
                    assert out.key == f"{topic}:{partition}:{offset}"
                    continue
                assert out.topic == INTERNAL
                msg = orjson.loads(out.value)
                event = Event.from_wire(msg["ev"])
                assert event.customer_id == out.key
                self.accepted.append(event)
                self.sent["ev"] += 1
                routed.setdefault(partition_of(out.key), []).append(out.value)
            if controls:
                assert sorted(p for p, _ in controls) == list(range(PARTITIONS))
                for p, payload in controls:
                    self.sent["adv"] += 1
                    routed.setdefault(p, []).append(payload)
        for p, items in routed.items():
            for record in bundles(items):
                self._check_output(INTERNAL, record)
                self.queued[p].append(record)

    # --- the internal topic ------------------------------------------------------------

    def poison(self, partition: int, raw: bytes | None, dead_letters: Counter[str]) -> None:
        """``dead_letters``: the codes the message makes; FUTURE_ADV counts in stream mode."""
        self.queued[partition].append(None if raw is None else bytes(raw))  # not a Blob
        self.sent["poison"] += dead_letters[CODE_INTERNAL]
        self.sent["poison_future"] += dead_letters[CODE_FUTURE_TIMESTAMP]
        if self.mode == "stream":  # the wall clock ignores advances
            self.sent["poison_future"] += dead_letters[FUTURE_ADV]

    def tick(self) -> None:
        payload = orjson.dumps({"type": "tick", "now": self.wall()})
        for p in range(PARTITIONS):
            self.queued[p].append(payload)
            self.sent["tick"] += 1

    # --- customers ---------------------------------------------------------------------

    def process(self, limit: int) -> None:
        for p in range(PARTITIONS):
            store = self.stores[p]
            messages = [(self._offset(f"{INTERNAL}:{p}"), v) for v in self.queued[p]]
            self.queued[p] = []
            self.proc.feed(p, messages, store)
            while self.proc.has_work(p):
                self._commit(store, self.proc.step(p, store, limit=limit))

    def _commit(self, store: DictStore, result: Result) -> None:
        for out in result.outputs:
            self._check_output(out.topic, out.value)
        for key, row in result.writes.items():
            assert key.startswith((CUSTOMER_KEY_PREFIX, CLOCK_KEY_PREFIX, PENDING_KEY_PREFIX))
            assert len(row) <= ROW_BUDGET, (key, len(row))
        store.data.update(result.writes)

    def _check_output(self, topic: str, value: bytes) -> None:
        assert len(value) <= OUTPUT_BUDGET, (topic, len(value))
        if topic == DLQ:
            record = orjson.loads(value)
            assert record["error_code"] in CODES, record
            assert record["error"]
            self.dead.append(record)

    def _offset(self, name: str) -> int:
        self.offsets[name] += 1
        return self.offsets[name] - 1

    # --- the end -----------------------------------------------------------------------

    def advance(self, until: int) -> None:
        """``control/advance`` to ``until`` on every input partition, as replay sends."""
        marker = orjson.dumps(
            {"schema": "control/advance", "until": _rfc3339(until, 0, 6, "T", "Z")}
        )
        self.ingest_batch([(t, p, marker) for t in INPUTS for p in range(IN_PARTITIONS)])

    def drain(self) -> None:
        """Move every clock past every event the pipeline could have accepted."""
        if self.mode == "stream":
            self.advance(self.wall() + FUTURE_TOLERANCE)
        else:
            self.wall.now += FUTURE_TOLERANCE + 1
            self.tick()
        self.process(limit=1 << 30)

    def check(self) -> None:
        """Every input and every message accounted for; each customer's facts exact."""
        ingest_dead = sum(self.ingest.dead_letters.values())
        assert ingest_dead + self.ingest.accepted + self.ingest.markers == self.inputs
        assert self.ingest.accepted == self.sent["ev"]
        assert self.ingest.markers * PARTITIONS == self.sent["adv"]
        proc = self.proc
        assert proc.dead_letters[CODE_INTERNAL] == self.sent["poison"]
        # Ingest bounds what it forwards, so only poison is ever past the bound here.
        assert proc.dead_letters[CODE_FUTURE_TIMESTAMP] == self.sent["poison_future"]
        refused = sum(proc.dead_letters[c] for c in ENGINE_CODES)
        events, duplicates = proc.counters["events"], proc.counters["duplicates"]
        assert events + duplicates + refused == self.sent["ev"]
        assert proc.counters["ticks"] == self.sent["tick"]
        assert len(self.dead) == ingest_dead + sum(proc.dead_letters.values())
        # The engine's refusals name their events (the dead letter keeps the item);
        # a refused event is not remembered, so a later copy of it may be taken in.
        refused_ids: Counter[tuple[str, str]] = Counter()
        for record in self.dead:
            if record["error_code"] in ENGINE_CODES:
                item = orjson.loads(base64.b64decode(record["original_base64"]))
                refused_ids[(item["ev"]["c"], item["ev"]["e"])] += 1
        assert refused_ids.total() == refused
        # A model of the dedup: event ids (newest 512, never reached here) and order
        # ids per customer, in the order the customers agent took the events.
        seen_events: dict[str, set[str]] = defaultdict(set)
        seen_orders: dict[str, set[str]] = defaultdict(set)
        applied: dict[str, list[Event]] = defaultdict(list)
        dups = 0
        for e in self.accepted:
            c = e.customer_id
            if e.event_id in seen_events[c] or (
                e.kind == KIND_PURCHASE and e.order_id in seen_orders[c]
            ):
                dups += 1
                continue
            if refused_ids[(c, e.event_id)]:
                refused_ids[(c, e.event_id)] -= 1  # this copy was the one refused
                continue
            seen_events[c].add(e.event_id)
            if e.kind == KIND_PURCHASE:
                assert e.order_id is not None
                seen_orders[c].add(e.order_id)
            applied[c].append(e)
        assert dups == duplicates
        assert sum(map(len, applied.values())) == events
        for cid, evs in applied.items():
            raw = self.stores[partition_of(cid)].get(CUSTOMER_KEY_PREFIX + cid)
            assert raw is not None, cid
            state = CustomerState.from_dict(orjson.loads(raw))
            assert state.pending == [] and not state.spill, cid
            orders = [e.occurred_at for e in evs if e.kind == KIND_PURCHASE]
            active = orders + [e.occurred_at for e in evs if e.kind == KIND_SESSION]
            assert state.orders == len(orders), cid
            assert state.first_order_at == (min(orders) if orders else None)
            assert state.last_activity_at == (max(active) if active else None)


# --- hostile and valid inputs ----------------------------------------------------------


class Raw:
    """JSON text put into a message verbatim (numbers no serialiser would write)."""

    def __init__(self, text: str) -> None:
        self.text = text


def to_json(obj: Any) -> bytes:
    raws: list[str] = []

    def default(o: Any) -> str:
        if isinstance(o, Raw):
            raws.append(o.text)
            return f"\x00raw{len(raws) - 1}\x00"
        raise TypeError(o)

    text = json.dumps(obj, default=default, ensure_ascii=False)
    for i, r in enumerate(raws):
        text = text.replace(f'"\\u0000raw{i}\\u0000"', r)
    return text.encode("utf-8", "surrogatepass")


def _rfc3339(t: int, offset_minutes: int, digits: int, sep: str, zulu: str) -> str:
    local = datetime(1970, 1, 1) + timedelta(microseconds=t, minutes=offset_minutes)
    out = f"{local.year:04d}-{local:%m-%d}{sep}{local:%H:%M:%S}"
    if digits:
        out += "." + (f"{local.microsecond:06d}" + "987654321")[:digits]
    if offset_minutes == 0 and zulu:
        return out + zulu
    sign = "-" if offset_minutes < 0 else "+"
    hh, mm = divmod(abs(offset_minutes), 60)
    return f"{out}{sign}{hh:02d}:{mm:02d}"


# A few shared instants, so that equal timestamps and exact duplicates happen.
INSTANTS = [NOW - 40 * DAY, NOW - 3 * DAY, NOW - DAY, NOW - HOUR, NOW, NOW + 20 * HOUR]
times = st.one_of(
    st.sampled_from(INSTANTS),
    st.builds(lambda base, d: base + d, st.sampled_from(INSTANTS), st.integers(-5 * DAY, DAY)),
    st.integers(0, NOW + 3 * DAY),  # 1970 to beyond the future tolerance
)


@st.composite
def timestamps(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 24)) == 0:
        return draw(
            st.sampled_from(
                [
                    "soon",
                    "",
                    "2026-02-30T10:00:00Z",
                    "2026-03-02T10:00:00",
                    "2026-03-02T10:00:00+05:60",
                    "2026-03-02T10:00:00+24:00",
                    "2026-03-09T23:59:60Z",
                    "2026-03-09T10:00:00.123456789012345Z",
                    "0001-01-01T00:00:00+01:00",
                    "0001-01-01T00:00:00-23:59",
                    "9999-12-31T23:59:59-23:59",
                    "9999-12-31T23:59:59Z",
                    "2026-03-09T10:00:00Z\n",
                    "\uff12\uff10\uff12\uff16-03-09T10:00:00Z",
                    12345,
                    None,
                    ["2026-03-09T10:00:00Z"],
                    Raw("1e400"),
                ]
            )
        )
    offset = draw(st.sampled_from([0, 0, 60, -300, 330, 23 * 60 + 59, -(23 * 60 + 59)]))
    digits = draw(st.sampled_from([0, 0, 3, 6, 9, 12]))
    return _rfc3339(
        draw(times), offset, digits, draw(st.sampled_from("Tt ")), draw(st.sampled_from("ZZz"))
    )


WIDE = "\x01" * 128  # the widest id: 128 characters JSON escapes to 6 bytes each
customers = st.sampled_from(
    ["cus-1", "cus-1", "cus-1", "cus-2", "cus-2", "cus-3", "Müller ü", WIDE, "  x  ", "c" * 128]
)
ids = st.one_of(
    st.sampled_from(["e1", "e2", "e3", "o1", "o2", WIDE]),
    st.text(min_size=1, max_size=12),
)
CODES_3 = [a + b + c for a in "ABQ" for b in "UXZ" for c in "DRY"]  # 27 currencies
currencies = st.sampled_from([*CODES_3, "EUR", "USD", "XXX"])
amounts = st.sampled_from(
    [
        0,
        59.9,
        1e-15,
        1234.5678901234567,
        1.2345678901234567e-15,
        9999999999999998.0,
        "59.90",
        "0",
        "9" * 16 + "." + "9" * 15,
        "0.000000000000001",
        "007.50",
    ]
)
bad_amounts = st.sampled_from(
    [
        -1,
        1e16,
        5e-16,
        -0.0,
        "-0",
        "+5",
        "1_000",
        " 5",
        "\u0665",
        "\uff15",
        "1e3",
        ".5",
        "5.",
        "9" * 17,
        "1." + "1" * 16,
        "9" * 40_000,
        Raw("1e400"),
        Raw("1" * 400),
        Raw("-0"),
        True,
        None,
        [],
        {"value": 5},
    ]
)
hostile = st.sampled_from(
    [
        None,
        True,
        0,
        -1,
        1.5,
        2**63,
        2**64 - 1,
        -(2**63) - 1,
        "",
        "   ",
        "x" * 129,
        "\ud800",
        [],
        {},
        ["x"],
        {"a": 1},
        Raw("123456789012345678901234567890"),
        Raw("NaN"),
    ]
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    schema = draw(st.sampled_from(["purchase/1", "purchase/1", "session/1", "consent/1"]))
    obj: dict[str, Any] = {
        "schema": schema,
        "event_id": draw(ids),
        "customer_id": draw(customers),
        "occurred_at": draw(timestamps()),
    }
    if schema == "purchase/1":
        obj["order_id"] = draw(ids)
        obj["amount"] = draw(amounts if draw(st.integers(0, 9)) else bad_amounts)
        obj["currency"] = draw(currencies)
    elif schema == "session/1":
        obj["session_id"] = draw(ids)
    else:
        obj["status"] = draw(st.sampled_from(["opted_out", "opted_in"]))
    if draw(st.booleans()):
        obj["channel"] = draw(st.sampled_from([None, "web", "w" * 256]))
    mutation = draw(st.integers(0, 11))
    if mutation == 0:
        del obj[draw(st.sampled_from(sorted(obj)))]
    elif mutation == 1:
        obj[draw(st.sampled_from(sorted(obj)))] = draw(hostile)
    elif mutation == 2:
        obj[draw(st.sampled_from(["extra", "nested", "schema_version"]))] = draw(hostile)
    return obj


class Blob(bytes):
    """Bytes that print as their name (the examples hypothesis reports stay short)."""

    name = ""

    def __repr__(self) -> str:
        return self.name


def blob(name: str, value: bytes) -> Blob:
    out = Blob(value)
    out.name = name
    return out


def short(raw: bytes) -> bytes:
    return blob(f"<{len(raw)} bytes>", raw) if len(raw) > 2000 else raw


OVERSIZED = blob(
    "OVERSIZED", orjson.dumps({"schema": "purchase/1", "pad": "x" * MAX_MESSAGE_BYTES})
)
HUGE = blob("HUGE", b'{"schema": "purchase/1", "pad": "' + b"\xc3\xbc" * 400_000 + b'"}')


@st.composite
def raw_inputs(draw: st.DrawFn) -> tuple[str, int, bytes | None]:
    """One message on an input topic: (topic, partition, value)."""
    partition = draw(st.integers(0, IN_PARTITIONS - 1))
    choice = draw(st.integers(0, 19))
    if choice < 15:
        obj = draw(events())
        schema = obj.get("schema")
        topic = TOPIC_OF.get(schema, INPUTS[0]) if isinstance(schema, str) else INPUTS[0]
        if draw(st.integers(0, 9)) == 0:
            topic = draw(st.sampled_from(INPUTS))
        return topic, partition, short(to_json(obj))
    topic = draw(st.sampled_from(INPUTS))
    if choice < 17:
        until = draw(st.one_of(timestamps(), st.just("9999-12-31T00:00:00Z")))
        obj = {"schema": "control/advance", "until": until}
        if draw(st.integers(0, 4)) == 0:
            obj = draw(st.sampled_from([{"schema": "control/advance"}, {"x": "control/advance"}]))
        return topic, partition, to_json(obj)
    value = draw(
        st.one_of(
            st.binary(max_size=48),
            st.sampled_from(
                [
                    None,
                    b"",
                    b"not json",
                    b"{",
                    b"[1, 2]",
                    b"null",
                    b'"control/advance"',
                    b"1e400",
                    b'{"schema": 5}',
                    b'{"schema": "refund/1"}',
                    b"\xff\xfe{}",
                    OVERSIZED,
                    HUGE,
                ]
            ),
        )
    )
    return topic, partition, value


# --- poison on the internal topic ------------------------------------------------------


def _wire(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["purchase", "session", "consent"]))
    wire: dict[str, Any] = {"k": kind, "e": "p-e", "c": draw(customers), "t": NOW - HOUR}
    if kind == "purchase":
        wire.update(o="p-o", a="5.00", cur="EUR")
    elif kind == "session":
        wire["s"] = "p-s"
    else:
        wire["st"] = "opted_out"
    return wire


# A field no error message may quote whole (the dead letter would outgrow the budget).
LONG = "\x01" * 300_000
# Values no ingest could have written, per wire field of an event.
NOT_WIRE: dict[str, list[Any]] = {
    "k": ["refund", "", None, 1, ["purchase"], LONG],
    "e": [None, "", 5, [], "x" * 129, LONG],
    "c": [None, "", "   ", 5, {}, "x" * 129],
    "t": [None, "soon", 1.5, True, 2**64 - 1, -(2**63), "123", Raw("1e300")],
    "o": [None, "", 7, "x" * 129],
    "a": [None, "-1", "9" * 40_000, "1e3", "\u0665", 5, "+5"],
    "cur": [None, "eur", "EURO", 978],
    "s": [None, "", 3],
    "st": [None, "maybe", True],
    "ch": [5, "x" * 257, []],
}


# An advance past the future tolerance: a dead letter in stream mode, ignored in wall mode.
FUTURE_ADV = "future_adv"
# Past the wall clock + the future tolerance however far the examples move the wall clock.
FAR_AHEAD = [to_micros(datetime(9999, 12, 31, tzinfo=UTC)), NOW + 10_000 * DAY]


@st.composite
def poison_items(draw: st.DrawFn) -> tuple[Any, str | None]:
    """One item the customers agent cannot use, with the dead letter it makes."""
    src = draw(st.sampled_from(SOURCES))
    choice = draw(st.integers(0, 11))
    if choice == 10:
        wire = _wire(draw) | {"t": draw(st.sampled_from(FAR_AHEAD))}
        return {"type": "ev", "src": src, "ev": wire}, CODE_FUTURE_TIMESTAMP
    if choice == 11:
        until = draw(st.sampled_from([*FAR_AHEAD, 2**62, 2**63 - 1]))
        return {"type": "adv", "src": src, "until": until}, FUTURE_ADV
    return draw(_unreadable(src, choice))


@st.composite
def _unreadable(draw: st.DrawFn, src: str, choice: int) -> tuple[Any, str | None]:
    item = draw(_unreadable_item(src, choice))
    return item, None if item == {"type": "bundle", "items": []} else CODE_INTERNAL


@st.composite
def _unreadable_item(draw: st.DrawFn, src: str, choice: int) -> Any:
    if choice == 0:
        return draw(st.sampled_from([None, 5, "ev", [], ["ev"]]))
    if choice == 1:
        return {"type": draw(st.sampled_from([None, "zzz", "bundle", 5, "EV", LONG]))}
    if choice == 2:
        return {"type": "ev", "src": src, "ev": draw(st.sampled_from([{}, [], None, "x", 5]))}
    if choice == 3:
        bad_src = draw(st.sampled_from([None, "nope:0", 5, ["x"], {}, LONG]))
        return {"type": "ev", "src": bad_src, "ev": _wire(draw)}
    if choice == 4:
        until = draw(st.sampled_from(["soon", 1.5, True, None, [], "2026-03-10T00:00:00Z", LONG]))
        return {"type": "adv", "src": src, "until": until}
    if choice == 5:
        return {
            "type": "adv",
            "src": draw(st.sampled_from([None, "nope:1", [], LONG])),
            "until": NOW,
        }
    if choice == 6:
        return {"type": "bundle", "items": []}  # nested: only the top level unpacks
    wire = _wire(draw)
    name = draw(st.sampled_from(sorted(k for k in NOT_WIRE if k in wire or k == "ch")))
    if draw(st.integers(0, 3)) == 0 and name in wire and name != "ch":
        del wire[name]
    else:
        wire[name] = draw(st.sampled_from(NOT_WIRE[name]))
    return {"type": "ev", "src": src, "ev": wire}


@st.composite
def poison(draw: st.DrawFn) -> tuple[int, bytes | None, Counter[str]]:
    """(internal partition, value, the dead letters it makes by code)."""
    partition = draw(st.integers(0, PARTITIONS - 1))
    choice = draw(st.integers(0, 5))
    if choice == 0:
        raw = draw(
            st.one_of(
                st.binary(max_size=32),
                st.sampled_from([None, b"", b"not json", b"[]", b"null", b'"bundle"', b"1e400"]),
            )
        )
        try:
            if isinstance(orjson.loads(raw or b""), dict):
                return partition, b"[]", Counter({CODE_INTERNAL: 1})
        except orjson.JSONDecodeError:
            pass
        return partition, raw, Counter({CODE_INTERNAL: 1})
    if choice == 1:
        bad = draw(st.sampled_from([None, "x", 5, {}, {"items": []}]))
        return partition, to_json({"type": "bundle", "items": bad}), Counter({CODE_INTERNAL: 1})
    if choice == 2:
        drawn = draw(st.lists(poison_items(), min_size=0, max_size=4))
        items = [item for item, _ in drawn]
        # Inside a bundle a nested (even empty) bundle is unreadable too.
        codes = Counter(code or CODE_INTERNAL for _, code in drawn)
        return partition, short(to_json({"type": "bundle", "items": items})), codes
    item, code = draw(poison_items())
    return partition, short(to_json(item)), Counter([code] if code else [])


# --- programs --------------------------------------------------------------------------


@st.composite
def programs(draw: st.DrawFn, with_poison: bool) -> list[tuple[str, Any]]:
    ops: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(1, 8))):
        op = draw(
            st.sampled_from(["in", "in", "in", "process", "advance", "wall", "tick", "poison"])
        )
        if op == "in":
            ops.append(("in", draw(st.lists(raw_inputs(), min_size=1, max_size=16))))
        elif op == "advance":
            ops.append(("advance", draw(times)))
        elif op == "process":
            ops.append(("process", draw(st.sampled_from([1, 2, 3, 500]))))
        elif op == "wall":
            ops.append(("wall", draw(st.integers(0, 2 * DAY))))
        elif op == "tick":
            ops.append(("tick", None))
        elif with_poison:
            ops.append(("poison", draw(st.lists(poison(), min_size=1, max_size=3))))
    return ops


def run(mode: str, core: CoreSettings, ops: list[tuple[str, Any]]) -> Pipeline:
    pipe = Pipeline(mode, core)
    for op, arg in ops:
        if op == "in":
            pipe.ingest_batch(arg)
        elif op == "process":
            pipe.process(arg)
        elif op == "wall":
            pipe.wall.now += arg
        elif op == "tick":
            pipe.tick()
        elif op == "advance":
            pipe.advance(arg)
        else:
            for partition, raw, n in arg:
                pipe.poison(partition, raw, n)
    pipe.drain()
    pipe.check()
    return pipe


def fuzz(mode: str, core: CoreSettings, ops: list[tuple[str, Any]]) -> None:
    pipe = run(mode, core, ops)
    # What the examples reached (shown by pytest --hypothesis-show-statistics).
    for code in sorted({d["error_code"] for d in pipe.dead}):
        event(f"dead letter {code}")
    for name, n in [
        ("decisions", sum(pipe.proc.decision_counts.values())),
        ("conversions", pipe.proc.counters["outcomes"]),
        ("duplicates", pipe.proc.counters["duplicates"]),
        ("late events", sum(pipe.proc.late.values())),
    ]:
        event(f"{name}: {'some' if n else 'none'}")


cores = st.sampled_from([SHORT, CoreSettings()])


@pytest.mark.parametrize("mode", ["stream", "wall"])
@FUZZ
@given(ops=programs(with_poison=False), core=cores)
def test_any_input_is_used_or_a_dead_letter(
    mode: str, ops: list[tuple[str, Any]], core: CoreSettings
) -> None:
    fuzz(mode, core, ops)


@FUZZ
@given(programs(with_poison=True), cores, st.sampled_from(["stream", "wall"]))
def test_poison_on_the_internal_topic_is_a_dead_letter_never_a_crash(
    ops: list[tuple[str, Any]], core: CoreSettings, mode: str
) -> None:
    fuzz(mode, core, ops)


# --- the harness itself sees what it claims to ---------------------------------------


def test_the_harness_counts_a_valid_order_a_duplicate_and_a_dead_letter() -> None:
    order = {
        "schema": "purchase/1",
        "event_id": "e1",
        "customer_id": "cus-1",
        "occurred_at": "2026-03-09T10:00:00Z",
        "order_id": "o1",
        "amount": "59.90",
        "currency": "EUR",
    }
    redelivered = {**order, "event_id": "e2"}
    batch = [(INPUTS[0], 0, to_json(o)) for o in (order, redelivered)]
    batch.append((INPUTS[0], 1, b"not json"))
    pipe = run("stream", SHORT, [("in", batch), ("process", 1)])
    assert (pipe.proc.counters["events"], pipe.proc.counters["duplicates"]) == (1, 1)
    assert [d["error_code"] for d in pipe.dead] == ["invalid_json"]
    state = CustomerState.from_dict(
        orjson.loads(pipe.stores[partition_of("cus-1")].data["c/cus-1"])
    )
    assert (state.orders, state.spend) == (1, {"EUR": "59.90"})
    # The short ladders fired on the way to the end of the clock.
    assert any(o for o in pipe.proc.decision_counts)
