"""The JSON Schemas in ``schemas/`` and the Python code agree.

Inputs: ``agents.core.validation.validate`` accepts a message exactly when the
schema for its ``schema`` field does (for everything a schema can express: the
future-timestamp and size checks are switched off here).  Outputs: records built
by the real builders validate, and every builder key is required.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import schemas
from agents.core.clock import ManualClock
from agents.core.emissions import Conversion, Firing
from agents.core.engine import Engine
from agents.core.guardrails import OUTCOME_DELIVERED
from agents.core.settings import DAY, CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import to_micros
from agents.core.validation import ERROR_CODES, ValidationError, validate
from agents.messages import decision_record, outcome_record
from schemas.records import (
    DeadLetter,
    Decision,
    Event,
    NudgeTrigger,
    Outcome,
    SourcePosition,
    Threshold,
)
from tests.unit.agents.factories import PURCHASE_WIRE, processors

SCHEMA_DIR = Path(schemas.__file__).parent
INPUTS = (
    "purchase",
    "session",
    "consent",
    # The lifecycle's contracts (docs/lifecycle.md "Inputs").
    "signup",
    "product_view",
    "cart",
    "order_cancelled",
    "purchase_2",
)
OUTPUTS = ("decision", "nudge", "dead_letter", "outcome")
# Not a message: the rules file (tests/unit/agents/core/rules/test_schema.py).
FILES = ("rules",)
# Control records of the input topics (tests/unit/schemas/test_control_rules.py).
CONTROLS = ("control_rules",)
NOW = to_micros(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
FAR_FUTURE = 2**62  # disables the future_timestamp check
HUGE = 1 << 30  # disables the too_large check


def load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())


VALIDATORS = {name: Draft202012Validator(load(name)) for name in INPUTS + OUTPUTS + CONTROLS}
# The input validators by the contract a message names (``purchase/2``: purchase_2.schema.json).
BY_SCHEMA = {load(name)["properties"]["schema"]["const"]: VALIDATORS[name] for name in INPUTS}
# A file's contract version, in its $id (purchase_2.schema.json is purchase-2.json).
ID_NAMES = {"purchase_2": "purchase-2"}


def schema_accepts(obj: Any) -> bool:
    """The schema named by the message's own ``schema`` field accepts it."""
    return any(VALIDATORS[name].is_valid(obj) for name in INPUTS)


def code_accepts(raw: bytes) -> bool:
    """Accepted, and not in a lenient form that the schema refuses (README "Inputs")."""
    lenient: Counter[str] = Counter()
    try:
        validate(raw, now=FAR_FUTURE, max_bytes=HUGE, future_tolerance=0, lenient=lenient)
    except ValidationError:
        return False
    return not lenient


# --- (a) the schema files ---------------------------------------------------------------


