"""Strict validation of raw input messages into :class:`schemas.records.Event`.

Every failure is a :class:`ValidationError` with a stable ``code`` (the dead-letter
error code, counted per code) and a message a producer can act on.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from decimal import Decimal
from typing import Any

import orjson

from agents.core.timeutil import (
    DEFAULT_MIN_EVENT_TIME,
    TimeFormatError,
    iso,
    lenient_form,
    parse_timestamp,
    to_micros,
)
from agents.core.zones import MAX_ZONE_NAME, load_zone
from schemas.records import (
    CANCEL_FULL,
    CANCEL_PARTIAL,
    CART_CHECKOUT,
    CART_EMPTIED,
    CART_UPDATED,
    CONSENT_OPTED_IN,
    CONSENT_OPTED_OUT,
    KIND_CANCEL,
    KIND_CART,
    KIND_CONSENT,
    KIND_PURCHASE,
    KIND_SESSION,
    KIND_SIGNUP,
    KIND_VIEW,
    MAX_CART_ITEMS,
    MAX_ORDER_ITEMS,
    SCHEMA_CART,
    SCHEMA_CONSENT,
    SCHEMA_ORDER_CANCELLED,
    SCHEMA_PRODUCT_VIEW,
    SCHEMA_PURCHASE,
    SCHEMA_PURCHASE_2,
    SCHEMA_SESSION,
    SCHEMA_SIGNUP,
    Event,
    Item,
)

MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 256

# Stable error codes: part of the dead-letter contract (schemas/dead_letter.schema.json).
ERROR_CODES = (
    "too_large",
    "invalid_json",
    "not_an_object",
    "unknown_schema",
    "missing_field",
    "invalid_field",
    "invalid_timestamp",
    "naive_timestamp",
    "future_timestamp",
    "early_timestamp",
)

# An event time (or control/advance) later than the wall clock + the future
# tolerance; the customers agent applies the same bound to its internal topic.
CODE_FUTURE_TIMESTAMP = "future_timestamp"
# An event time (or control/advance) before RETENTION_MIN_EVENT_TIME, an absolute
# instant: Go's zero time and .NET's DateTime.MinValue (0001-01-01) are what a
# producer that forgot to set the time sends, and would fire every ladder step at
# once (docs/time.md "Time").  Bounded the same way in the customers agent and the
# offline reference.
CODE_EARLY_TIMESTAMP = "early_timestamp"

_CURRENCY = re.compile(r"^[A-Z]{3}$")
# Characters an ignored zone name is not shown with (JSON would escape them).
_UNSHOWN = re.compile(r'[^ -~]|["\\]')
# An ignored zone name as ingest writes it (shown_zone), for the internal topic's reader.
SHOWN_ZONE = re.compile(rf"[ !#-\[\]-~]{{0,{MAX_ZONE_NAME}}}")
# Amount bounds (README "Inputs"): they bound the size of every spend total too.
MAX_AMOUNT_INTEGER_DIGITS = 16
MAX_AMOUNT_FRACTION_DIGITS = 15
MIN_AMOUNT = 1e-15  # smallest non-zero JSON number
_AMOUNT_TEXT = re.compile(
    rf"[0-9]{{1,{MAX_AMOUNT_INTEGER_DIGITS}}}(?:\.[0-9]{{1,{MAX_AMOUNT_FRACTION_DIGITS}}})?",
    re.ASCII,
)
# Every input contract, in the order the messages name them (README "Inputs").
_KIND_BY_SCHEMA = {
    SCHEMA_PURCHASE: KIND_PURCHASE,
    SCHEMA_SESSION: KIND_SESSION,
    SCHEMA_CONSENT: KIND_CONSENT,
    SCHEMA_SIGNUP: KIND_SIGNUP,
    SCHEMA_PRODUCT_VIEW: KIND_VIEW,
    SCHEMA_CART: KIND_CART,
    SCHEMA_ORDER_CANCELLED: KIND_CANCEL,
    SCHEMA_PURCHASE_2: KIND_PURCHASE,
}
INPUT_SCHEMAS = tuple(_KIND_BY_SCHEMA)
_SCHEMA_LIST = ", ".join(INPUT_SCHEMAS)
# A product's category in a view (docs/lifecycle.md "Inputs").
MAX_CATEGORY_LENGTH = 128
# A cart or order line's quantity (docs/lifecycle.md "Inputs").
MAX_QUANTITY = 1_000_000
CART_ACTIONS = (CART_UPDATED, CART_CHECKOUT, CART_EMPTIED)
CANCEL_SCOPES = (CANCEL_FULL, CANCEL_PARTIAL)


class ValidationError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _text(obj: dict[str, Any], name: str, *, required: bool, limit: int) -> str | None:
    if name not in obj or obj[name] is None:
        if required:
            raise ValidationError("missing_field", f"field '{name}' is required")
        return None
    value = obj[name]
    if not isinstance(value, str):
        raise ValidationError(
            "invalid_field", f"field '{name}' must be a string, got {type(value).__name__}"
        )
    if required and not value.strip():
        raise ValidationError("invalid_field", f"field '{name}' must not be empty")
    if len(value) > limit:
        raise ValidationError("invalid_field", f"field '{name}' is longer than {limit} characters")
    return value


def _amount(obj: dict[str, Any], name: str = "amount", schema: str = SCHEMA_PURCHASE) -> str:
    """The order value (or a price: the same rules) as an exact plain decimal
    string (README "Inputs").

    A JSON number must be 0 or lie in [1e-15, 1e16).  A string must be a plain
    decimal of ASCII digits: at most 16 digits before the point and 15 after,
    no sign, exponent, underscore, space or other digits.
    """
    if name not in obj or obj[name] is None:
        raise ValidationError("missing_field", f"field '{name}' is required for {schema}")
    raw = obj[name]
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValidationError(
            "invalid_field", f"field '{name}' must be a number or a decimal string"
        )
    if isinstance(raw, str):
        if not _AMOUNT_TEXT.fullmatch(raw):
            if raw.startswith("-"):
                raise ValidationError(
                    "invalid_field", f"field '{name}' must be a finite number >= 0, unsigned"
                )
            raise ValidationError(
                "invalid_field",
                f"field '{name}' is not a decimal number: plain ASCII digits "
                f"(at most {MAX_AMOUNT_INTEGER_DIGITS} before the point and "
                f"{MAX_AMOUNT_FRACTION_DIGITS} after, no sign), got {raw[:32]!r}",
            )
        value = Decimal(raw)
    else:
        if isinstance(raw, float) and not math.isfinite(raw):
            raise ValidationError("invalid_field", f"field '{name}' must be a finite number >= 0")
        if raw < 0:
            raise ValidationError("invalid_field", f"field '{name}' must be a finite number >= 0")
        if raw >= 10**MAX_AMOUNT_INTEGER_DIGITS or (0 < raw < MIN_AMOUNT):
            raise ValidationError("invalid_field", f"field '{name}' is out of range")
        # repr: the shortest text that reads back as the same float ("59.9").
        value = Decimal(repr(raw)).copy_abs()  # -0.0 is 0
    # Plain notation ("20.00" stays "20.00", never "2E+1"): the producer's string.
    return format(value, "f")


def early_error(what: str, t: int, earliest: int) -> ValidationError:
    """The ``early_timestamp`` error for ``what`` dated ``t``, before ``earliest``."""
    return ValidationError(
        CODE_EARLY_TIMESTAMP,
        f"{what} {iso(t)} is before the earliest accepted event time {iso(earliest)} "
        "(RETENTION_MIN_EVENT_TIME; a zero or unset time in the producer?)",
    )


def validate(
    raw: bytes,
    *,
    now: int,
    max_bytes: int,
    future_tolerance: int,
    lenient: Counter[str] | None = None,
    earliest: int = DEFAULT_MIN_EVENT_TIME,
) -> Event:
    """Parse and check one input message; ``now`` is the wall clock in micros.

    The future check uses the wall clock, not the stream clock, so that a replay
    rejects exactly the same messages however its events are partitioned; the
    past check uses ``earliest`` (RETENTION_MIN_EVENT_TIME), an absolute instant,
    so that it rejects the same messages on any day.
    """
    if len(raw) > max_bytes:
        raise ValidationError("too_large", f"message is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError("invalid_json", f"not valid UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValidationError("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    schema = obj.get("schema")
    if schema is None:
        raise ValidationError("unknown_schema", f"field 'schema' is required ({_SCHEMA_LIST})")
    kind = _KIND_BY_SCHEMA.get(schema) if isinstance(schema, str) else None
    if kind is None:
        raise ValidationError(
            "unknown_schema",
            f"unknown schema {str(schema)[:40]!r}; expected one of {_SCHEMA_LIST}",
        )
    event_id = _text(obj, "event_id", required=True, limit=MAX_ID_LENGTH)
    customer_id = _text(obj, "customer_id", required=True, limit=MAX_ID_LENGTH)
    if "occurred_at" not in obj or obj["occurred_at"] is None:
        raise ValidationError("missing_field", "field 'occurred_at' is required")
    try:
        occurred = to_micros(parse_timestamp(obj["occurred_at"]))
    except TimeFormatError as exc:
        raise ValidationError(exc.code, str(exc)) from None
    if occurred > now + future_tolerance:
        raise ValidationError(
            CODE_FUTURE_TIMESTAMP,
            f"occurred_at {iso(occurred)} is more than {future_tolerance // 3_600_000_000}h "
            f"after the processor's clock {iso(now)}",
        )
    if occurred < earliest:
        raise early_error("occurred_at", occurred, earliest)
    channel = _text(obj, "channel", required=False, limit=MAX_TEXT_LENGTH)
    assert event_id is not None and customer_id is not None
    event = _event(obj, schema, kind, event_id, customer_id, occurred, channel)
    if lenient is not None and (form := lenient_form(obj["occurred_at"])) is not None:
        lenient[form] += 1  # accepted today, refused later (README "Inputs")
    return event


def _zone(obj: dict[str, Any]) -> dict[str, Any]:
    """The event's ``timezone`` as Event fields: kept when tzdata knows the zone; any
    other string is ignored but remembered for the lookup (:func:`shown_zone`), never
    a dead letter; a non-string is a mistyped field (README "Inputs").  Fields, not
    ``dataclasses.replace`` of a built event: that copy cost most of ingest's time
    for zones (docs/benchmarks.md "Where the send windows' cost goes")."""
    name = obj.get("timezone")
    if name is None:
        return _NO_ZONE
    if not isinstance(name, str):
        raise ValidationError(
            "invalid_field",
            f"field 'timezone' must be a string (an IANA zone name), got {type(name).__name__}",
        )
    if load_zone(name) is not None:
        return {"timezone": name}
    return {"timezone_ignored": shown_zone(name)}


_NO_ZONE: dict[str, Any] = {}


def shown_zone(name: str) -> str:
    """What the lookup shows of an ignored zone name: its first
    :data:`MAX_ZONE_NAME` characters, each outside printable ASCII (or a quote or a
    backslash) as ``?``, so it costs the row and a waiting entry at most that many
    bytes (docs/budget.md "Byte budget")."""
    return _UNSHOWN.sub("?", name[:MAX_ZONE_NAME])


def _event(
    obj: dict[str, Any],
    schema: str,
    kind: str,
    event_id: str,
    customer_id: str,
    occurred: int,
    channel: str | None,
) -> Event:
    """The kind's own fields checked, the event built."""
    if kind == KIND_PURCHASE:
        order_id = _text(obj, "order_id", required=True, limit=MAX_ID_LENGTH)
        amount = _amount(obj, "amount", schema)
        currency = _currency(obj, "currency")
        # purchase/1 is unchanged: its extra fields (a cart_id or items too) are
        # ignored, as they always were (docs/lifecycle.md "Inputs").
        cart_id: str | None = None
        items: tuple[Item, ...] | None = None
        if schema != SCHEMA_PURCHASE:
            cart_id = _optional_id(obj, "cart_id")
            items = _items(obj, MAX_ORDER_ITEMS, required=False)
        return Event(
            kind,
            event_id,
            customer_id,
            occurred,
            order_id=order_id,
            amount=amount,
            currency=currency,
            channel=channel,
            cart_id=cart_id,
            items=items,
            **_zone(obj),
        )
    if kind == KIND_SESSION:
        session_id = _text(obj, "session_id", required=True, limit=MAX_ID_LENGTH)
        return Event(
            kind,
            event_id,
            customer_id,
            occurred,
            session_id=session_id,
            channel=channel,
            **_zone(obj),
        )
    if kind == KIND_CONSENT:
        status = obj.get("status")
        if status is None:
            raise ValidationError("missing_field", "field 'status' is required for consent/1")
        if status not in (CONSENT_OPTED_OUT, CONSENT_OPTED_IN):
            raise ValidationError(
                "invalid_field",
                f"field 'status' must be opted_out or opted_in, got {str(status)[:32]!r}",
            )
        return Event(
            kind, event_id, customer_id, occurred, status=status, channel=channel, **_zone(obj)
        )
    if kind == KIND_VIEW:
        return _view(obj, event_id, customer_id, occurred, channel)
    if kind == KIND_CART:
        cart_id = _text(obj, "cart_id", required=True, limit=MAX_ID_LENGTH)
        action = _choice(obj, "action", CART_ACTIONS, schema)
        cart_items = _items(obj, MAX_CART_ITEMS, required=True)
        if not cart_items or action == CART_EMPTIED:
            # A snapshot without items is an emptied cart, whatever its action; an
            # emptied one holds nothing (docs/lifecycle.md "Inputs").
            action, cart_items = CART_EMPTIED, ()
        return Event(
            kind,
            event_id,
            customer_id,
            occurred,
            channel=channel,
            cart_id=cart_id,
            action=action,
            items=cart_items,
            **_zone(obj),
        )
    if kind == KIND_CANCEL:
        order_id = _text(obj, "order_id", required=True, limit=MAX_ID_LENGTH)
        scope = _choice(obj, "scope", CANCEL_SCOPES, schema)
        amount = _amount(obj, "amount", schema)
        currency = _currency(obj, "currency")
        return Event(
            kind,
            event_id,
            customer_id,
            occurred,
            order_id=order_id,
            amount=amount,
            currency=currency,
            channel=channel,
            action=scope,
            **_zone(obj),
        )
    return Event(kind, event_id, customer_id, occurred, channel=channel, **_zone(obj))


