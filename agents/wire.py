"""The internal customer-keyed topic's format: how ingest and the leader write it
and how the customer processor reads it back, in one place.

The internal topic carries three kinds of message, all JSON objects:

* ``{"type": "ev", "src": "topic:partition", "ev": {...}}`` a validated event,
  keyed by customer_id;
* ``{"type": "adv", "src": "topic:partition", "until": micros}`` "advance the
  stream clock to T", forwarded by the ingest agent to every partition;
* ``{"type": "rules", "src": "topic:partition", "effective_at": micros, "rules":
  "<TOML>", "version": "<set id>"}`` a rules change, forwarded by the ingest agent to
  every partition exactly as ``adv`` is (docs/rules.md "Changing rules");
* ``{"type": "tick", "now": micros}`` a wall-clock tick from the leader;
* ``{"type": "bundle", "items": [message, ...]}`` several ``ev``/``adv``/``rules`` messages
  for one partition, in order: the ingest agent sends one bundle per customer
  partition per batch (keyed ``__bundle__``, partition = murmur2 of each event's
  customer_id, as a keyed send would pick), so the customer agent pays Faust's
  per-message cost once per bundle instead of once per event.

The reader checks an ``ev`` item as strictly as ingest's validation did, since
anything else on the topic would reach the engine and the table row.  An event's
customer zone rides as ``tz`` (a zone tzdata knows) and a name ingest ignored as
``tzx`` (at most 64 printable ASCII characters, for the lookup); both are left out when absent, so
an event without a zone is written exactly as before (docs/send-windows.md "The
customer's zone").
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson

from agents.core.timeutil import DEFAULT_MIN_EVENT_TIME, iso, to_micros
from agents.core.validation import (
    CODE_EARLY_TIMESTAMP,
    CODE_FUTURE_TIMESTAMP,
    MAX_CATEGORY_LENGTH,
    MAX_ID_LENGTH,
    MAX_QUANTITY,
    MAX_TEXT_LENGTH,
    SHOWN_ZONE,
)
from agents.core.zones import load_zone
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
    Event,
    Item,
)

# Dead-letter code for a message on the internal topic that cannot be read.
CODE_INTERNAL = "invalid_internal_message"

# --- writing ----------------------------------------------------------------------

BUNDLE = "bundle"
# A bundle stays well under the broker's default 1 MiB message limit.
BUNDLE_MAX_BYTES = 256 * 1024


def bundles(items: list[bytes], max_bytes: int = BUNDLE_MAX_BYTES) -> list[bytes]:
    """Serialised messages -> bundle records of at most ~``max_bytes`` each, in order."""
    out: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for item in items:
        if chunk and size + len(item) > max_bytes:
            out.append(b'{"type":"bundle","items":[' + b",".join(chunk) + b"]}")
            chunk, size = [], 0
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        out.append(b'{"type":"bundle","items":[' + b",".join(chunk) + b"]}")
    return out


def event_message(src: str, event: Event) -> bytes:
    """An ``ev`` message: a validated event from input partition ``src``."""
    return orjson.dumps({"type": "ev", "src": src, "ev": event.to_wire()})


def advance_message(src: str, until: int) -> bytes:
    """An ``adv`` message: input partition ``src`` advances the stream clock to ``until``."""
    return orjson.dumps({"type": "adv", "src": src, "until": until})


def rules_message(src: str, effective_at: int, text: str, version: str) -> bytes:
    """A ``rules`` message: input partition ``src`` carried a rules change."""
    return orjson.dumps(
        {
            "type": "rules",
            "src": src,
            "effective_at": effective_at,
            "rules": text,
            "version": version,
        }
    )


def tick_message(now: int) -> bytes:
    """A ``tick`` message: the leader's wall clock (wall-clock mode)."""
    return orjson.dumps({"type": "tick", "now": now})


# --- reading ----------------------------------------------------------------------


class BadMessage(Exception):
    """A message on the internal topic that becomes a dead letter.

    ``touched`` names a customer whose row must still be written (a refused event
    whose ids the engine remembered).
    """

    def __init__(self, message: str, code: str = CODE_INTERNAL, touched: str | None = None):
        super().__init__(message)
        self.code = code
        self.touched = touched


_WIRE_AMOUNT = re.compile(r"[0-9]{1,16}(?:\.[0-9]{1,31})?", re.ASCII)
_WIRE_CURRENCY = re.compile(r"[A-Z]{3}", re.ASCII)
_TIME_RANGE = (
    to_micros(datetime.min.replace(tzinfo=UTC)),
    to_micros(datetime.max.replace(tzinfo=UTC)),
)


def time_text(t: int) -> str:
    """``t`` (micros) in RFC 3339 when a datetime holds it, else as a number."""
    return iso(t) if _TIME_RANGE[0] <= t <= _TIME_RANGE[1] else f"{t} micros"[:40]


