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
    CONSENT_OPTED_IN,
    CONSENT_OPTED_OUT,
    KIND_CONSENT,
    KIND_PURCHASE,
    KIND_SESSION,
    SCHEMA_CONSENT,
    SCHEMA_PURCHASE,
    SCHEMA_SESSION,
    Event,
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
_KIND_BY_SCHEMA = {
    SCHEMA_PURCHASE: KIND_PURCHASE,
    SCHEMA_SESSION: KIND_SESSION,
    SCHEMA_CONSENT: KIND_CONSENT,
}


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


def _amount(obj: dict[str, Any]) -> str:
    """The order value as an exact plain decimal string (README "Inputs").

    A JSON number must be 0 or lie in [1e-15, 1e16).  A string must be a plain
    decimal of ASCII digits: at most 16 digits before the point and 15 after,
    no sign, exponent, underscore, space or other digits.
    """
    if "amount" not in obj or obj["amount"] is None:
        raise ValidationError("missing_field", "field 'amount' is required for purchase/1")
    raw = obj["amount"]
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValidationError(
            "invalid_field", "field 'amount' must be a number or a decimal string"
        )
    if isinstance(raw, str):
        if not _AMOUNT_TEXT.fullmatch(raw):
            if raw.startswith("-"):
                raise ValidationError(
                    "invalid_field", "field 'amount' must be a finite number >= 0, unsigned"
                )
            raise ValidationError(
                "invalid_field",
                "field 'amount' is not a decimal number: plain ASCII digits "
                f"(at most {MAX_AMOUNT_INTEGER_DIGITS} before the point and "
                f"{MAX_AMOUNT_FRACTION_DIGITS} after, no sign), got {raw[:32]!r}",
            )
        value = Decimal(raw)
    else:
        if isinstance(raw, float) and not math.isfinite(raw):
            raise ValidationError("invalid_field", "field 'amount' must be a finite number >= 0")
        if raw < 0:
            raise ValidationError("invalid_field", "field 'amount' must be a finite number >= 0")
        if raw >= 10**MAX_AMOUNT_INTEGER_DIGITS or (0 < raw < MIN_AMOUNT):
            raise ValidationError("invalid_field", "field 'amount' is out of range")
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
        raise ValidationError(
            "unknown_schema", "field 'schema' is required (purchase/1, session/1 or consent/1)"
        )
    kind = _KIND_BY_SCHEMA.get(schema) if isinstance(schema, str) else None
    if kind is None:
        raise ValidationError(
            "unknown_schema",
            f"unknown schema {str(schema)[:40]!r}; expected purchase/1, session/1 or consent/1",
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
    event = _event(obj, kind, event_id, customer_id, occurred, channel)
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
    kind: str,
    event_id: str,
    customer_id: str,
    occurred: int,
    channel: str | None,
) -> Event:
    """The kind's own fields checked, the event built."""
    if kind == KIND_PURCHASE:
        order_id = _text(obj, "order_id", required=True, limit=MAX_ID_LENGTH)
        amount = _amount(obj)
        currency = _text(obj, "currency", required=True, limit=3)
        if currency is None or not _CURRENCY.match(currency):
            raise ValidationError(
                "invalid_field",
                f"field 'currency' must be an ISO 4217 code like EUR, got {currency!r}",
            )
        return Event(
            kind,
            event_id,
            customer_id,
            occurred,
            order_id=order_id,
            amount=amount,
            currency=currency,
            channel=channel,
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
