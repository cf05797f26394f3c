"""The ingest step: raw bytes from producers -> customer topic, control, or dead letter."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from agents.core.clock import ManualClock
from agents.core.rules import default_text, load_rules
from agents.core.rules.history import set_id
from agents.core.timeutil import to_micros
from agents.ingest import MAX_ORIGINAL_BYTES, IngestProcessor
from schemas.records import Event
from tests.unit.agents.factories import PURCHASE_WIRE, processors

NOW = to_micros(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
CUSTOMER_TOPIC, DLQ = "retention.customer-events", "retention.dlq"
PURCHASES = "retention.purchases"

PURCHASE = PURCHASE_WIRE


def handler(partitions: int = 4) -> IngestProcessor:
    return processors(ManualClock(NOW), partitions=partitions).ingest


def dead_letter(h: IngestProcessor, raw: bytes | None, offset: int = 1041) -> dict[str, Any]:
    outputs, controls = h.handle(raw, PURCHASES, 3, offset)
    assert controls == []
    assert [(o.topic, o.key) for o in outputs] == [(DLQ, f"{PURCHASES}:3:{offset}")]
    record: dict[str, Any] = orjson.loads(outputs[0].value)
    return record


def test_a_valid_event_goes_to_the_customer_topic_keyed_by_customer() -> None:
    h = handler()
    outputs, controls = h.handle(orjson.dumps(PURCHASE), PURCHASES, 3, 1041)
    assert controls == []
    assert [(o.topic, o.key) for o in outputs] == [(CUSTOMER_TOPIC, "cus_000481")]
    message = orjson.loads(outputs[0].value)
    assert message["type"] == "ev"
    assert message["src"] == "retention.purchases:3"
    event = Event.from_wire(message["ev"])
    assert event.customer_id == "cus_000481"
    assert event.order_id == "ORD-2026-000913"
    assert event.occurred_at == to_micros(datetime(2026, 3, 2, 8, 15, tzinfo=UTC))
    assert h.accepted == 1
    assert not h.dead_letters


def test_lenient_timestamps_are_accepted_counted_and_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A space for 'T' and a ':60' second are not RFC 3339 date-time to a schema
    # validator; they still count today, but the producer is told (README "Inputs").
    h = handler()
    forms = [
        "2026-03-02 08:15:00Z",
        "2026-03-02 08:15:01Z",
        "2016-12-31T23:59:60Z",
        "2026-03-02T08:15:02Z",
    ]
    with caplog.at_level("WARNING", logger="agents.ingest"):
        for offset, occurred_at in enumerate(forms):
            raw = orjson.dumps({**PURCHASE, "occurred_at": occurred_at, "event_id": f"e{offset}"})
            outputs, _ = h.handle(raw, PURCHASES, 3, offset)
            assert [o.topic for o in outputs] == [CUSTOMER_TOPIC]
    assert h.accepted == 4 and not h.dead_letters
    assert h.lenient_timestamps == {"space_separator": 2, "leap_second": 1}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1  # the 1st, then the 10th, 100th...: no flood
    assert "retention.purchases:3:0" in warnings[0] and "invalid_timestamp" in warnings[0]
    # A lenient time in a message refused for another reason is a dead letter, not counted.
    dead_letter(h, orjson.dumps({**PURCHASE, "occurred_at": forms[0], "currency": "eur"}))
    assert h.lenient_timestamps.total() == 3


def test_an_invalid_event_becomes_a_dead_letter_with_its_source_and_bytes() -> None:
    raw = orjson.dumps({**PURCHASE, "occurred_at": "2026-03-02T10:15:00"})
    record = dead_letter(handler(), raw)
    assert record["schema"] == "dead_letter/1"
    assert record["error_code"] == "naive_timestamp"
    assert "no UTC offset" in record["error"]
    assert record["source"] == {"topic": PURCHASES, "partition": 3, "offset": 1041}
    assert base64.b64decode(record["original_base64"]) == raw
    assert record["original_size"] == len(raw)
    assert record["original_truncated"] is False
    assert record["original_sha256"] == hashlib.sha256(raw).hexdigest()
    assert record["original_text"] == raw.decode()
    assert record["received_at"] == "2026-03-10T12:00:00Z"


def test_bytes_that_are_not_utf8_round_trip_through_base64() -> None:
    raw = b'{"schema": "session/1", "customer_id": "M\xfcller"}'
    record = dead_letter(handler(), raw)
    assert record["error_code"] == "invalid_json"
    assert record["original_text"] is None
    assert base64.b64decode(record["original_base64"]) == raw


def test_a_tombstone_is_a_dead_letter_not_a_crash() -> None:
    record = dead_letter(handler(), None)
    assert record["error_code"] == "invalid_json"
    assert "tombstone" in record["error"]
    assert (record["original_base64"], record["original_size"]) == ("", 0)


def test_an_undecodable_batch_is_one_dead_letter_with_its_offsets_and_bytes() -> None:
    h = handler()
    batch = b"\x00\x00\x00\x00\x00\x00\x00\x03" + bytes(range(256)) * 4
    (out,) = h.undecodable_batch(batch, PURCHASES, 3, 3, 6, "UnsupportedCodecError: snappy")
    assert (out.topic, out.key) == (DLQ, f"{PURCHASES}:3:3-6")
    record = orjson.loads(out.value)
    assert record["error_code"] == "undecodable_batch"
    assert record["source"] == {"topic": PURCHASES, "partition": 3, "offset": 3}
    assert "offsets 3-6 (4 offsets)" in record["error"] and "snappy" in record["error"]
    assert base64.b64decode(record["original_base64"]) == batch
    assert record["original_sha256"] == hashlib.sha256(batch).hexdigest()
    assert h.dead_letters == {"undecodable_batch": 1}


def test_an_oversized_message_keeps_its_head_length_and_hash() -> None:
    raw = b'{"schema": "purchase/1", "channel": "' + b"x" * (600 * 1024) + b'"}'
    record = dead_letter(handler(), raw)
    assert record["error_code"] == "too_large"
    assert record["original_size"] == len(raw)
    assert record["original_truncated"] is True
    assert base64.b64decode(record["original_base64"]) == raw[:MAX_ORIGINAL_BYTES]
    assert record["original_sha256"] == hashlib.sha256(raw).hexdigest()
    assert len(record["original_text"]) == 512


def test_dead_letters_are_counted_per_code() -> None:
    h = handler()
    for raw in [
        b"not json",
        b"[1, 2]",
        orjson.dumps({**PURCHASE, "schema": "refund/1"}),
        orjson.dumps({**PURCHASE, "currency": "euro"}),
        orjson.dumps({**PURCHASE, "amount": "-1"}),
        orjson.dumps(PURCHASE),
    ]:
        h.handle(raw, PURCHASES, 0, 7)
    assert h.dead_letters == {
        "invalid_json": 1,
        "not_an_object": 1,
        "unknown_schema": 1,
        "invalid_field": 2,
    }
    assert h.accepted == 1
    other = handler()
    other.handle(b"not json either", PURCHASES, 1, 8)
    assert h.dead_letters + other.dead_letters == {
        "invalid_json": 2,
        "not_an_object": 1,
        "unknown_schema": 1,
        "invalid_field": 2,
    }


def test_an_advance_record_becomes_one_control_message_per_customer_partition() -> None:
    h = handler(partitions=4)
    raw = orjson.dumps({"schema": "control/advance", "until": "2026-03-11T00:00:00+02:00"})
    outputs, controls = h.handle(raw, "retention.sessions", 2, 99)
    assert outputs == []
    assert [p for p, _ in controls] == [0, 1, 2, 3]
    until = to_micros(datetime(2026, 3, 10, 22, 0, tzinfo=UTC))
    for _, payload in controls:
        assert orjson.loads(payload) == {
            "type": "adv",
            "src": "retention.sessions:2",
            "until": until,
        }
    assert h.markers == 1
    assert not h.dead_letters


@pytest.mark.parametrize(
    ("record", "code"),
    [
        ({"schema": "control/advance", "until": "next week"}, "invalid_timestamp"),
        ({"schema": "control/advance", "until": "2026-04-01T00:00:00"}, "invalid_timestamp"),
        ({"schema": "control/advance"}, "invalid_timestamp"),
        # Bounded like an event time: no "fire every ladder at once" far in the future.
        ({"schema": "control/advance", "until": "9999-12-31T00:00:00Z"}, "future_timestamp"),
        ({"schema": "control/advance", "until": "2026-04-01T00:00:00+02:00"}, "future_timestamp"),
        # ... and before the earliest accepted event time (docs/time.md "Time").
        ({"schema": "control/advance", "until": "0001-01-01T00:00:00Z"}, "early_timestamp"),
        ({"schema": "control/advance", "until": "1969-12-31T23:59:59Z"}, "early_timestamp"),
    ],
)
def test_a_malformed_advance_record_is_a_dead_letter(record: dict[str, Any], code: str) -> None:
    h = handler()
    letter = dead_letter(h, orjson.dumps(record))
    assert letter["error_code"] == code
    assert letter["error"].startswith("control/advance: ")
    assert h.markers == 0
    assert h.dead_letters == {code: 1}


def test_control_looking_text_inside_another_schema_is_not_a_control() -> None:
    raw = orjson.dumps({"schema": "refund/1", "note": "control/advance"})
    letter = dead_letter(handler(), raw)
    assert letter["error_code"] == "unknown_schema"


@pytest.mark.parametrize(
    ("occurred_at", "code"),
    [
        # Before 0001-01-01T00:00:00Z: earlier than any accepted event time.
        ("0001-01-01T00:00:00+01:00", "early_timestamp"),
        # After 9999-12-31T23:59:59.999999Z: later than any.
        ("9999-12-31T23:59:59-01:00", "future_timestamp"),
    ],
)
def test_an_out_of_range_timestamp_is_a_dead_letter_saying_which_side(
    occurred_at: str, code: str
) -> None:
    raw = orjson.dumps({**PURCHASE, "occurred_at": occurred_at})
    letter = dead_letter(handler(), raw)
    assert letter["error_code"] == code
    assert "out of range" in letter["error"]


@pytest.mark.parametrize(
    "occurred_at",
    [
        "0001-01-01T00:00:00Z",  # Go's time.Time{}
        "0001-01-01T00:00:00.0000000+00:00",  # .NET's DateTime.MinValue, round-trip format
        "1969-12-31T23:59:59.999999Z",
    ],
)
def test_an_event_before_the_earliest_event_time_is_an_early_timestamp_dead_letter(
    occurred_at: str,
) -> None:
    # A producer that forgot to set the time: never forwarded, so no ladder of a
    # new customer can fire all its steps at once (docs/time.md "Time").
    h = handler()
    letter = dead_letter(h, orjson.dumps({**PURCHASE, "occurred_at": occurred_at}))
    assert letter["error_code"] == "early_timestamp"
    assert "before the earliest accepted event time 1970-01-01T00:00:00Z" in letter["error"]
    assert (h.accepted, h.dead_letters) == (0, {"early_timestamp": 1})


def test_the_earliest_event_time_is_the_configured_absolute_instant() -> None:
    y2k = to_micros(datetime(2000, 1, 1, tzinfo=UTC))
    h = processors(ManualClock(NOW), min_event_time=y2k).ingest
    old = orjson.dumps({**PURCHASE, "occurred_at": "1999-12-31T23:59:59Z"})
    assert dead_letter(h, old)["error_code"] == "early_timestamp"
    on_time = orjson.dumps({**PURCHASE, "occurred_at": "2000-01-01T00:00:00Z"})
    [out], _ = h.handle(on_time, PURCHASES, 3, 1042)
    assert out.topic == CUSTOMER_TOPIC


# --- control/rules (docs/rules.md "Changing rules") --------------------------------------

RULES_TEXT = default_text().replace('steps = ["P7D", "P14D", "P30D"]', 'steps = ["P5D", "P14D"]')
RULES_ID = set_id(load_rules(RULES_TEXT))
EFFECTIVE = "2026-03-20T00:00:00Z"


def rules_record(**changes: Any) -> dict[str, Any]:
    record = {"schema": "control/rules", "effective_at": EFFECTIVE, "rules": RULES_TEXT}
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


def test_a_rules_marker_goes_to_every_customer_partition_in_order_with_the_events() -> None:
    h = handler(partitions=4)
    raw = orjson.dumps(rules_record(version=RULES_ID))
    outputs, controls = h.handle(raw, "retention.sessions", 2, 99)
    assert outputs == []
    assert [p for p, _ in controls] == [0, 1, 2, 3]
    for _, payload in controls:
        assert orjson.loads(payload) == {
            "type": "rules",
            "src": "retention.sessions:2",
            "effective_at": to_micros(datetime(2026, 3, 20, tzinfo=UTC)),
            "rules": RULES_TEXT,
            "version": RULES_ID,
        }
    assert h.rules_markers == 1 and not h.dead_letters


def test_a_rules_marker_without_a_version_and_with_the_schema_last_is_forwarded() -> None:
    # Keys in any order: "schema" may come after a long text.
    raw = orjson.dumps({"rules": RULES_TEXT, "effective_at": EFFECTIVE, "schema": "control/rules"})
    _, controls = handler(partitions=2).handle(raw, PURCHASES, 0, 7)
    assert [orjson.loads(c)["version"] for _, c in controls] == [RULES_ID, RULES_ID]


def test_a_change_may_be_scheduled_up_to_a_year_ahead() -> None:
    h = handler()
    _, controls = h.handle(
        orjson.dumps(rules_record(effective_at="2027-03-01T00:00:00Z")), PURCHASES, 0, 1
    )
    assert len(controls) == 4 and not h.dead_letters


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"rules": "format = 1\n[[rule]\n"}, "not valid TOML"),
        ({"rules": RULES_TEXT.replace('"P5D"', '"5 days"')}, "the rules do not load"),
        ({"rules": 42}, "'rules' must be the rules file's TOML text"),
        ({"rules": None}, "'rules' must be the rules file's TOML text"),
        ({"version": "0123456789ab"}, f"is not the rules' set id {RULES_ID}"),
        ({"effective_at": None}, "effective_at must be an RFC 3339 date-time"),
        ({"effective_at": "next week"}, "effective_at must be an RFC 3339 date-time"),
        ({"effective_at": "2026-03-20T00:00:00"}, "effective_at must be an RFC 3339 date-time"),
        ({"effective_at": "1969-12-31T23:59:59Z"}, "before the earliest accepted event time"),
        ({"effective_at": "2027-03-12T00:00:00Z"}, "a change is scheduled at most a year ahead"),
    ],
)
def test_a_bad_rules_marker_is_an_invalid_rules_dead_letter(
    changes: dict[str, Any], why: str
) -> None:
    h = handler()
    letter = dead_letter(h, orjson.dumps(rules_record(**changes)))
    assert letter["error_code"] == "invalid_rules"
    assert letter["error"].startswith("control/rules: ") and why in letter["error"]
    assert h.dead_letters == {"invalid_rules": 1} and h.rules_markers == 0


def test_a_rules_marker_over_the_size_bound_is_too_large_like_any_input() -> None:
    raw = orjson.dumps(rules_record(rules=RULES_TEXT + "#" * 70_000))
    assert dead_letter(handler(), raw)["error_code"] == "too_large"


def test_an_event_whose_text_mentions_control_rules_keeps_its_own_error() -> None:
    raw = orjson.dumps({"schema": "refund/1", "note": "control/rules"})
    letter = dead_letter(handler(), raw)
    assert letter["error_code"] == "unknown_schema" and "refund/1" in letter["error"]


def test_a_rules_marker_whose_text_mentions_control_advance_early_is_a_rules_marker() -> None:
    raw = orjson.dumps(
        {
            "rules": "# not a control/advance\n" + RULES_TEXT,
            "schema": "control/rules",
            "effective_at": EFFECTIVE,
        }
    )
    assert b"control/advance" in raw[:64]
    h = handler()
    _, controls = h.handle(raw, PURCHASES, 0, 3)
    assert len(controls) == 4 and h.rules_markers == 1 and h.markers == 0


def test_an_unknown_zone_costs_nothing_but_is_counted_and_a_mistyped_one_is_refused() -> None:
    # README "Inputs": the event is forwarded without a zone, its name kept for the lookup.
    h = handler()
    zones = ["Europe/Berlin", "Mars/Olympus_Mons", "A" * 100, None]
    for offset, zone in enumerate(zones):
        raw = orjson.dumps({**PURCHASE, "timezone": zone, "event_id": f"e{offset}"})
        [output], _ = h.handle(raw, PURCHASES, 3, offset)
        wire = orjson.loads(output.value)["ev"]
        assert (wire.get("tz"), wire.get("tzx")) == {
            0: ("Europe/Berlin", None),
            1: (None, "Mars/Olympus_Mons"),
            2: (None, "A" * 64),
            3: (None, None),
        }[offset]
    assert h.accepted == 4 and h.invalid_timezones == 2 and not h.dead_letters
    dead_letter(h, orjson.dumps({**PURCHASE, "timezone": 3600}))
    assert h.dead_letters == {"invalid_field": 1} and h.invalid_timezones == 2