def read_wire_event(wire: Any, *, latest: int, earliest: int = DEFAULT_MIN_EVENT_TIME) -> Event:
    """An ``ev`` item's event, exactly in the shape ingest writes, or BadMessage.

    Ingest only forwards what :func:`agents.core.validation.validate` accepted; a
    message of any other shape on the internal topic (written by something else)
    would otherwise reach the engine and the table row with wrong types or sizes
    and crash the agent on every restart (docs/budget.md "Byte budget").  Amounts may
    carry up to 31 fraction digits: the plain form of a JSON number >= 1e-15.
    An event dated after ``latest`` (the wall clock + the future tolerance, the
    bound ingest applies) is a ``future_timestamp`` dead letter, one dated before
    ``earliest`` (RETENTION_MIN_EVENT_TIME, an absolute instant) an
    ``early_timestamp`` one (docs/time.md "Time").
    """
    if not isinstance(wire, dict):
        raise BadMessage(f"event must be an object, got {type(wire).__name__}")
    kind = wire.get("k")
    if not isinstance(kind, str) or kind not in _WIRE_FIELDS:
        raise BadMessage(f"unknown event kind {kind!r}"[:300])
    t = wire.get("t")
    if not isinstance(t, int) or isinstance(t, bool) or not _TIME_RANGE[0] <= t <= _TIME_RANGE[1]:
        raise BadMessage(f"event time must be integer micros in years 1-9999, got {t!r}"[:300])
    if t > latest:
        raise BadMessage(
            f"event time {iso(t)} is after {time_text(latest)} (now + the future tolerance)",
            CODE_FUTURE_TIMESTAMP,
        )
    if t < earliest:
        raise BadMessage(
            f"event time {iso(t)} is before the earliest accepted event time {iso(earliest)}",
            CODE_EARLY_TIMESTAMP,
        )
    channel = wire.get("ch")
    if channel is not None and (not isinstance(channel, str) or len(channel) > MAX_TEXT_LENGTH):
        raise BadMessage("event channel must be a string of at most 256 characters")
    fields: dict[str, str] = {}
    for name in ("e", "c", *_WIRE_FIELDS[kind]):
        value = wire.get(name)
        if not isinstance(value, str):
            raise BadMessage(f"event field {name!r} must be a string, got {value!r}"[:300])
        if name in _WIRE_IDS and not (0 < len(value) <= MAX_ID_LENGTH and value.strip()):
            raise BadMessage(
                f"event field {name!r} must be a non-blank id of at most 128 characters"
            )
        fields[name] = value
    zone, ignored = wire.get("tz"), wire.get("tzx")
    if zone is not None and load_zone(zone) is None:
        raise BadMessage(f"event timezone {str(zone)[:80]!r} is not a zone tzdata knows")
    if ignored is not None and not (isinstance(ignored, str) and SHOWN_ZONE.fullmatch(ignored)):
        raise BadMessage(
            "event ignored timezone must be at most 64 printable ASCII characters (no quote "
            "or backslash)"
        )
    if kind == KIND_PURCHASE and not (
        _WIRE_AMOUNT.fullmatch(fields["a"]) and _WIRE_CURRENCY.fullmatch(fields["cur"])
    ):
        raise BadMessage(f"purchase amount or currency malformed: {fields['a'][:40]!r}")
    if kind == KIND_CONSENT and fields["st"] not in (CONSENT_OPTED_OUT, CONSENT_OPTED_IN):
        raise BadMessage(f"consent status {fields['st'][:40]!r} unknown")
    if kind in _LIFECYCLE_KINDS or (kind == KIND_PURCHASE and ("cart" in wire or "it" in wire)):
        return _lifecycle_event(wire, kind, fields, t, channel, zone, ignored)
    return Event(
        kind,
        fields["e"],
        fields["c"],
        t,
        order_id=fields.get("o"),
        amount=fields.get("a"),
        currency=fields.get("cur"),
        session_id=fields.get("s"),
        status=fields.get("st"),
        channel=channel,
        timezone=zone,
        timezone_ignored=ignored,
    )


_WIRE_FIELDS = {
    KIND_PURCHASE: ("o", "a", "cur"),
    KIND_SESSION: ("s",),
    KIND_CONSENT: ("st",),
    KIND_SIGNUP: (),
    KIND_VIEW: ("p",),
    KIND_CART: ("cart", "act"),
    KIND_CANCEL: ("o", "act", "a", "cur"),
}
_WIRE_IDS = frozenset({"e", "c", "o", "s", "p", "cart"})
_LIFECYCLE_KINDS = frozenset({KIND_SIGNUP, KIND_VIEW, KIND_CART, KIND_CANCEL})
_ACTIONS = {
    KIND_CART: (CART_UPDATED, CART_CHECKOUT, CART_EMPTIED),
    KIND_CANCEL: (CANCEL_FULL, CANCEL_PARTIAL),
}


