"""The read-model contract: the writer's fields are the documented ones, and the
dirty set coalesces, forgets revoked partitions and bounds itself."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import schemas
from agents.contract import CUSTOMER_KEY_PREFIX
from agents.core.clock import ManualClock
from agents.core.engine import Engine
from agents.core.prediction import GammaGammaParams, NbdParams
from agents.core.rules import default_text, load_rules
from agents.core.rules.history import set_id
from agents.core.scores import scores, scores_of_stored
from agents.core.settings import RULE_SECOND_PURCHASE, CoreSettings, LadderSettings
from agents.core.state import CustomerState
from agents.core.timeutil import (
    MAX_DURATION,
    TIME_MAX,
    TIME_MIN,
    iso,
    parse_timestamp,
    to_micros,
)
from agents.wire import rules_message
from streams.bench import core as bench_core
from streams.config import Config
from streams.worker.readmodel import (
    FIELDS,
    STATE_FIELDS,
    ReadModelWriter,
    customer_key,
    hash_fields,
    row_fields,
)
from tests.unit.agents.factories import T0 as DAY0
from tests.unit.agents.factories import at, purchase
from tests.unit.agents.test_customer import DLQ, DictStore, advance_all, ev, processor, run

SCHEMA_DIR = Path(schemas.__file__).parent
SCHEMA = json.loads((SCHEMA_DIR / "readmodel.json").read_text())
DAY = 86_400_000_000
T0 = 1_772_000_000_000_000  # 2026-02-25


def state(cid: str = "c-1", **kw: Any) -> CustomerState:
    s = CustomerState(customer_id=cid, partition=0, version=3)
    s.orders, s.first_order_at, s.last_order_at, s.last_activity_at = 1, T0, T0, T0 + DAY
    s.stage = "new"
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_writer_fields_are_the_documented_ones() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert set(SCHEMA["required"]) == set(SCHEMA["properties"]) == set(FIELDS)
    assert set(STATE_FIELDS) == set(FIELDS) - {"updated_at"}
    doc = (SCHEMA_DIR / "readmodel.md").read_text()
    for name in FIELDS:
        assert f"| `{name}` |" in doc
    assert "customer:<customer_id>" in doc
    assert customer_key("retention:", "c-42") == "retention:customer:c-42"


@pytest.mark.parametrize(
    "s",
    [
        state(),
        state(orders=0, first_order_at=None, last_order_at=None, stage="prospect"),
        state(consent_status="opted_out"),
    ],
)
def test_hashes_validate_against_the_schema(s: CustomerState) -> None:
    fields = hash_fields(s, Engine(Config().core), now=T0 + 2 * DAY)
    Draft202012Validator(SCHEMA).validate(fields)
    pending = orjson.loads(fields["pending"])
    Draft202012Validator(SCHEMA["properties"]["pending"]["contentSchema"]).validate(pending)
    assert list(fields) == list(FIELDS)
    for example in SCHEMA["examples"]:
        Draft202012Validator(SCHEMA).validate(example)


def test_a_first_time_buyer_has_a_second_purchase_step_pending() -> None:
    fields = hash_fields(state(), Engine(Config().core), now=T0)
    pending = orjson.loads(fields["pending"])
    assert pending[0]["rule"] == "second_purchase" and pending[0]["step"] == 1
    assert pending[0]["due_at"] == "2026-03-04T06:13:20Z"  # first order + P7D
    assert fields["orders"] == "1" and fields["version"] == "3" and fields["opted_out"] == "0"
    opted = hash_fields(state(consent_status="opted_out"), Engine(Config().core), now=T0)
    assert opted["opted_out"] == "1"


def make_writer(max_dirty: int = 100) -> ReadModelWriter:
    def no_redis() -> Any:
        raise AssertionError("not used by these tests")

    return ReadModelWriter(
        connect=no_redis,
        prefix="t:",
        engine=Engine(Config().core),
        wall_clock=lambda: T0,
        owned=lambda: {0, 1},
        ready=lambda: True,
        scan=lambda p: iter(()),
        max_dirty=max_dirty,
    )


def test_repeated_updates_of_a_customer_coalesce() -> None:
    w = make_writer()
    for version in range(1, 4):
        w.mark(0, "c-1", orjson.dumps(state(version=version).to_dict()))
    w.mark(1, "c-2", b"{}")
    assert w.lag == 2
    assert orjson.loads(w.dirty["c-1"][1])["version"] == 3
    assert w.oldest_age >= 0


def test_revoked_partitions_are_dropped_and_resynced_if_they_come_back() -> None:
    w = make_writer()
    w._track_assignment()
    assert w.resync == {0, 1} and w.known == {0, 1}
    w.resync.clear()
    w.mark(0, "a", b"{}")
    w.mark(1, "b", b"{}")
    w.revoke([1])
    assert set(w.dirty) == {"a"} and w.known == {0}
    w._track_assignment()  # partition 1 is (still or again) owned: resync it
    assert w.resync == {1}


def test_an_overflowing_dirty_set_turns_into_a_resync() -> None:
    w = make_writer(max_dirty=5)
    w._track_assignment()
    w.resync.clear()
    for i in range(6):
        w.mark(i % 2, f"c{i}", b"{}")
    assert not w.dirty and w.resync == {0, 1}
    assert w.lag == 6  # counted until the resync has written them


def core_rows() -> list[bytes]:
    """Every customer row a small pure-core run writes, in order."""
    rows: list[bytes] = []
    sample = {"customers": 150, "days": 200, "seed": 7, "batch": 200, "partitions": 4}
    bench_core.run(argparse.Namespace(**sample), rows)
    return rows


def test_a_rows_hash_is_the_one_its_full_decode_gives() -> None:
    engine = Engine(Config().core)
    rows = core_rows()
    old = orjson.dumps({"customer_id": "c-old", "orders": 1, "recent_event_ids": ["e"]})
    assert len(rows) > 300
    pending: set[str] = set()
    for raw in [*rows, old, orjson.dumps(state(consent_status="opted_out").to_dict())]:
        full = hash_fields(CustomerState.from_dict(orjson.loads(raw)), engine, now=T0)
        assert row_fields(raw, engine, now=T0) == full
        pending.add(full["pending"])
    assert len(pending) > 50  # the rows cover many ladder positions


# --- the ends of the datetime range (docs/time.md "Time") -------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    t=st.integers(TIME_MIN, TIME_MAX),
    steps=st.lists(st.integers(1, MAX_DURATION), min_size=1, max_size=3, unique=True),
    lateness=st.integers(0, MAX_DURATION),
    mode=st.sampled_from(["stream", "wall"]),
    later=st.integers(0, 2 * MAX_DURATION),
)
def test_times_at_the_ends_of_the_datetime_range_never_raise(
    t: int, steps: list[int], lateness: int, mode: str, later: int
) -> None:
    """A customer whose orders sit anywhere in years 1..9999 (the earliest event
    time lowered to year 1, a wall clock at the end of 9999): due times past 9999
    (anchor + threshold), a stream clock before year 1 (newest - lateness), the
    decisions, nudges, outcomes and the read model's hash all come out readable."""
    core = CoreSettings(
        second_purchase=LadderSettings(RULE_SECOND_PURCHASE, tuple(sorted(steps))),
        stream_allowed_lateness=lateness,
    )
    proc = processor(mode=mode, core=core, wall=ManualClock(TIME_MAX), min_event_time=TIME_MIN)
    store = DictStore()
    second = min(t + later, TIME_MAX)
    messages = [
        ev(purchase("cus_edge", t, "ORD-1")),
        ev(purchase("cus_edge", second, "ORD-2")),
        *advance_all(min(t + later // 2, TIME_MAX)),
    ]
    outputs = run(proc, store, messages)
    assert [d for topic, _, d in outputs if topic == DLQ] == []
    texts = [
        d[k]
        for _, _, d in outputs
        for k in ("anchor_at", "due_at", "fired_at", "converted_at")
        if isinstance(d.get(k), str)
    ]
    state = store.state("cus_edge")
    fields = hash_fields(state, proc.engine, now=TIME_MAX)
    texts += [p["due_at"] for p in orjson.loads(fields["pending"])]
    texts += [fields["last_order_at"], fields["updated_at"]]
    for text in texts:
        assert TIME_MIN <= to_micros(parse_timestamp(text)) <= TIME_MAX
    assert row_fields(store.data[CUSTOMER_KEY_PREFIX + "cus_edge"], proc.engine, now=TIME_MAX) == (
        fields
    )


def test_a_rows_hash_is_judged_by_its_partitions_rules_versions() -> None:
    # docs/rules.md "Changing rules": once partition 0 switched to a version whose
    # second step is 12 days after the first order, the hash's pending says so.
    sooner = default_text().replace('["P7D", "P14D", "P30D"]', '["P5D", "P12D"]')
    proc, store = processor(), DictStore()
    run(proc, store, [ev(purchase("cus_a", DAY0, "ORD-1")), *advance_all(at(days=1))])
    version = set_id(load_rules(sooner))
    run(proc, store, [rules_message("retention.purchases:0", at(days=3), sooner, version)])
    run(proc, store, advance_all(at(days=6)))
    raw = store.data[CUSTOMER_KEY_PREFIX + "cus_a"]
    engines = {0: proc.runtimes[0].engine}
    fields = row_fields(raw, proc.engine, now=T0, engine_of=engines.__getitem__)
    full = hash_fields(CustomerState.from_dict(orjson.loads(raw)), engines[0], now=T0)
    assert fields == full
    pending = orjson.loads(fields["pending"])
    assert {"rule": "second_purchase", "step": 2, "due_at": iso(at(days=12))} in pending
    # The worker's own engine (the seed) would say day 14.
    seed = orjson.loads(row_fields(raw, proc.engine, now=T0)["pending"])
    assert {"rule": "second_purchase", "step": 2, "due_at": iso(at(days=14))} in seed


# --- scores (schemas/readmodel.md "Scores") ----------------------------------------------------


class _Model:
    version = "3f2a9c1b7d4e"
    time_unit = "week"
    kinds = {
        "mbgnbd": NbdParams("mbgnbd", r=0.5248, alpha=6.183, a=0.8914, b=1.614),
        "bgnbd": NbdParams("bgnbd", r=0.2426, alpha=4.414, a=0.7929, b=2.426),
    }
    gamma_gamma = {"EUR": GammaGammaParams(p=6.25, q=3.744, v=15.44)}


def _with_model(engine: Engine) -> Any:
    """The engine, its seed rules carrying a ``[model]``."""
    seed = SimpleNamespace(applied_at=None, rules=SimpleNamespace(model=_Model()))
    return SimpleNamespace(
        history=SimpleNamespace(versions=[seed]),
        pending=engine.pending,
        in_holdout=engine.in_holdout,
    )


def test_the_hash_keeps_score_inputs_a_reader_scores_at_its_own_instant() -> None:
    proc, store = processor(), DictStore()
    orders = [
        ev(purchase("cus_a", DAY0, "ORD-1")),
        ev(purchase("cus_a", at(hours=3), "ORD-2")),  # the same day: one order day
        ev(purchase("cus_a", at(days=20), "ORD-3")),
    ]
    run(proc, store, [*orders, *advance_all(at(days=30))])
    raw = store.data[CUSTOMER_KEY_PREFIX + "cus_a"]
    engine = _with_model(proc.engine)
    fields = row_fields(raw, engine, now=T0)
    full = CustomerState.from_dict(orjson.loads(raw))
    assert fields == hash_fields(full, engine, now=T0)
    Draft202012Validator(SCHEMA).validate(fields)
    stored = orjson.loads(fields["score_inputs"])
    Draft202012Validator(SCHEMA["properties"]["score_inputs"]["contentSchema"]).validate(stored)
    assert stored["x"] == 1 and stored["model_version"] == "3f2a9c1b7d4e"
    assert stored["spend"] == {"EUR": [full.spend["EUR"], 3]}
    # What a reader computes at any instant is what the lookup shows at that instant.
    for as_of in (at(days=30), at(days=400)):
        assert scores_of_stored(stored, as_of) == scores(full, _Model(), as_of)
    late = scores_of_stored(stored, at(days=400))
    assert late is not None and late["p_alive"] < scores_of_stored(stored, at(days=30))["p_alive"]  # type: ignore[index]
    # Without a model, or without an order: empty.
    assert row_fields(raw, proc.engine, now=T0)["score_inputs"] == ""
    nobody = orjson.dumps(state(orders=0, first_order_at=None, last_order_at=None).to_dict())
    assert row_fields(nobody, engine, now=T0)["score_inputs"] == ""
