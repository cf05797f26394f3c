"""Validation of raw input messages: what a producer sees when it sends garbage."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core.timeutil import iso, to_micros
from agents.core.validation import ERROR_CODES, ValidationError, validate
from tests.unit.agents.factories import PURCHASE_WIRE

NOW = to_micros(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
DAY_US = 86_400_000_000
LIMIT = 64 * 1024
_DROP = object()

PURCHASE = PURCHASE_WIRE | {"amount": "59.90", "channel": "web"}
SESSION: dict[str, Any] = {
    "schema": "session/1",
    "event_id": "evt-1b2c3d4e",
    "customer_id": "cus_000481",
    "occurred_at": "2026-03-05T18:42:07.125Z",
    "session_id": "sess-88c1",
}
CONSENT: dict[str, Any] = {
    "schema": "consent/1",
    "event_id": "evt-99aa01",
    "customer_id": "cus_000481",
    "occurred_at": "2026-03-06T08:00:00Z",
    "status": "opted_out",
    "channel": "email",
}


def msg(base: dict[str, Any], **changes: Any) -> bytes:
    obj = dict(base)
    for key, value in changes.items():
        if value is _DROP:
            obj.pop(key, None)
        else:
            obj[key] = value
    return orjson.dumps(obj)


def check(raw: bytes, now: int = NOW) -> Any:
    return validate(raw, now=now, max_bytes=LIMIT, future_tolerance=DAY_US)


# --- accepted messages ---------------------------------------------------------------


def test_purchase_with_offset_is_normalised_to_utc() -> None:
    event = check(msg(PURCHASE))
    assert event.kind == "purchase"
    assert event.event_id == "evt-7f3a9c21"
    assert event.customer_id == "cus_000481"
    # 10:15 at +02:00 is 08:15 UTC.
    assert event.occurred_at == to_micros(datetime(2026, 3, 2, 8, 15, tzinfo=UTC))
    assert (event.order_id, event.amount, event.currency) == ("ORD-2026-000913", "59.90", "EUR")
    assert event.channel == "web"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T10:15:00+02:00", datetime(2026, 3, 2, 8, 15, tzinfo=UTC)),
        ("2026-03-01T23:30:00-05:00", datetime(2026, 3, 2, 4, 30, tzinfo=UTC)),
        ("2026-03-02T00:30:00+02:00", datetime(2026, 3, 1, 22, 30, tzinfo=UTC)),
        ("2026-03-02T08:15:00Z", datetime(2026, 3, 2, 8, 15, tzinfo=UTC)),
        ("2026-03-02t08:15:00z", datetime(2026, 3, 2, 8, 15, tzinfo=UTC)),
        ("2026-03-02T08:15:00.123456789Z", datetime(2026, 3, 2, 8, 15, 0, 123456, tzinfo=UTC)),
        ("2026-03-02T08:15:00.1234567890123Z", datetime(2026, 3, 2, 8, 15, 0, 123456, tzinfo=UTC)),
        ("2026-03-02T08:15:60Z", datetime(2026, 3, 2, 8, 15, 59, 999999, tzinfo=UTC)),
        ("2026-03-02T10:15:60.5+02:00", datetime(2026, 3, 2, 8, 15, 59, 999999, tzinfo=UTC)),
    ],
)
def test_rfc3339_offsets_are_converted_to_the_same_utc_instant(
    text: str, expected: datetime
) -> None:
    assert check(msg(SESSION, occurred_at=text)).occurred_at == to_micros(expected)


def test_session_and_consent_are_accepted() -> None:
    s = check(msg(SESSION))
    assert (s.kind, s.session_id, s.order_id) == ("session", "sess-88c1", None)
    c = check(msg(CONSENT))
    assert (c.kind, c.status, c.channel) == ("consent", "opted_out", "email")
    assert check(msg(CONSENT, status="opted_in")).status == "opted_in"


@pytest.mark.parametrize(
    ("amount", "value"),
    [
        (59.9, "59.9"),
        (12, "12"),
        (0, "0"),
        ("59.90", "59.90"),
        ("0012.50", "12.50"),
        (-0.0, "0"),
        ("9" * 16 + "." + "9" * 15, "9" * 16 + "." + "9" * 15),
        ("0.99", "0.99"),
        ("1234.5", "1234.5"),
    ],
)
def test_amount_as_number_or_decimal_string(amount: Any, value: str) -> None:
    event = check(msg(PURCHASE, amount=amount))
    assert Decimal(event.amount) == Decimal(value)


@pytest.mark.parametrize("amount", ["20.00", 100, "100", 1000.0])
def test_whole_amounts_stay_plain_decimal_strings(amount: Any) -> None:
    event = check(msg(PURCHASE, amount=amount))
    assert Decimal(event.amount) == Decimal(str(amount))
    assert "E" not in event.amount.upper()


@pytest.mark.parametrize("field", ["event_id", "customer_id", "order_id"])
def test_ids_up_to_128_characters_are_accepted_and_longer_refused(field: str) -> None:
    assert getattr(check(msg(PURCHASE, **{field: "x" * 128})), field) == "x" * 128
    with pytest.raises(ValidationError) as info:
        check(msg(PURCHASE, **{field: "x" * 129}))
    assert info.value.code == "invalid_field"
    assert info.value.message == f"field '{field}' is longer than 128 characters"


def test_future_tolerance_boundary_is_inclusive() -> None:
    edge = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)  # exactly NOW + 1 day
    assert check(msg(SESSION, occurred_at="2026-03-11T12:00:00Z")).occurred_at == to_micros(edge)
    with pytest.raises(ValidationError) as info:
        check(msg(SESSION, occurred_at="2026-03-11T12:00:01Z"))
    assert info.value.code == "future_timestamp"


# --- every dead-letter code, with the message a producer reads -----------------------

CASES: list[tuple[str, bytes, str, str]] = [
    (
        "too_large",
        msg(PURCHASE, channel="x" * 70_000),
        "too_large",
        "bytes; the limit is 65536",
    ),
    ("truncated JSON", b'{"schema": "purchase/1", "event_id": "e1",', "invalid_json", "not valid"),
    ("latin-1 bytes", b'{"schema": "session/1", "customer_id": "M\xfcller"}', "invalid_json", ""),
    ("empty", b"", "invalid_json", "not valid UTF-8 JSON"),
    ("array", b'[{"schema": "purchase/1"}]', "not_an_object", "got list"),
    ("string", b'"purchase/1"', "not_an_object", "expected a JSON object, got str"),
    ("no schema", msg(PURCHASE, schema=_DROP), "unknown_schema", "field 'schema' is required"),
    ("new version", msg(PURCHASE, schema="purchase/3"), "unknown_schema", "'purchase/3'"),
    ("schema as number", msg(PURCHASE, schema=1), "unknown_schema", "unknown schema"),
    ("no order_id", msg(PURCHASE, order_id=_DROP), "missing_field", "'order_id' is required"),
    ("null event_id", msg(PURCHASE, event_id=None), "missing_field", "'event_id' is required"),
    ("no amount", msg(PURCHASE, amount=_DROP), "missing_field", "'amount' is required"),
    ("no time", msg(SESSION, occurred_at=_DROP), "missing_field", "'occurred_at' is required"),
    ("no session_id", msg(SESSION, session_id=_DROP), "missing_field", "'session_id'"),
    ("no status", msg(CONSENT, status=_DROP), "missing_field", "'status' is required"),
    (
        "numeric customer",
        msg(PURCHASE, customer_id=481),
        "invalid_field",
        "field 'customer_id' must be a string, got int",
    ),
    ("blank id", msg(PURCHASE, event_id="   "), "invalid_field", "must not be empty"),
    ("negative", msg(PURCHASE, amount="-5.00"), "invalid_field", "must be a finite number >= 0"),
    ("words", msg(PURCHASE, amount="ten euros"), "invalid_field", "not a decimal number"),
    ("bool amount", msg(PURCHASE, amount=True), "invalid_field", "number or a decimal string"),
    ("NaN amount", msg(PURCHASE, amount="NaN"), "invalid_field", "not a decimal number"),
    ("minus zero", msg(PURCHASE, amount="-0"), "invalid_field", "finite number >= 0, unsigned"),
    ("plus sign", msg(PURCHASE, amount="+5"), "invalid_field", "plain ASCII digits"),
    ("underscore", msg(PURCHASE, amount="1_000"), "invalid_field", "plain ASCII digits"),
    ("space", msg(PURCHASE, amount=" 5"), "invalid_field", "plain ASCII digits"),
    ("exponent", msg(PURCHASE, amount="1e3"), "invalid_field", "plain ASCII digits"),
    ("arabic", msg(PURCHASE, amount="\u0661\u0662"), "invalid_field", "plain ASCII digits"),
    ("fullwidth", msg(PURCHASE, amount="\uff11\uff12"), "invalid_field", "plain ASCII digits"),
    ("17 digits", msg(PURCHASE, amount="1" * 17), "invalid_field", "at most 16 before"),
    ("40k digits", msg(PURCHASE, amount="9" * 40000), "invalid_field", "at most 16 before"),
    ("16 decimals", msg(PURCHASE, amount="1." + "1" * 16), "invalid_field", "15 after"),
    ("big number", msg(PURCHASE, amount=10**16), "invalid_field", "out of range"),
    (
        "offset :60",
        msg(PURCHASE, occurred_at="2026-03-02T10:15:00+05:60"),
        "invalid_timestamp",
        "impossible UTC offset",
    ),
    (
        "arabic year",
        msg(PURCHASE, occurred_at="\u0662\u0660\u0662\u0666-03-02T10:15:00Z"),
        "invalid_timestamp",
        "RFC 3339",
    ),
    ("currency word", msg(PURCHASE, currency="euro"), "invalid_field", "'currency'"),
    ("lower currency", msg(PURCHASE, currency="eur"), "invalid_field", "ISO 4217 code"),
    ("status", msg(CONSENT, status="unsubscribed"), "invalid_field", "'unsubscribed'"),
    ("channel", msg(SESSION, channel=["web"]), "invalid_field", "'channel' must be a string"),
    (
        "not a date",
        msg(PURCHASE, occurred_at="last tuesday"),
        "invalid_timestamp",
        "occurred_at is not RFC 3339: 'last tuesday'",
    ),
    ("Feb 30", msg(PURCHASE, occurred_at="2026-02-30T10:00:00Z"), "invalid_timestamp", "valid"),
    ("epoch", msg(PURCHASE, occurred_at=1772446500), "invalid_timestamp", "RFC 3339 string"),
    ("date only", msg(PURCHASE, occurred_at="2026-03-02"), "invalid_timestamp", "RFC 3339"),
    ("no colon", msg(PURCHASE, occurred_at="2026-03-02T10:00:00+0200"), "invalid_timestamp", ""),
    (
        "naive",
        msg(PURCHASE, occurred_at="2026-03-02T10:15:00"),
        "naive_timestamp",
        "occurred_at has no UTC offset (add 'Z' or '+hh:mm')",
    ),
    (
        "two days ahead",
        msg(PURCHASE, occurred_at="2026-03-12T12:00:00Z"),
        "future_timestamp",
        "occurred_at 2026-03-12T12:00:00Z is more than 24h after the processor's clock "
        "2026-03-10T12:00:00Z",
    ),
    (
        "Go's zero time",
        msg(PURCHASE, occurred_at="0001-01-01T00:00:00Z"),
        "early_timestamp",
        "occurred_at 0001-01-01T00:00:00Z is before the earliest accepted event time "
        "1970-01-01T00:00:00Z (RETENTION_MIN_EVENT_TIME",
    ),
    (
        ".NET's DateTime.MinValue",
        msg(SESSION, occurred_at="0001-01-01T00:00:00.0000000+00:00"),
        "early_timestamp",
        "before the earliest accepted event time",
    ),
    (
        "a microsecond before 1970",
        msg(CONSENT, occurred_at="1969-12-31T23:59:59.999999Z"),
        "early_timestamp",
        "occurred_at 1969-12-31T23:59:59.999999Z is before",
    ),
]


@pytest.mark.parametrize(
    ("raw", "code", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_gets_a_stable_code_and_a_readable_message(
    raw: bytes, code: str, fragment: str
) -> None:
    with pytest.raises(ValidationError) as info:
        check(raw)
    assert info.value.code == code
    assert fragment in info.value.message
    assert str(info.value) == info.value.message
    assert info.value.message.strip()


def test_every_error_code_is_exercised() -> None:
    assert {code for _, _, code, _ in CASES} == set(ERROR_CODES)


@settings(max_examples=200, deadline=None)
@given(
    now=st.integers(0, to_micros(datetime(2200, 1, 1, tzinfo=UTC))),
    earliest=st.sampled_from(
        [
            0,
            to_micros(datetime(2000, 1, 1, tzinfo=UTC)),
            -(10**15),
            -62_135_596_800_000_000 + DAY_US,
        ]
    ),
    delta=st.sampled_from([-1, 0, 1, -86_400_000_000]),
)
def test_the_earliest_event_time_is_an_absolute_instant(
    now: int, earliest: int, delta: int
) -> None:
    # The verdict depends on the event time and the setting only, never on the
    # day it is made: a replay or a report of old history gives the same answer
    # any day (docs/time.md "Time").
    occurred = earliest + delta
    if occurred > now + DAY_US:
        return  # a future_timestamp, whatever the floor
    raw = msg(SESSION, occurred_at=iso(occurred))
    try:
        event = validate(raw, now=now, max_bytes=LIMIT, future_tolerance=DAY_US, earliest=earliest)
    except ValidationError as exc:
        assert delta < 0 and exc.code == "early_timestamp"
    else:
        assert delta >= 0 and event.occurred_at == occurred


def test_the_default_floor_is_1970_and_the_bound_is_inclusive() -> None:
    assert check(msg(SESSION, occurred_at="1970-01-01T00:00:00Z")).occurred_at == 0
    assert check(msg(SESSION, occurred_at="1970-01-01T01:00:00+01:00")).occurred_at == 0
    with pytest.raises(ValidationError) as info:
        check(msg(SESSION, occurred_at="1970-01-01T00:59:59+01:00"))
    assert info.value.code == "early_timestamp"


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(ValidationError) as info:
        check(b"\xff" * (LIMIT + 1))
    assert info.value.code == "too_large"
    assert info.value.message == f"message is {LIMIT + 1} bytes; the limit is {LIMIT}"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("0001-01-01T00:00:00+01:00", "early_timestamp"),
        ("9999-12-31T23:59:59-01:00", "future_timestamp"),
    ],
)
def test_out_of_range_timestamps_say_which_side_not_a_crash(text: str, code: str) -> None:
    with pytest.raises(ValidationError) as info:
        check(msg(SESSION, occurred_at=text))
    assert info.value.code == code


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
TIMESTAMPS = st.from_regex(
    r"\A20\d\d-[01]\d-[0-3]\d[T ][0-2]\d:[0-5]\d:[0-6]\d(\.\d{1,9})?([Zz]|[+-][0-2]\d:[0-5]\d)?\Z"
)


@settings(max_examples=200, deadline=None)
@given(
    base=st.sampled_from([PURCHASE, SESSION, CONSENT]),
    field=st.sampled_from(sorted({*PURCHASE, *SESSION, *CONSENT})),
    value=JSON | TIMESTAMPS,
)
def test_any_field_value_is_either_accepted_or_refused_with_a_known_code(
    base: dict[str, Any], field: str, value: Any
) -> None:
    try:
        event = check(msg(base, **{field: value}))
    except ValidationError as exc:
        assert exc.code in ERROR_CODES
        assert exc.message
    else:
        assert event.customer_id and event.event_id


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_validation_error(raw: bytes) -> None:
    try:
        check(raw)
    except ValidationError as exc:
        assert exc.code in ERROR_CODES


# --- the customer's zone (README "Inputs") ----------------------------------------------


@pytest.mark.parametrize(
    ("zone", "kept", "ignored"),
    [
        ("Europe/Berlin", "Europe/Berlin", None),
        ("US/Eastern", "US/Eastern", None),  # a link tzdata lists
        ("Mars/Olympus_Mons", None, "Mars/Olympus_Mons"),
        ("europe/berlin", None, "europe/berlin"),  # names are case-sensitive
        ("../../etc/passwd", None, "../../etc/passwd"),
        ("Factory", None, "Factory"),
        ("", None, ""),
        ("Europe/" + "x" * 100, None, ("Europe/" + "x" * 100)[:64]),
        # Shown without anything JSON would escape: it costs the row 64 bytes at most.
        ('Asia/"Tokyo"\\\x01\u00e9\U0001f600', None, "Asia/?Tokyo?????"),
        (None, None, None),
    ],
)
def test_a_zone_is_kept_when_tzdata_knows_it_and_otherwise_ignored_never_refused(
    zone: str | None, kept: str | None, ignored: str | None
) -> None:
    for sample in (PURCHASE, SESSION, CONSENT):
        event = check(msg(sample, timezone=zone))
        assert (event.timezone, event.timezone_ignored) == (kept, ignored)


@pytest.mark.parametrize("zone", [3600, 1.5, True, ["Europe/Berlin"], {"name": "UTC"}])
def test_a_zone_that_is_not_a_string_is_an_invalid_field(zone: object) -> None:
    with pytest.raises(ValidationError) as exc:
        check(msg(SESSION, timezone=zone))
    assert exc.value.code == "invalid_field" and "timezone" in exc.value.message