@pytest.mark.parametrize("name", INPUTS + OUTPUTS + FILES + CONTROLS)
def test_schema_file_is_valid_draft_2020_12(name: str) -> None:
    schema = load(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == (
        f"https://retention-processor.dev/schemas/{ID_NAMES.get(name, f'{name}-1')}.json"
    )
    assert schema["title"] and schema["description"]
    for example in schema.get("examples", []):
        assert VALIDATORS[name].is_valid(example)


def test_every_schema_file_is_covered() -> None:
    assert {p.name for p in SCHEMA_DIR.glob("*.schema.json")} == {
        f"{n}.schema.json" for n in INPUTS + OUTPUTS + FILES + CONTROLS
    }


# --- (b) realistic samples --------------------------------------------------------------

PURCHASE = PURCHASE_WIRE
SESSION: dict[str, Any] = {
    "schema": "session/1",
    "event_id": "evt-a9d0e311",
    "customer_id": "cus_000481",
    "occurred_at": "2026-03-05T19:02:11Z",
    "session_id": "ses-55c1",
}
CONSENT: dict[str, Any] = {
    "schema": "consent/1",
    "event_id": "evt-c0a1",
    "customer_id": "cus_000481",
    "occurred_at": "2026-03-06T08:00:00.123456789-05:30",
    "status": "opted_out",
}


def _without(obj: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != key}


SIGNUP: dict[str, Any] = {
    "schema": "signup/1",
    "event_id": "evt-51d2",
    "customer_id": "cus_000481",
    "occurred_at": "2026-03-01T09:12:00Z",
}
VIEW: dict[str, Any] = {
    "schema": "product_view/1",
    "event_id": "evt-v1",
    "customer_id": "cus_000481",
    "occurred_at": "2026-03-01T09:14:00Z",
    "product_id": "SKU-1042",
}
LINE: dict[str, Any] = {
    "product_id": "SKU-1042",
    "quantity": 2,
    "unit_price": "89.00",
    "currency": "EUR",
}
CART: dict[str, Any] = {
    "schema": "cart/1",
    "event_id": "evt-k1",
    "customer_id": "cus_000481",
    "occurred_at": "2026-03-01T09:20:00Z",
    "cart_id": "cart-77f1",
    "action": "updated",
    "items": [LINE],
}
CANCEL: dict[str, Any] = {
    "schema": "order_cancelled/1",
    "event_id": "evt-x1",
    "customer_id": "cus_000481",
    "occurred_at": "2026-03-04T11:00:00Z",
    "order_id": "ORD-2026-000913",
    "scope": "full",
    "amount": "59.90",
    "currency": "EUR",
}
PURCHASE_2: dict[str, Any] = PURCHASE | {
    "schema": "purchase/2",
    "cart_id": "cart-77f1",
    "items": [LINE],
}

VALID = {
    "purchase": PURCHASE,
    "purchase_decimal_string": PURCHASE | {"amount": "1299.00", "channel": "app"},
    "purchase_zero_int": PURCHASE | {"amount": 0, "currency": "JPY"},
    "purchase_lowercase_t_z": PURCHASE | {"occurred_at": "2026-03-02t08:15:00.5z"},
    "purchase_extra_fields": PURCHASE | {"coupon": "SPRING", "items": [{"sku": "A1"}]},
    "purchase_null_channel": PURCHASE | {"channel": None},
    "session": SESSION,
    "session_empty_channel": SESSION | {"channel": ""},
    "consent": CONSENT,
    "consent_opted_in": CONSENT | {"status": "opted_in", "channel": "email-footer"},
    "ids_at_limit": SESSION | {"event_id": "e" * 128, "customer_id": "c" * 128},
    "amount_digits_at_limit": PURCHASE | {"amount": "9" * 16 + "." + "9" * 15},
    "amount_leading_zeros": PURCHASE | {"amount": "0007.50"},
    "amount_negative_zero_number": PURCHASE | {"amount": -0.0},
    "twelve_fraction_digits": SESSION | {"occurred_at": "2026-03-05T19:02:11.123456789012Z"},
    # purchase/1 is unchanged: a cart id and items (even ones purchase/2 refuses) are
    # extra fields, ignored (docs/lifecycle.md "Inputs").
    "purchase_1_with_cart_and_items": PURCHASE | {"cart_id": " ", "items": [{"sku": "A1"}] * 60},
    "signup": SIGNUP,
    "signup_extra_fields": SIGNUP | {"referrer": "newsletter", "channel": "app"},
    "view": VIEW,
    "view_with_price": VIEW | {"category": "shoes", "price": "89.00", "currency": "EUR"},
    "view_price_number": VIEW | {"price": 0, "currency": "JPY"},
    "view_null_price": VIEW | {"price": None, "category": None},
    "view_currency_without_price": VIEW | {"currency": "EUR"},
    "view_category_at_limit": VIEW | {"category": "c" * 128},
    "cart": CART,
    "cart_checkout": CART | {"action": "checkout_started", "channel": "web"},
    "cart_emptied": CART | {"action": "emptied", "items": []},
    "cart_updated_empty": CART | {"items": []},
    "cart_ten_items": CART | {"items": [LINE] * 10},
    "cart_line_extra_keys": CART | {"items": [LINE | {"name": "Runner", "image": None}]},
    "cart_quantity_bounds": CART
    | {"items": [LINE | {"quantity": 1}, LINE | {"quantity": 1_000_000}]},
    "cart_quantity_integral_float": CART | {"items": [LINE | {"quantity": 3.0}]},
    "cart_free_line": CART | {"items": [LINE | {"unit_price": 0}]},
    "cancel_full": CANCEL,
    "cancel_partial": CANCEL | {"scope": "partial", "amount": 19.9},
    "purchase_2": PURCHASE_2,
    "purchase_2_no_cart": _without(PURCHASE_2, "cart_id"),
    "purchase_2_no_items": _without(PURCHASE_2, "items"),
    "purchase_2_nulls": PURCHASE_2 | {"cart_id": None, "items": None},
    "purchase_2_fifty_items": PURCHASE_2 | {"items": [LINE] * 50},
    "purchase_2_no_lines": PURCHASE_2 | {"items": []},
}


# Accepted, counted as lenient, refused by the schema (README "Inputs"): a later
# version dead-letters them.
LENIENT = {
    "purchase_space_separator": PURCHASE | {"occurred_at": "2026-03-02 08:15:00.5z"},
    "leap_second": SESSION | {"occurred_at": "2016-12-31T23:59:60Z"},
    "leap_second_with_offset": SESSION | {"occurred_at": "2017-01-01T05:29:60.5+05:30"},
}


# (sample, the code's error code): one per code a schema can express.
INVALID = {
    "missing_order_id": (_without(PURCHASE, "order_id"), "missing_field"),
    "missing_occurred_at": (_without(SESSION, "occurred_at"), "missing_field"),
    "null_status": (CONSENT | {"status": None}, "missing_field"),
    "amount_wrong_type": (PURCHASE | {"amount": True}, "invalid_field"),
    "event_id_wrong_type": (SESSION | {"event_id": 42}, "invalid_field"),
    "blank_customer_id": (SESSION | {"customer_id": "  "}, "invalid_field"),
    "naive_timestamp": (PURCHASE | {"occurred_at": "2026-03-02T10:15:00"}, "naive_timestamp"),
    "date_only": (PURCHASE | {"occurred_at": "2026-03-02"}, "invalid_timestamp"),
    "timestamp_not_string": (SESSION | {"occurred_at": 1772446500}, "invalid_timestamp"),
    "bad_currency": (PURCHASE | {"currency": "eur"}, "invalid_field"),
    "currency_too_long": (PURCHASE | {"currency": "EURO"}, "invalid_field"),
    "negative_amount": (PURCHASE | {"amount": -0.01}, "invalid_field"),
    "negative_amount_string": (PURCHASE | {"amount": "-5.00"}, "invalid_field"),
    "amount_not_decimal": (PURCHASE | {"amount": "12,50"}, "invalid_field"),
    "amount_out_of_range": (PURCHASE | {"amount": 1e16}, "invalid_field"),
    "amount_minus_zero": (PURCHASE | {"amount": "-0"}, "invalid_field"),
    "amount_plus_sign": (PURCHASE | {"amount": "+5"}, "invalid_field"),
    "amount_underscore": (PURCHASE | {"amount": "1_000"}, "invalid_field"),
    "amount_arabic_indic": (PURCHASE | {"amount": "\u0661\u0662"}, "invalid_field"),
    "amount_fullwidth": (PURCHASE | {"amount": "\uff11\uff12"}, "invalid_field"),
    "amount_leading_space": (PURCHASE | {"amount": " 5"}, "invalid_field"),
    "amount_exponent_string": (PURCHASE | {"amount": "1e3"}, "invalid_field"),
    "amount_17_digits": (PURCHASE | {"amount": "1" * 17}, "invalid_field"),
    "amount_16_fraction_digits": (PURCHASE | {"amount": "1." + "0" * 16}, "invalid_field"),
    "amount_40000_digits": (PURCHASE | {"amount": "9" * 40_000}, "invalid_field"),
    "offset_minutes_60": (
        PURCHASE | {"occurred_at": "2026-03-02T10:15:00+05:60"},
        "invalid_timestamp",
    ),
    "offset_hours_24": (
        PURCHASE | {"occurred_at": "2026-03-02T10:15:00+24:00"},
        "invalid_timestamp",
    ),
    "seconds_61": (PURCHASE | {"occurred_at": "2026-03-02T10:15:61Z"}, "invalid_timestamp"),
    "arabic_indic_year": (
        SESSION | {"occurred_at": "\u0662\u0660\u0662\u0666-03-05T19:02:11Z"},
        "invalid_timestamp",
    ),
    "unknown_schema": (PURCHASE | {"schema": "purchase/3"}, "unknown_schema"),
    "unknown_schema_version": (SIGNUP | {"schema": "signup/2"}, "unknown_schema"),
    "no_schema": (_without(SESSION, "schema"), "unknown_schema"),
    "too_long_id": (PURCHASE | {"order_id": "o" * 129}, "invalid_field"),
    "channel_too_long": (SESSION | {"channel": "x" * 257}, "invalid_field"),
    "bad_status": (CONSENT | {"status": "unsubscribed"}, "invalid_field"),
    # The lifecycle's contracts (docs/lifecycle.md "Inputs"): the same codes for the
    # same faults.
    "signup_blank_event_id": (SIGNUP | {"event_id": " "}, "invalid_field"),
    "signup_naive_time": (SIGNUP | {"occurred_at": "2026-03-01T09:12:00"}, "naive_timestamp"),
    "signup_bad_timezone_type": (SIGNUP | {"timezone": 3600}, "invalid_field"),
    "view_missing_product": (_without(VIEW, "product_id"), "missing_field"),
    "view_product_too_long": (VIEW | {"product_id": "p" * 129}, "invalid_field"),
    "view_blank_product": (VIEW | {"product_id": "\t"}, "invalid_field"),
    "view_empty_category": (VIEW | {"category": ""}, "invalid_field"),
    "view_category_too_long": (VIEW | {"category": "c" * 129}, "invalid_field"),
    "view_category_not_text": (VIEW | {"category": 7}, "invalid_field"),
    "view_price_without_currency": (VIEW | {"price": "10.00"}, "missing_field"),
    "view_price_null_currency": (VIEW | {"price": "10.00", "currency": None}, "missing_field"),
    "view_negative_price": (VIEW | {"price": -1, "currency": "EUR"}, "invalid_field"),
    "view_price_exponent": (VIEW | {"price": "1e3", "currency": "EUR"}, "invalid_field"),
    "view_bad_currency": (VIEW | {"price": "1", "currency": "eur"}, "invalid_field"),
    "cart_missing_cart_id": (_without(CART, "cart_id"), "missing_field"),
    "cart_blank_cart_id": (CART | {"cart_id": "  "}, "invalid_field"),
    "cart_missing_action": (_without(CART, "action"), "missing_field"),
    "cart_bad_action": (CART | {"action": "abandoned"}, "invalid_field"),
    "cart_action_not_text": (CART | {"action": 1}, "invalid_field"),
    "cart_missing_items": (_without(CART, "items"), "missing_field"),
    "cart_null_items": (CART | {"items": None}, "missing_field"),
    "cart_items_not_a_list": (CART | {"items": LINE}, "invalid_field"),
    "cart_eleven_items": (CART | {"items": [LINE] * 11}, "invalid_field"),
    "cart_emptied_eleven_items": (
        CART | {"action": "emptied", "items": [LINE] * 11},
        "invalid_field",
    ),
    "cart_line_not_an_object": (CART | {"items": ["SKU-1042"]}, "invalid_field"),
    "cart_line_missing_product": (
        CART | {"items": [_without(LINE, "product_id")]},
        "missing_field",
    ),
    "cart_line_missing_quantity": (CART | {"items": [_without(LINE, "quantity")]}, "missing_field"),
    "cart_line_missing_price": (CART | {"items": [_without(LINE, "unit_price")]}, "missing_field"),
    "cart_line_missing_currency": (CART | {"items": [_without(LINE, "currency")]}, "missing_field"),
    "cart_quantity_zero": (CART | {"items": [LINE | {"quantity": 0}]}, "invalid_field"),
    "cart_quantity_too_big": (CART | {"items": [LINE | {"quantity": 1_000_001}]}, "invalid_field"),
    "cart_quantity_fraction": (CART | {"items": [LINE | {"quantity": 1.5}]}, "invalid_field"),
    "cart_quantity_text": (CART | {"items": [LINE | {"quantity": "2"}]}, "invalid_field"),
    "cart_quantity_bool": (CART | {"items": [LINE | {"quantity": True}]}, "invalid_field"),
    "cart_negative_unit_price": (CART | {"items": [LINE | {"unit_price": "-1"}]}, "invalid_field"),
    "cart_unit_price_17_digits": (
        CART | {"items": [LINE | {"unit_price": "1" * 17}]},
        "invalid_field",
    ),
    "cart_line_bad_currency": (CART | {"items": [LINE | {"currency": "EURO"}]}, "invalid_field"),
    "cancel_missing_order": (_without(CANCEL, "order_id"), "missing_field"),
    "cancel_missing_scope": (_without(CANCEL, "scope"), "missing_field"),
    "cancel_bad_scope": (CANCEL | {"scope": "refund"}, "invalid_field"),
    "cancel_missing_amount": (_without(CANCEL, "amount"), "missing_field"),
    "cancel_amount_out_of_range": (CANCEL | {"amount": 1e16}, "invalid_field"),
    "cancel_missing_currency": (_without(CANCEL, "currency"), "missing_field"),
    "cancel_bad_currency": (CANCEL | {"currency": "Eur"}, "invalid_field"),
    "purchase_2_blank_cart_id": (PURCHASE_2 | {"cart_id": ""}, "invalid_field"),
    "purchase_2_cart_id_too_long": (PURCHASE_2 | {"cart_id": "k" * 129}, "invalid_field"),
    "purchase_2_fifty_one_items": (PURCHASE_2 | {"items": [LINE] * 51}, "invalid_field"),
    "purchase_2_bad_line": (PURCHASE_2 | {"items": [{"sku": "A1"}]}, "missing_field"),
    "purchase_2_missing_amount": (_without(PURCHASE_2, "amount"), "missing_field"),
    "purchase_2_bad_quantity": (PURCHASE_2 | {"items": [LINE | {"quantity": -2}]}, "invalid_field"),
}


@pytest.mark.parametrize("sample", VALID.values(), ids=VALID.keys())
def test_valid_samples_pass_both(sample: dict[str, Any]) -> None:
    raw = orjson.dumps(sample)
    validate(raw, now=NOW, max_bytes=64 * 1024, future_tolerance=DAY)
    assert BY_SCHEMA[sample["schema"]].is_valid(orjson.loads(raw))


@pytest.mark.parametrize("sample", LENIENT.values(), ids=LENIENT.keys())
def test_lenient_samples_are_accepted_and_counted_but_fail_the_schema(
    sample: dict[str, Any],
) -> None:
    lenient: Counter[str] = Counter()
    validate(
        orjson.dumps(sample), now=NOW, max_bytes=1 << 16, future_tolerance=DAY, lenient=lenient
    )
    assert lenient.total() == 1
    assert not schema_accepts(sample)


@pytest.mark.parametrize(("sample", "code"), INVALID.values(), ids=INVALID.keys())
def test_invalid_samples_fail_both(sample: dict[str, Any], code: str) -> None:
    raw = orjson.dumps(sample)
    with pytest.raises(ValidationError) as exc:
        validate(raw, now=NOW, max_bytes=64 * 1024, future_tolerance=DAY)
    assert exc.value.code == code
    assert not schema_accepts(orjson.loads(raw))


def test_invalid_samples_cover_every_expressible_error_code() -> None:
    # The time bounds depend on the processor's clock and settings.
    not_expressible = {
        "too_large",
        "invalid_json",
        "not_an_object",
        "future_timestamp",
        "early_timestamp",
    }
    assert {code for _, code in INVALID.values()} == set(ERROR_CODES) - not_expressible


# --- (c) property: validate accepts <=> the schema accepts ------------------------------

_ws_or_text = st.text(alphabet=st.sampled_from("ab-_ \t\n\u00e9\u00a0\u2003"), max_size=6)
ids = st.one_of(
    _ws_or_text,
    st.text(alphabet=st.characters(codec="utf-8"), min_size=120, max_size=135),
    st.none(),
    st.integers(-5, 5),
)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(datetime(1970, 1, 2), datetime(2100, 1, 1)))
    sep = draw(st.sampled_from("Tt "))
    digits = draw(st.integers(0, 12))
    frac = (
        "."
        + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=digits, max_size=digits)))
        if digits
        else ""
    )
    sign = draw(st.sampled_from("+-"))
    offset = draw(
        st.one_of(
            st.sampled_from(["Z", "z", ""]),
            st.builds(
                lambda h, m: f"{sign}{h:02d}:{m:02d}", st.integers(0, 25), st.integers(0, 61)
            ),
        )
    )
    second = draw(st.sampled_from(["%S", "%S", "%S", "60", "61"]))  # leap second or beyond
    return moment.strftime(f"%Y-%m-%d{sep}%H:%M:{second}") + frac + offset