def _view(
    obj: dict[str, Any], event_id: str, customer_id: str, occurred: int, channel: str | None
) -> Event:
    """A product view: the product, and the category and price when sent (a price
    comes with its currency)."""
    product_id = _text(obj, "product_id", required=True, limit=MAX_ID_LENGTH)
    category = _text(obj, "category", required=False, limit=MAX_CATEGORY_LENGTH)
    if category == "":
        raise ValidationError("invalid_field", "field 'category' must not be empty")
    price = currency = None
    if obj.get("price") is not None:
        price = _amount(obj, "price", SCHEMA_PRODUCT_VIEW)
        if obj.get("currency") is None:
            raise ValidationError("missing_field", "field 'currency' is required with 'price'")
    if obj.get("currency") is not None:
        currency = _currency(obj, "currency")
    return Event(
        KIND_VIEW,
        event_id,
        customer_id,
        occurred,
        currency=currency,
        channel=channel,
        product_id=product_id,
        category=category,
        price=price,
        **_zone(obj),
    )


def _currency(obj: dict[str, Any], name: str) -> str:
    """An ISO 4217 code's shape: three upper-case ASCII letters (README "Inputs")."""
    currency = _text(obj, name, required=True, limit=3)
    if currency is None or not _CURRENCY.match(currency):
        raise ValidationError(
            "invalid_field",
            f"field '{name}' must be an ISO 4217 code like EUR, got {currency!r}",
        )
    return currency


