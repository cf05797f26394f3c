"""What the customer agent sends and counts for firings with a send window
(docs/send-windows.md "Outputs"): the nudge and the decision carry the send time, the
dashboard's counters see deferrals and local send hours.  The engine's deferral is
not needed here: the firings are built as it emits them."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from agents.core.clock import ManualClock
from agents.core.emissions import Firing
from agents.core.guardrails import OUTCOME_CANCELLED, OUTCOME_OUTSIDE_WINDOW
from agents.core.settings import HOUR
from agents.customer import CustomerProcessor, Result
from tests.unit.agents.factories import T0, processors
from tests.unit.agents.test_messages import OPENING, PLAIN


def emit(*firings: Firing) -> tuple[CustomerProcessor, dict[str, list[dict[str, Any]]]]:
    """The processor after sending ``firings``, and what it sent, by topic."""
    proc = processors(ManualClock(T0)).customer
    result = Result()
    proc._emit(list(firings), result)
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for out in result.outputs:
        by_topic.setdefault(out.topic, []).append(orjson.loads(out.value))
    return proc, by_topic


def test_deferred_and_inside_firings_are_counted_by_rule_and_local_hour() -> None:
    deferred = dataclasses.replace(PLAIN, send_at=OPENING, zone="Europe/Berlin")
    inside = dataclasses.replace(
        PLAIN,
        rule="inactivity",
        due_at=OPENING + 5 * HOUR,
        send_at=OPENING + 5 * HOUR,
        zone="America/New_York",
    )
    dropped = dataclasses.replace(
        PLAIN, rule="overdue", outcome=OUTCOME_OUTSIDE_WINDOW, zone="Asia/Kathmandu"
    )
    cancelled = dataclasses.replace(
        PLAIN, step=2, outcome=OUTCOME_CANCELLED, send_at=OPENING, zone="Europe/Berlin"
    )
    proc, out = emit(deferred, inside, dropped, cancelled)
    # Two waited for their window (the delivered and the cancelled one); the
    # delivered ones are counted by the hour their customer saw.
    assert proc.deferred_counts == {"second_purchase": 2}
    assert proc.send_hours == {("second_purchase", 9): 1, ("inactivity", 8): 1}
    nudges = out["retention.nudges"]
    assert [(n["rule"], n["send_local"]) for n in nudges] == [
        ("second_purchase", "2026-03-29T09:00:00+02:00"),
        ("inactivity", "2026-03-29T08:00:00-04:00"),
    ]
    decisions = {d["rule"] + str(d["step"]): d for d in out["retention.decisions"]}
    assert decisions["overdue1"]["send_at"] is None
    assert decisions["second_purchase2"]["outcome"] == "cancelled"


def test_firings_without_a_window_count_nothing() -> None:
    proc, out = emit(PLAIN)
    assert not proc.deferred_counts and not proc.send_hours
    assert "send_at" not in out["retention.nudges"][0]