amounts = st.one_of(
    st.integers(-(2**40), 2**62),
    st.floats(-1e20, 1e20, allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 0.0, 1e-15, 9.9e-16, 1e16, 9999999999999998.0, 10**16 - 1, 10**16]),
    # Decimal-looking strings, signed or not, with too many digits now and then.
    st.from_regex(r"[-+]?[0-9]{1,18}(\.[0-9]{0,18})?", fullmatch=True),
    # Forms Python's Decimal reads but the contract refuses.
    st.sampled_from(["1_000", " 5", "5 ", "5\n", "1e3", ".5", "\u0665", "\uff15", "-0", "+0"]),
    st.text(alphabet="0123456789.\u0660\u0669\uff10 _+-eE", max_size=8),
    st.none(),
    st.booleans(),
)
currencies = st.one_of(st.from_regex(r"[A-Za-z]{2,4}", fullmatch=True), st.none(), st.just(978))
statuses = st.one_of(st.sampled_from(["opted_out", "opted_in", "OPTED_OUT", ""]), st.none())
channels = st.one_of(
    st.none(), st.text(max_size=8), st.text(min_size=250, max_size=260), st.integers(-5, 5)
)
# Zones kept, zones ignored (never a dead letter) and mistyped ones (invalid_field).
timezones = st.one_of(
    st.none(),
    st.sampled_from(["UTC", "US/Eastern", "Factory", "europe/berlin", "../etc/passwd", "x" * 65]),
    st.text(max_size=8),
    st.integers(-5, 5),
    st.booleans(),
)
MISSING = object()
ints = st.integers(-(2**63), 2**63 - 1)  # what orjson can encode


