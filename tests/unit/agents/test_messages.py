"""The output records of a firing with a send window (docs/send-windows.md
"Outputs"): the decision and the nudge carry ``send_at``, ``send_zone`` and
``send_local``, the outcome ``send_at``; a firing without a window gives today's
records byte for byte.  Checked against the JSON Schemas with format checks, as a
consumer's validator reads them (tests/fixtures/contracts.py)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from agents.core.emissions import Conversion, Firing
from agents.core.guardrails import (
    OUTCOME_CANCELLED,
    OUTCOME_DELIVERED,
    OUTCOME_MIN_GAP,
    OUTCOME_OUTSIDE_WINDOW,
)
from agents.core.settings import DAY, HOUR
from agents.core.timeutil import to_micros
from agents.messages import decision_record, local_iso, outcome_record
from tests.fixtures.contracts import errors

ANCHOR = to_micros(datetime(2026, 3, 21, 22, 30, tzinfo=UTC))
# Due on Sunday 2026-03-28 22:30 UTC = 23:30 in Berlin; the window opens at 09:00 the
# next morning, after the clocks went forward: 07:00 UTC.
DUE = ANCHOR + 7 * DAY
OPENING = to_micros(datetime(2026, 3, 29, 7, 0, tzinfo=UTC))
CONTEXT: dict[str, Any] = {
    "order_count": 1,
    "spend": {"EUR": "59.90"},
    "first_purchase_at": "2026-03-21T22:30:00Z",
    "last_purchase_at": "2026-03-21T22:30:00Z",
    "last_activity_at": "2026-03-21T22:30:00Z",
    "lifecycle_stage": "new",
}
PLAIN = Firing(
    customer_id="cus_000481",
    rule="second_purchase",
    rule_index=0,
    step=1,
    threshold=7 * DAY,
    anchor_at=ANCHOR,
    due_at=DUE,
    backfill=False,
    context=CONTEXT,
    rule_version="0123456789ab",
)
FIRED_AT = OPENING + 1_500_000


def records(f: Firing, outcome: str = OUTCOME_DELIVERED) -> tuple[dict[str, Any], dict[str, Any]]:
    """The decision and the nudge of ``f`` as JSON on the topics."""
    d = decision_record(f, fired_at=FIRED_AT, clock="stream", outcome=outcome, holdout=False)
    return orjson.loads(orjson.dumps(d.to_dict())), orjson.loads(orjson.dumps(d.nudge_dict()))


def test_a_firing_without_a_window_gives_todays_bytes() -> None:
    d = decision_record(
        PLAIN, fired_at=FIRED_AT, clock="stream", outcome="delivered", holdout=False
    )
    assert orjson.dumps(d.to_dict()) == (
        b'{"schema":"decision/1","trigger_id":"'
        + PLAIN.trigger_id.encode()
        + b'","customer_id":"cus_000481","rule":"second_purchase","step":1,'
        b'"threshold":{"iso":"P7D","seconds":604800},"anchor_at":"2026-03-21T22:30:00Z",'
        b'"due_at":"2026-03-28T22:30:00Z","fired_at":"2026-03-29T07:00:01.500000Z",'
        b'"holdout":false,"reason":"second_purchase step 1: 7 days after 2026-03-21",'
        b'"context":' + orjson.dumps(CONTEXT) + b',"delivered":true,"outcome":"delivered",'
        b'"clock":"stream","rule_version":"0123456789ab"}'
    )
    assert not {"send_at", "send_zone", "send_local"} & set(d.nudge_dict())


def test_a_deferred_delivered_firing_shows_its_send_time_in_utc_and_local() -> None:
    decision, nudge = records(dataclasses.replace(PLAIN, send_at=OPENING, zone="Europe/Berlin"))
    for record in (decision, nudge):
        assert record["due_at"] == "2026-03-28T22:30:00Z"  # the threshold time, unchanged
        assert record["send_at"] == "2026-03-29T07:00:00Z"
        assert record["send_zone"] == "Europe/Berlin"
        assert record["send_local"] == "2026-03-29T09:00:00+02:00"  # summer time since 02:00
    assert errors("decision", decision) == []
    assert errors("nudge", nudge) == []


def test_a_firing_inside_its_window_is_sent_at_its_due_time() -> None:
    decision, nudge = records(dataclasses.replace(PLAIN, send_at=DUE, zone="America/New_York"))
    assert decision["send_at"] == decision["due_at"] == nudge["send_at"]
    assert decision["send_local"] == "2026-03-28T18:30:00-04:00"
    assert errors("decision", decision) == errors("nudge", nudge) == []


def test_a_dropped_firing_names_its_zone_and_no_send_time() -> None:
    dropped = dataclasses.replace(
        PLAIN, outcome=OUTCOME_OUTSIDE_WINDOW, send_at=None, zone="Asia/Kathmandu"
    )
    decision, _ = records(dropped, OUTCOME_OUTSIDE_WINDOW)
    assert decision["outcome"] == "outside_window" and decision["delivered"] is False
    assert (decision["send_at"], decision["send_zone"], decision["send_local"]) == (
        None,
        "Asia/Kathmandu",
        None,
    )
    assert errors("decision", decision) == []
    # A drop has no send time, and a consumer's validator says so.
    assert errors("decision", decision | {"send_at": "2026-03-29T07:00:00Z"})
    assert errors("decision", {k: v for k, v in decision.items() if k != "send_zone"})


@pytest.mark.parametrize("outcome", [OUTCOME_CANCELLED, OUTCOME_MIN_GAP])
def test_a_deferred_firing_judged_at_its_send_time_keeps_it(outcome: str) -> None:
    f = dataclasses.replace(PLAIN, outcome=outcome, send_at=OPENING, zone="Europe/Berlin")
    decision, _ = records(f, outcome)
    assert (decision["outcome"], decision["send_at"]) == (outcome, "2026-03-29T07:00:00Z")
    assert errors("decision", decision) == []
    # Three fields or none: a send time without its zone is refused.
    assert errors("decision", {k: v for k, v in decision.items() if k != "send_zone"})


def test_a_cancellation_without_a_window_is_refused() -> None:
    decision, _ = records(PLAIN, OUTCOME_CANCELLED)
    assert errors("decision", decision)


def test_an_outcome_counts_from_its_send_time_and_says_so() -> None:
    sent = Conversion(
        customer_id="cus_000481",
        rule="second_purchase",
        step=1,
        anchor_at=ANCHOR,
        due_at=DUE,
        group="delivered",
        converted_at=OPENING + 30 * HOUR,
        order_id="ORD-7781",
        send_at=OPENING,
    )
    record = outcome_record(sent, attribution_window=5 * DAY).to_dict()
    assert record["send_at"] == "2026-03-29T07:00:00Z"
    assert errors("outcome", orjson.loads(orjson.dumps(record))) == []
    plain = outcome_record(dataclasses.replace(sent, send_at=None), attribution_window=5 * DAY)
    assert "send_at" not in plain.to_dict()


@pytest.mark.parametrize(
    ("utc", "zone", "local"),
    [
        # Both DST directions in Berlin and New York.
        (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), "Europe/Berlin", "2026-03-29T01:59:00+01:00"),
        (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), "Europe/Berlin", "2026-03-29T03:00:00+02:00"),
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "Europe/Berlin", "2026-10-25T02:30:00+02:00"),
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "Europe/Berlin", "2026-10-25T02:30:00+01:00"),
        (datetime(2026, 3, 8, 7, 0, tzinfo=UTC), "America/New_York", "2026-03-08T03:00:00-04:00"),
        (datetime(2026, 11, 1, 6, 0, tzinfo=UTC), "America/New_York", "2026-11-01T01:00:00-05:00"),
        # A 30-minute shift and a 45-minute offset.
        (
            datetime(2026, 4, 4, 15, 0, tzinfo=UTC),
            "Australia/Lord_Howe",
            "2026-04-05T01:30:00+10:30",
        ),
        (datetime(2026, 4, 4, 15, 0, tzinfo=UTC), "Asia/Kathmandu", "2026-04-04T20:45:00+05:45"),
        # Samoa skipped 2011-12-30.
        (datetime(2011, 12, 30, 10, 0, tzinfo=UTC), "Pacific/Apia", "2011-12-31T00:00:00+14:00"),
        # A local mean time is cut to the minute (RFC 3339 offsets have no seconds).
        (datetime(1880, 1, 1, tzinfo=UTC), "America/New_York", "1879-12-31T19:04:00-04:56"),
        # Seconds precision.
        (datetime(2026, 3, 29, 7, 0, 5, 250, tzinfo=UTC), "UTC", "2026-03-29T07:00:05+00:00"),
    ],
)
def test_the_local_send_time_at_each_edge(utc: datetime, zone: str, local: str) -> None:
    assert local_iso(to_micros(utc), zone) == local
