"""Rules changes in the customer-partition processor (docs/rules.md "Changing rules"):
markers adopted once per partition, persisted in the table, applied late at the
partition's clock + 1 µs, and the due index rebuilt so every customer switches on time."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from agents.contract import rules_key, rules_text_key
from agents.core.clock import ManualClock
from agents.core.rules import default_text, load_rules
from agents.core.rules.history import MAX_KEPT_VERSIONS, Version, set_id
from agents.core.timeutil import iso
from agents.customer import CustomerProcessor
from agents.wire import rules_message
from tests.unit.agents.factories import T0, at, processors, purchase
from tests.unit.agents.test_customer import (
    DECISIONS,
    DLQ,
    FIRED_AT,
    SOURCES,
    DictStore,
    advance_all,
    ev,
    processor,
    run,
)

SEED = default_text()
# second_purchase sooner: 5 days after the first order instead of 7.
SOONER = SEED.replace('steps = ["P7D", "P14D", "P30D"]', 'steps = ["P5D", "P14D", "P30D"]')
SOONER_ID = set_id(load_rules(SOONER))


def marker(
    text: str, effective_at: int, src: str = SOURCES[0], version: str | None = None
) -> bytes:
    return rules_message(src, effective_at, text, version or set_id(load_rules(text)))


def fired(outputs: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, int, str, str]]:
    return [
        (d["rule"], d["step"], d["due_at"], d["outcome"]) for t, _, d in outputs if t == DECISIONS
    ]


def history_of(proc: CustomerProcessor, partition: int = 0) -> list[tuple[str, Any, Any]]:
    return [
        (v.id, v.effective_at, v.applied_at)
        for v in proc.runtimes[partition].engine.history.versions
    ]


def _iso(t: int) -> str:
    return iso(t)


def test_a_change_switches_the_partition_and_a_step_due_sooner_fires_at_its_new_time() -> None:
    proc, store = processor(), DictStore()
    run(proc, store, [ev(purchase("cus_a", T0, "ORD-1")), *advance_all(at(days=1))])
    # The customer waits for day 7 under the seed; the change at day 3 moves step 1 to day 5.
    run(proc, store, [marker(SOONER, at(days=3))])
    out = run(proc, store, advance_all(at(days=6)))
    assert fired(out) == [("second_purchase", 1, _iso(at(days=5)), "delivered")]
    assert out[0][2]["rule_version"] == load_rules(SOONER).rule("second_purchase").version  # type: ignore[union-attr]
    assert history_of(proc)[1:] == [(SOONER_ID, at(days=3), at(days=3))]
    assert proc.rules_late == 0


def test_the_same_marker_from_every_input_partition_is_adopted_once() -> None:
    proc, store = processor(), DictStore()
    run(proc, store, [ev(purchase("cus_a", T0, "ORD-1")), *advance_all(at(days=1))])
    out = run(proc, store, [marker(SOONER, at(days=3), src) for src in SOURCES])
    assert out == []
    assert history_of(proc) == [
        (set_id(load_rules(SEED)), None, None),
        (SOONER_ID, at(days=3), at(days=3)),
    ]
    assert orjson.loads(store.data[rules_key(0)]) == [
        {"id": SOONER_ID, "effective_at": at(days=3), "applied_at": at(days=3)}
    ]


def test_a_restarted_worker_rebuilds_the_same_history_from_the_table() -> None:
    proc, store = processor(), DictStore()
    run(proc, store, [ev(purchase("cus_a", T0, "ORD-1")), *advance_all(at(days=1))])
    run(proc, store, [marker(SOONER, at(days=3))])
    before = proc.runtimes[0].engine.history
    # kill -9: a new process over the same table (and no rules topic versions).
    again = processor()
    out = run(again, store, advance_all(at(days=6)))
    assert again.runtimes[0].engine.history == before
    assert fired(out) == [("second_purchase", 1, _iso(at(days=5)), "delivered")]


def test_a_late_version_applies_at_the_clock_plus_one_and_is_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    proc, store = processor(), DictStore()
    run(proc, store, [ev(purchase("cus_a", T0, "ORD-1")), *advance_all(at(days=4))])
    with caplog.at_level(logging.WARNING, logger="agents.customer"):
        out = run(proc, store, [marker(SOONER, at(days=3))])
    assert out == []
    assert history_of(proc)[1:] == [(SOONER_ID, at(days=3), at(days=4) + 1)]
    assert proc.rules_late == 1
    (line,) = [r.getMessage() for r in caplog.records]
    assert "partition 0" in line and SOONER_ID in line
    assert _iso(at(days=3)) in line and _iso(at(days=4) + 1) in line
    # From the applied time on, the new steps: day 5 is still ahead, so it fires then.
    out = run(proc, store, advance_all(at(days=6)))
    assert fired(out) == [("second_purchase", 1, _iso(at(days=5)), "delivered")]
    # A restart keeps the late applied time: it is what the partition switched at.
    again = processor()
    run(again, store, advance_all(at(days=6)))
    assert history_of(again)[1:] == [(SOONER_ID, at(days=3), at(days=4) + 1)]
    assert again.rules_late == 0


def test_a_late_version_supersedes_the_steps_its_switch_finds_past() -> None:
    proc, store = processor(), DictStore()
    run(proc, store, [ev(purchase("cus_a", T0, "ORD-1")), *advance_all(at(days=6))])
    run(proc, store, [marker(SOONER, at(days=3))])  # step 1 at day 5 is already past
    out = run(proc, store, advance_all(at(days=6, hours=1)))
    assert fired(out) == [("second_purchase", 1, _iso(at(days=5)), "superseded")]


def test_wall_mode_takes_the_wall_clock_as_the_partition_clock() -> None:
    wall = ManualClock(at(days=1))
    proc, store = processor(mode="wall", wall=wall), DictStore()
    run(proc, store, [ev(purchase("cus_a", T0, "ORD-1"))])
    run(proc, store, [marker(SOONER, at(days=2))])
    assert history_of(proc)[1:] == [(SOONER_ID, at(days=2), at(days=2))]
    wall.now = at(days=3)
    later = SOONER.replace('["P5D", "P14D"', '["P5D", "P13D"')
    run(proc, store, [marker(later, at(days=2, hours=12))])
    assert history_of(proc)[2:] == [
        (set_id(load_rules(later)), at(days=2, hours=12), at(days=3) + 1)
    ]
    assert proc.rules_late == 1


def test_a_late_version_that_would_switch_before_a_scheduled_one_is_refused() -> None:
    proc, store = processor(mode="wall", wall=ManualClock(at(days=1))), DictStore()
    run(proc, store, [marker(SOONER, at(days=5))])
    out = run(
        proc,
        store,
        [marker(SEED.replace('["P7D", "P14D"', '["P7D", "P13D"'), at(days=0, hours=12))],
    )
    (letter,) = [d for t, _, d in out if t == DLQ]
    assert (
        letter["error_code"] == "invalid_rules"
        and f"not after version {SOONER_ID}" in letter["error"]
    )
    assert history_of(proc)[1:] == [(SOONER_ID, at(days=5), at(days=5))]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (SEED.replace('lapsed_after = "P60D"', 'lapsed_after = "P90D"'), "lifecycle cannot change"),
        (
            SEED.replace('attribution_window = "P5D"', 'attribution_window = "P7D"'),
            "attribution_window",
        ),
    ],
)
def test_an_incompatible_change_is_one_invalid_rules_dead_letter_per_partition(
    text: str, why: str
) -> None:
    proc, store = processor(), DictStore()
    out = run(proc, store, [marker(text, at(days=3), src) for src in SOURCES])
    letters = [d for t, _, d in out if t == DLQ]
    assert [d["error_code"] for d in letters] == ["invalid_rules"]
    assert why in letters[0]["error"]
    assert len(history_of(proc)) == 1


def test_a_marker_whose_version_is_not_its_text_is_a_dead_letter() -> None:
    proc, store = processor(), DictStore()
    out = run(proc, store, [marker(SOONER, at(days=3), version="0123456789ab")])
    assert [d["error_code"] for t, _, d in out if t == DLQ] == ["invalid_rules"]


def test_versions_read_from_the_rules_topic_are_adopted_when_the_partition_starts() -> None:
    published = Version(SOONER_ID, load_rules(SOONER), SOONER, at(days=3), at(days=3))
    wall = ManualClock(FIRED_AT)
    proc = processors(wall, sources=SOURCES, min_event_time=0, versions=[published]).customer
    store = DictStore()
    run(proc, store, [ev(purchase("cus_a", T0, "ORD-1"))])
    out = run(proc, store, advance_all(at(days=6)))
    assert fired(out) == [("second_purchase", 1, _iso(at(days=5)), "delivered")]
    assert orjson.loads(store.data[rules_key(0)])[0]["id"] == SOONER_ID
    # Its marker, arriving later, is the same version: nothing more.
    assert run(proc, store, [marker(SOONER, at(days=3))]) == []
    assert len(history_of(proc)) == 2


def test_a_partition_keeps_at_most_max_kept_versions_and_a_restart_keeps_the_same() -> None:
    proc, store = processor(), DictStore()
    texts = [SEED.replace('"P30D"]', f'"P{30 + i}D"]', 1) for i in range(1, MAX_KEPT_VERSIONS + 2)]
    run(proc, store, [marker(t, at(days=i + 1)) for i, t in enumerate(texts)])
    kept = history_of(proc)
    assert len(kept) == MAX_KEPT_VERSIONS and kept[-1][0] == set_id(load_rules(texts[-1]))
    again = processor()
    run(again, store, advance_all(at(days=1)))
    assert history_of(again) == kept


def test_a_version_whose_text_row_is_lost_is_skipped_with_an_error_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    proc, store = processor(), DictStore()
    run(proc, store, [marker(SOONER, at(days=3))])
    del store.data[rules_text_key(0, SOONER_ID)]
    again = processor()
    with caplog.at_level(logging.ERROR, logger="agents.partition"):
        run(again, store, advance_all(at(days=1)))
    assert len(history_of(again)) == 1
    assert SOONER_ID in caplog.records[0].getMessage()