good_ids = st.text(alphabet="abc-_019", min_size=1, max_size=12)
good_amounts = st.one_of(
    st.integers(0, 10**6),
    st.floats(0, 1e6),
    st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,2})?", fullmatch=True),
)


SCHEMAS = [load(name)["properties"]["schema"]["const"] for name in INPUTS]
quantities = st.one_of(
    st.integers(1, 1_000_000),
    st.sampled_from([0, -1, 1_000_001, 2.0, 2.5, True, "3", None]),
)
good_lines = st.fixed_dictionaries(
    {
        "product_id": good_ids,
        "quantity": st.integers(1, 1_000_000),
        "unit_price": good_amounts,
        "currency": st.sampled_from(["EUR", "USD"]),
    }
)


@st.composite
def wild_line(draw: st.DrawFn) -> Any:
    """A cart or order line, now and then with a wild or missing field."""
    if not draw(st.integers(0, 15)):
        return draw(st.one_of(st.none(), st.text(max_size=3), ints))
    line = dict(draw(good_lines))
    for name, wild in (
        ("product_id", ids),
        ("quantity", quantities),
        ("unit_price", amounts),
        ("currency", currencies),
    ):
        if not draw(st.integers(0, 7)):
            value = draw(st.one_of(wild, st.just(MISSING)))
            if value is MISSING:
                del line[name]
            else:
                line[name] = value
    return line