def _optional_id(obj: dict[str, Any], name: str) -> str | None:
    """An optional id: absent or null, else 1..128 characters, not only whitespace."""
    value = _text(obj, name, required=False, limit=MAX_ID_LENGTH)
    if value is not None and not value.strip():
        raise ValidationError("invalid_field", f"field '{name}' must not be empty")
    return value


def _choice(obj: dict[str, Any], name: str, allowed: tuple[str, ...], schema: str) -> str:
    value = obj.get(name)
    if value is None:
        raise ValidationError("missing_field", f"field '{name}' is required for {schema}")
    if value not in allowed:
        raise ValidationError(
            "invalid_field",
            f"field '{name}' must be one of {', '.join(allowed)}, got {str(value)[:32]!r}",
        )
    return str(value)


def _items(obj: dict[str, Any], limit: int, *, required: bool) -> tuple[Item, ...] | None:
    """A cart snapshot's or an order's lines (docs/lifecycle.md "Inputs"): at most
    ``limit``, each a product id, an integer quantity 1..1,000,000, a unit price
    (the amount rules) and its currency; extra keys in a line are ignored."""
    raw = obj.get("items")
    if raw is None:
        if required:
            raise ValidationError("missing_field", "field 'items' is required")
        return None
    if not isinstance(raw, list):
        raise ValidationError(
            "invalid_field", f"field 'items' must be an array, got {type(raw).__name__}"
        )
    if len(raw) > limit:
        raise ValidationError(
            "invalid_field", f"field 'items' has {len(raw)} items; at most {limit} are allowed"
        )
    out = []
    for n, line in enumerate(raw):
        where = f"items[{n}]."
        if not isinstance(line, dict):
            raise ValidationError(
                "invalid_field", f"items[{n}] must be an object, got {type(line).__name__}"
            )
        try:
            product_id = _text(line, "product_id", required=True, limit=MAX_ID_LENGTH)
            quantity = _quantity(line)
            unit_price = _amount(line, "unit_price", "an item")
            currency = _currency(line, "currency")
        except ValidationError as exc:
            message = exc.message.replace("field '", f"field '{where}", 1)
            raise ValidationError(exc.code, message) from None
        assert product_id is not None
        out.append(Item(product_id, quantity, unit_price, currency))
    return tuple(out)


def _quantity(line: dict[str, Any]) -> int:
    raw = line.get("quantity")
    if raw is None:
        raise ValidationError("missing_field", "field 'quantity' is required")
    # JSON Schema's integer: 3 or 3.0, never true (README "Inputs").
    if isinstance(raw, bool) or not (
        isinstance(raw, int) or (isinstance(raw, float) and raw.is_integer())
    ):
        raise ValidationError(
            "invalid_field", f"field 'quantity' must be an integer, got {str(raw)[:32]!r}"
        )
    if not 1 <= raw <= MAX_QUANTITY:
        raise ValidationError(
            "invalid_field", f"field 'quantity' must be 1 to {MAX_QUANTITY:,}, got {str(raw)[:32]}"
        )
    return int(raw)