def _lifecycle_event(
    wire: dict[str, Any],
    kind: str,
    fields: dict[str, str],
    t: int,
    channel: str | None,
    zone: str | None,
    ignored: str | None,
) -> Event:
    """An event of the lifecycle's contracts (docs/lifecycle.md "Inputs"), or a
    purchase/2, checked as strictly as ingest wrote it."""
    if kind in _ACTIONS and fields["act"] not in _ACTIONS[kind]:
        raise BadMessage(f"{kind} action {fields['act'][:40]!r} unknown")
    if kind == KIND_CANCEL and not (
        _WIRE_AMOUNT.fullmatch(fields["a"]) and _WIRE_CURRENCY.fullmatch(fields["cur"])
    ):
        raise BadMessage(f"cancellation amount or currency malformed: {fields['a'][:40]!r}")
    category = price = currency = cart_id = None
    items: tuple[Item, ...] | None = None
    if kind == KIND_VIEW:
        category = wire.get("cat")
        if category is not None and not (
            isinstance(category, str) and 0 < len(category) <= MAX_CATEGORY_LENGTH
        ):
            raise BadMessage("view category must be a string of 1 to 128 characters")
        price, currency = wire.get("pr"), wire.get("cur")
        if price is not None and not (isinstance(price, str) and _WIRE_AMOUNT.fullmatch(price)):
            raise BadMessage(f"view price malformed: {str(price)[:40]!r}")
        if (price is not None and currency is None) or (
            currency is not None
            and not (isinstance(currency, str) and _WIRE_CURRENCY.fullmatch(currency))
        ):
            raise BadMessage(f"view currency malformed: {str(currency)[:40]!r}")
    if kind == KIND_PURCHASE:
        cart_id = wire.get("cart")
        if cart_id is not None and not (
            isinstance(cart_id, str) and 0 < len(cart_id) <= MAX_ID_LENGTH and cart_id.strip()
        ):
            raise BadMessage("purchase cart id must be a non-blank id of at most 128 characters")
        if wire.get("it") is not None:
            items = _wire_items(wire["it"], MAX_ORDER_ITEMS)
    elif kind == KIND_CART:
        cart_id = fields["cart"]
        items = _wire_items(wire.get("it"), MAX_CART_ITEMS)
        # What ingest writes: an emptied snapshot without items, every other with some.
        if (fields["act"] == CART_EMPTIED) != (not items):
            raise BadMessage(f"cart action {fields['act']!r} with {len(items)} items")
    return Event(
        kind,
        fields["e"],
        fields["c"],
        t,
        order_id=fields.get("o"),
        amount=fields.get("a"),
        currency=fields.get("cur", currency),
        channel=channel,
        timezone=zone,
        timezone_ignored=ignored,
        product_id=fields.get("p"),
        category=category,
        price=price,
        cart_id=cart_id,
        action=fields.get("act"),
        items=items,
    )


def _wire_items(raw: Any, limit: int) -> tuple[Item, ...]:
    """A cart's or an order's lines as ingest writes them: at most ``limit``
    ``[product_id, quantity, unit_price, currency]``."""
    if not isinstance(raw, list) or len(raw) > limit:
        raise BadMessage(f"event items must be a list of at most {limit} lines")
    out = []
    for line in raw:
        if not (isinstance(line, list) and len(line) == 4):
            raise BadMessage("an item must be [product_id, quantity, unit_price, currency]")
        product_id, quantity, unit_price, currency = line
        if not (
            isinstance(product_id, str)
            and 0 < len(product_id) <= MAX_ID_LENGTH
            and product_id.strip()
            and isinstance(quantity, int)
            and not isinstance(quantity, bool)
            and 1 <= quantity <= MAX_QUANTITY
            and isinstance(unit_price, str)
            and _WIRE_AMOUNT.fullmatch(unit_price)
            and isinstance(currency, str)
            and _WIRE_CURRENCY.fullmatch(currency)
        ):
            raise BadMessage(f"item malformed: {str(line)[:80]!r}")
        out.append(Item(product_id, quantity, unit_price, currency))
    return tuple(out)


def read_wire_rules(msg: dict[str, Any]) -> tuple[str, int, str, str]:
    """A ``rules`` message's (src, effective_at, text, version), exactly in the shape
    ingest writes, or BadMessage; the text is checked by its reader."""
    src, at, text, version = (msg.get(k) for k in ("src", "effective_at", "rules", "version"))
    if not isinstance(src, str):
        raise BadMessage(f"rules from unknown source {src!r}"[:300])
    if (
        not isinstance(at, int)
        or isinstance(at, bool)
        or not _TIME_RANGE[0] <= at <= _TIME_RANGE[1]
    ):
        raise BadMessage(f"rules 'effective_at' must be integer micros, got {at!r}"[:300])
    if not isinstance(text, str) or not isinstance(version, str):
        raise BadMessage("rules message without its 'rules' text and 'version'")
    return src, at, text, version


def bundle_items(bundle: dict[str, Any]) -> list[Any]:
    items = bundle.get("items")
    if not isinstance(items, list):
        raise BadMessage("bundle without an 'items' list")
    return items