actions = st.one_of(
    st.sampled_from(["updated", "checkout_started", "emptied", "full", "partial", "UPDATED"]),
    st.none(),
    st.integers(0, 2),
)
wild_items = st.one_of(
    st.lists(wild_line(), max_size=12),
    st.lists(good_lines, min_size=49, max_size=52),
    st.none(),
    st.just({"product_id": "p"}),
    st.text(max_size=3),
)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed messages with, now and then, a wild value in a field."""
    schema = draw(st.sampled_from(SCHEMAS))
    good: dict[str, st.SearchStrategy[Any]] = {
        "schema": st.just(schema),
        "event_id": good_ids,
        "customer_id": good_ids,
        "occurred_at": timestamps(),
        "channel": st.one_of(st.none(), st.text(max_size=8)),
        "timezone": st.one_of(st.none(), st.sampled_from(["Europe/Berlin", "Asia/Kathmandu"])),
    }
    good |= {
        "purchase/1": {
            "order_id": good_ids,
            "amount": good_amounts,
            "currency": st.sampled_from(["EUR", "USD", "JPY"]),
        },
        "session/1": {"session_id": good_ids},
        "consent/1": {"status": st.sampled_from(["opted_out", "opted_in"])},
        "signup/1": {},
        "product_view/1": {
            "product_id": good_ids,
            "category": st.one_of(st.none(), good_ids),
            "price": st.one_of(st.none(), good_amounts),
            "currency": st.sampled_from(["EUR", "USD"]),
        },
        "cart/1": {
            "cart_id": good_ids,
            "action": st.sampled_from(["updated", "checkout_started", "emptied"]),
            "items": st.lists(good_lines, max_size=10),
        },
        "order_cancelled/1": {
            "order_id": good_ids,
            "scope": st.sampled_from(["full", "partial"]),
            "amount": good_amounts,
            "currency": st.sampled_from(["EUR", "USD", "JPY"]),
        },
        "purchase/2": {
            "order_id": good_ids,
            "amount": good_amounts,
            "currency": st.sampled_from(["EUR", "USD", "JPY"]),
            "cart_id": st.one_of(st.none(), good_ids),
            "items": st.one_of(st.none(), st.lists(good_lines, max_size=50)),
        },
    }[schema]
    wild: dict[str, st.SearchStrategy[Any]] = {
        "schema": st.sampled_from([*SCHEMAS, "purchase/3", "cart/2", 1]),
        "event_id": ids,
        "customer_id": ids,
        "occurred_at": st.one_of(timestamps(), ints, st.none()),
        "order_id": ids,
        "amount": amounts,
        "currency": currencies,
        "session_id": ids,
        "status": statuses,
        "channel": channels,
        "timezone": timezones,
        "product_id": ids,
        "category": st.one_of(ids, st.text(min_size=127, max_size=130)),
        "price": amounts,
        "cart_id": ids,
        "action": actions,
        "scope": actions,
        "items": wild_items,
        "extra": st.one_of(ints, st.text(max_size=3)),
    }
    obj = {}
    for name in wild:
        if name in good and draw(st.integers(0, 7)):
            obj[name] = draw(good[name])
        elif name not in good and draw(st.integers(0, 7)):
            continue  # a field of another schema, or an unknown one: now and then
        else:
            value = draw(st.one_of(wild[name], st.just(MISSING)))
            if value is not MISSING:
                obj[name] = value
    return obj


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_validate_accepts_iff_schema_accepts(obj: dict[str, Any]) -> None:
    raw = orjson.dumps(obj)
    assert code_accepts(raw) == schema_accepts(orjson.loads(raw)), raw


def test_no_leniencies_left_in_the_code() -> None:
    """Forms Python itself would read (Decimal, fromisoformat) are refused by both."""
    refused = [
        PURCHASE | {"amount": "1e3"},
        PURCHASE | {"amount": " 12.50 "},
        PURCHASE | {"amount": "-0"},
        PURCHASE | {"amount": "+5"},
        PURCHASE | {"amount": "1_000"},
        PURCHASE | {"amount": "\u0661\u0662"},
        PURCHASE | {"amount": "\uff11\uff12"},
        PURCHASE | {"occurred_at": "2026-03-02T10:15:00+05:75"},
        PURCHASE | {"occurred_at": "2026-03-02T10:15:00+05:60"},
    ]
    for obj in refused:
        raw = orjson.dumps(obj)
        assert not code_accepts(raw) and not schema_accepts(orjson.loads(raw)), obj


def test_the_schema_pattern_cannot_check_the_calendar() -> None:
    """The one documented gap: the pattern accepts Feb 30, the processor does not."""
    obj = PURCHASE | {"occurred_at": "2026-02-30T10:15:00Z"}
    assert schema_accepts(obj) and not code_accepts(orjson.dumps(obj))


def test_leap_second_and_long_fractions_read_as_documented() -> None:
    def micros(text: str) -> int:
        raw = orjson.dumps(SESSION | {"occurred_at": text})
        return validate(raw, now=FAR_FUTURE, max_bytes=HUGE, future_tolerance=0).occurred_at

    last = to_micros(datetime(2016, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
    assert micros("2016-12-31T23:59:60Z") == last
    assert micros("2016-12-31T23:59:60.25Z") == last
    assert micros("2017-01-01T05:29:60+05:30") == last
    assert micros("2016-12-31T23:59:59.1234567899999Z") == last - 999_999 + 123_456


# --- (d) outputs built by the real builders ---------------------------------------------

T0 = to_micros(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))


def _event(kind: str, n: int, t: int, **kw: Any) -> Event:
    return Event(kind, f"evt-{n}", "cus_000481", t, **kw)


def real_firings() -> list[Firing]:
    engine = Engine(CoreSettings())
    state = CustomerState(customer_id="cus_000481", partition=0)
    first = _event("purchase", 1, T0, order_id="o1", amount="59.90", currency="EUR")
    session = _event("session", 2, T0 + 2 * DAY, session_id="s1", channel="app")
    assert engine.ingest(state, first, T0) == []
    assert engine.ingest(state, session, T0 + 2 * DAY) == []
    firings = [f for f in engine.advance(state, T0 + 40 * DAY) if isinstance(f, Firing)]
    assert {(f.rule, f.step) for f in firings} >= {("second_purchase", 1), ("inactivity", 1)}
    return firings


def real_outcomes() -> list[dict[str, Any]]:
    """Conversions of a delivered and of a holdout customer, built by the real engine."""
    out = []
    for percent, cid in ((0.0, "cus_000481"), (100.0, "cus_000482")):
        engine = Engine(CoreSettings(holdout_percent=percent))
        state = CustomerState(customer_id=cid, partition=0)
        first = Event("purchase", "evt-1", cid, T0, order_id="o1", amount="20", currency="EUR")
        engine.ingest(state, first, T0)
        engine.advance(state, T0 + 7 * DAY)
        late = T0 + 9 * DAY + 1_500_000
        order = Event("purchase", "evt-2", cid, late, order_id="o2", amount="0", currency="EUR")
        emitted = engine.ingest(state, order, late) or []
        (conversion,) = [c for c in emitted if isinstance(c, Conversion)]
        record = outcome_record(conversion, attribution_window=5 * DAY)
        out.append(orjson.loads(orjson.dumps(record.to_dict())))
    assert [o["group"] for o in out] == ["delivered", "holdout"]
    return out


def real_decision_records() -> list[Decision]:
    now = T0 + 40 * DAY + 123
    return [
        decision_record(f, fired_at=now, clock=clock, outcome=outcome, holdout=holdout)
        for f in real_firings()
        for clock, outcome, holdout in (
            ("wall", OUTCOME_DELIVERED, False),
            ("stream", "holdout", True),
        )
    ]


def real_decisions() -> list[dict[str, Any]]:
    return [orjson.loads(orjson.dumps(d.to_dict())) for d in real_decision_records()]


def real_nudges() -> list[dict[str, Any]]:
    return [orjson.loads(orjson.dumps(d.nudge_dict())) for d in real_decision_records()]


def real_dead_letters() -> list[dict[str, Any]]:
    h = processors(ManualClock(NOW), partitions=4).ingest
    bad = [
        b"",
        b"\xff\xfe not utf-8",
        b"[1, 2]",
        orjson.dumps(PURCHASE | {"occurred_at": "2026-03-02T10:15:00"}),
        orjson.dumps(PURCHASE | {"occurred_at": "2027-01-01T00:00:00Z"}),
        b"x" * (64 * 1024 + 1),
    ]
    out = []
    for i, raw in enumerate(bad):
        outputs, _ = h.handle(raw, "retention.purchases", 3, 1000 + i)
        (output,) = outputs
        out.append(orjson.loads(output.value))
    assert {d["error_code"] for d in out} >= {"invalid_json", "naive_timestamp", "too_large"}
    return out


def _assert_valid(name: str, record: dict[str, Any]) -> None:
    errors = [e.message for e in VALIDATORS[name].iter_errors(record)]
    assert not errors, (name, errors, record)


def test_decision_and_nudge_records_validate() -> None:
    decisions, nudges = real_decisions(), real_nudges()
    for d, n in zip(decisions, nudges, strict=True):
        _assert_valid("decision", d)
        _assert_valid("nudge", n)
        assert n == {k: v for k, v in d.items() if k not in ("delivered", "outcome", "clock")} | {
            "schema": "nudge/1"
        }
    # Every key but the optional ones (docs/rules.md "Rules file") is required.
    assert set(load("decision")["required"]) == set(decisions[0]) - OPTIONAL["decision"]
    assert set(load("nudge")["required"]) == set(nudges[0]) - OPTIONAL["nudge"]
    assert decisions[0]["rule_version"] == nudges[0]["rule_version"]
    assert "channel" not in nudges[0]  # the default rules name no channel


def test_a_rule_channel_and_version_reach_the_nudge_only_where_the_schemas_say() -> None:
    d = real_decisions()[0]
    record = Decision(
        **{k: v for k, v in d.items() if k not in ("schema", "threshold", "rule_version")},
        threshold=Threshold(**d["threshold"]),
        rule_version="0123456789ab",
        channel="email",
    )
    _assert_valid("decision", record.to_dict())
    _assert_valid("nudge", record.nudge_dict())
    assert "channel" not in record.to_dict() and record.nudge_dict()["channel"] == "email"
    assert not VALIDATORS["nudge"].is_valid(record.nudge_dict() | {"rule_version": "v1"})


def test_decision_schema_ties_delivered_to_outcome() -> None:
    d, n = real_decisions()[0], real_nudges()[0]
    assert not VALIDATORS["decision"].is_valid(d | {"delivered": False})
    assert not VALIDATORS["decision"].is_valid(d | {"unexpected": 1})
    assert not VALIDATORS["nudge"].is_valid(n | {"clock": "wall"})


def test_outcome_records_validate() -> None:
    outcomes = real_outcomes()
    for o in outcomes:
        _assert_valid("outcome", o)
        assert o["hours_to_convert"] == 48.0  # two days and 1.5 s after the day-7 firing
    assert set(load("outcome")["required"]) == set(outcomes[0]) - OPTIONAL["outcome"]
    assert not VALIDATORS["outcome"].is_valid(outcomes[0] | {"group": "min_gap"})


def test_dead_letter_records_validate() -> None:
    letters = real_dead_letters()
    for d in letters:
        _assert_valid("dead_letter", d)
        assert len(base64.b64decode(d["original_base64"])) <= d["original_size"]
    assert set(load("dead_letter")["required"]) == set(letters[0])


@pytest.mark.parametrize("name", OUTPUTS)
def test_output_schemas_are_closed_and_require_everything(name: str) -> None:
    schema = load(name)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"]) - OPTIONAL.get(name, set())


# --- (e) the dataclasses in schemas.records ---------------------------------------------

WIRE_KEYS = {
    "k": "schema",  # the kind ("purchase"), from the schema field ("purchase/1")
    "e": "event_id",
    "c": "customer_id",
    "t": "occurred_at",
    "o": "order_id",
    "a": "amount",
    "cur": "currency",
    "s": "session_id",
    "st": "status",
    "ch": "channel",
    "tz": "timezone",  # a zone tzdata knows
    "tzx": "timezone",  # any other name, ignored (README "Inputs")
    "p": "product_id",
    "cat": "category",
    "pr": "price",
    "cart": "cart_id",
    "act": "action",  # a cart's action; a cancellation's scope (below)
    "it": "items",
}
# A cancellation's scope rides in the event's ``action`` (schemas/records.py Event).
SCOPE = "scope"
# What is left of an input's ``timezone`` that is no zone: kept apart, for the lookup.
EVENT_ONLY = {"kind", "timezone_ignored"}
# One realistic message per contract, every optional field it has set.
SAMPLES = {
    "purchase": PURCHASE,
    "session": SESSION,
    "consent": CONSENT,
    "signup": SIGNUP,
    "product_view": VIEW | {"category": "shoes", "price": "89.00", "currency": "EUR"},
    "cart": CART,
    "order_cancelled": CANCEL,
    "purchase_2": PURCHASE_2,
}


def _property(name: str, key: str) -> str:
    """The schema property a wire key of an event of contract ``name`` comes from."""
    return SCOPE if (name, key) == ("order_cancelled", "act") else WIRE_KEYS[key]


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_event_fields_match_input_schemas() -> None:
    properties = set().union(*(load(n)["properties"] for n in INPUTS))
    assert _fields(Event) - EVENT_ONLY == properties - {"schema", SCOPE}
    assert set(WIRE_KEYS.values()) | {SCOPE} == properties
    assert set(SAMPLES) == set(INPUTS)
    for name, sample in SAMPLES.items():
        for zone, key in (("Europe/Berlin", "tz"), ("Mars/Olympus_Mons", "tzx")):
            message = sample | {"channel": "web", "timezone": zone}
            event = validate(orjson.dumps(message), now=NOW, max_bytes=HUGE, future_tolerance=DAY)
            wire = event.to_wire()
            # Every field the message set reaches the event and back (round trip).
            assert {_property(name, k) for k in wire} == set(message), name
            assert set(load(name)["required"]) <= set(message)
            assert wire[key] == zone
            assert Event.from_wire(orjson.loads(orjson.dumps(wire))) == event


# Each output record's one typed definition and its JSON Schema: the same keys, all
# required, the same schema constant, the same nested objects.
OUTPUT_RECORDS: dict[str, type[Any]] = {
    "decision": Decision,
    "nudge": NudgeTrigger,
    "outcome": Outcome,
    "dead_letter": DeadLetter,
}
# Keys a record leaves out when unset (docs/rules.md "Rules file").
# With a send window a decision and its nudge carry the send time, zone and local
# time, an outcome the send time (docs/send-windows.md "Outputs").
SEND = {"send_at", "send_zone", "send_local"}
OPTIONAL = {
    "decision": {"rule_version"} | SEND,
    "nudge": {"rule_version", "channel"} | SEND,
    "outcome": {"send_at", "amount", "currency"},
}
# A decision carries its rule's channel for the nudge it makes, never on its own topic.
NOT_ON_WIRE = {"decision": {"channel"}}
NESTED = {
    ("decision", "threshold"): Threshold,
    ("nudge", "threshold"): Threshold,
    ("outcome", "attribution_window"): Threshold,
    ("dead_letter", "source"): SourcePosition,
}


def _keys(cls: type[Any]) -> set[str]:
    """The wire keys a record class declares: its fields and its ``schema`` constant."""
    return _fields(cls) | {"schema"}


@pytest.mark.parametrize("name", OUTPUTS)
def test_output_record_classes_match_schemas(name: str) -> None:
    cls, schema = OUTPUT_RECORDS[name], load(name)
    optional = OPTIONAL.get(name, set())
    assert _keys(cls) - NOT_ON_WIRE.get(name, set()) == set(schema["properties"])
    assert set(schema["properties"]) - optional == set(schema["required"])
    assert cls.schema == schema["properties"]["schema"]["const"] == f"{name}/1"
    for (record, key), nested in NESTED.items():
        if record == name:
            sub = schema["properties"][key]
            assert _fields(nested) == set(sub["properties"]) == set(sub["required"])


def test_every_output_record_class_is_checked() -> None:
    import schemas.records as records

    declared = {
        cls
        for cls in vars(records).values()
        if isinstance(cls, type) and dataclasses.is_dataclass(cls) and hasattr(cls, "schema")
    }
    assert declared == set(OUTPUT_RECORDS.values())


def test_to_dict_writes_exactly_the_declared_keys() -> None:
    """The wire form of each real record is its class's keys, nested objects included."""
    decision = real_decision_records()[0]
    conversion_records = real_outcomes()
    letters = real_dead_letters()
    # The default rules have no send window: no send fields.
    assert set(decision.to_dict()) == _keys(Decision) - NOT_ON_WIRE["decision"] - SEND
    assert set(decision.to_dict()["threshold"]) == _fields(Threshold)
    # The default rules name no channel: the nudge leaves it out.
    assert set(decision.nudge_dict()) == _keys(NudgeTrigger) - {"channel"} - SEND
    assert set(conversion_records[0]) == _keys(Outcome) - {"send_at"}
    assert set(conversion_records[0]["attribution_window"]) == _fields(Threshold)
    assert set(letters[0]) == _keys(DeadLetter)
    assert set(letters[0]["source"]) == _fields(SourcePosition)


def test_a_nudge_trigger_is_the_trigger_part_of_its_decision() -> None:
    """What the customer agent sends as a nudge (``Decision.nudge_dict``) is the
    ``NudgeTrigger`` record of the decision's trigger fields."""
    for d in real_decision_records():
        nudge = NudgeTrigger(**{f: getattr(d, f) for f in _fields(NudgeTrigger)})
        assert nudge.to_dict() == d.nudge_dict()
        _assert_valid("nudge", orjson.loads(orjson.dumps(nudge.to_dict())))
