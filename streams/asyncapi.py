"""The AsyncAPI 3.0 contract of every topic, built from the configured topic names.

``schemas/asyncapi.json`` is this document for the default names (a unit test
keeps the two equal); ``retention schema asyncapi`` prints it with the effective
names (``RETENTION_TOPIC_PREFIX`` and friends), and a worker serves it at
``/retention/asyncapi``.  In the checked-in file, payloads reference the record
schemas beside it (``./purchase.schema.json``); what is printed and served is
:func:`published`, the same document with those schemas bundled under
``components/schemas``, because a reader of stdout or of the HTTP answer has no
files beside it.  The internal topic's messages are described inline (their wire
format is documented in ``agents/messages.py``).  See the README "Topics and schemas".
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from streams.config import Topics

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
CONTENT_TYPE = "application/json"

# channel id -> (Topics field, message id, payload schema file, Kafka key)
INPUTS = {
    "purchases": ("purchases", "purchase", "purchase.schema.json", "optional"),
    "sessions": ("sessions", "session", "session.schema.json", "optional"),
    "consents": ("consents", "consent", "consent.schema.json", "optional"),
    # The lifecycle's inputs (docs/lifecycle.md "Inputs").
    "signups": ("signups", "signup", "signup.schema.json", "optional"),
    "productViews": ("product_views", "productView", "product_view.schema.json", "optional"),
    "carts": ("carts", "cart", "cart.schema.json", "optional"),
    "orderCancellations": (
        "order_cancellations",
        "orderCancelled",
        "order_cancelled.schema.json",
        "optional",
    ),
}
# A channel's further versions of its contract: purchase/2 shares purchase/1's topic.
VERSIONS = {"purchases": {"purchase2": "purchase_2.schema.json"}}
OUTPUTS = {
    "nudges": ("nudges", "nudge", "nudge.schema.json", "customer_id"),
    "decisions": ("decisions", "decision", "decision.schema.json", "customer_id"),
    "outcomes": ("outcomes", "outcome", "outcome.schema.json", "customer_id"),
    "dlq": ("dlq", "deadLetter", "dead_letter.schema.json", "topic:partition:offset"),
}
CUSTOMER_EVENTS = "customerEvents"
# The rules registry (docs/rules.md "Changing rules"): its record is also a message of
# every input channel, the marker that switches the customer partitions.
RULES = "rules"
CONTROL_RULES = ("controlRules", "control_rules.schema.json")

DESCRIPTIONS = {
    "purchases": "Purchase events (purchase/1) from shops and apps.",
    "sessions": "Session events (session/1): any activity that is not an order.",
    "consents": "Consent changes (consent/1): opt-in / opt-out for nudges.",
    "purchase2": "Purchase events with the order's cart and lines (purchase/2).",
    "signups": "Sign-ups (signup/1): a customer created an account.",
    "productViews": "Product views (product_view/1): a product, its category and price.",
    "carts": "Cart snapshots (cart/1): every line of one cart after a change; newest wins.",
    "orderCancellations": "Order cancellations and refunds (order_cancelled/1), full or partial.",
    "nudges": "Delivered nudge triggers (nudge/1); deduplicate on trigger_id.",
    "decisions": "Every firing with its outcome, delivered or suppressed (decision/1).",
    "outcomes": "Conversions attributed to a delivered or holdout firing (outcome/1).",
    "dlq": "Dead letters (dead_letter/1): error code, message, source position, original bytes.",
}

KEY_SCHEMAS: dict[str, dict[str, Any]] = {
    "optional": {
        "type": ["string", "null"],
        "description": "Any key or none: the processor re-keys events by customer_id.",
    },
    "customer_id": {"type": "string", "description": "The record's customer_id."},
    "internal": {
        "type": "string",
        "description": (
            "customer_id for a single event; __bundle__ for a bundle (its partition is the "
            "murmur2 of its events' customer_id); __tick__ for a wall-clock tick."
        ),
    },
    "version": {
        "type": "string",
        "pattern": "^[0-9a-f]{12}$",
        "description": "The version (set id) of the rules text; the topic is compacted on it.",
    },
    "topic:partition:offset": {
        "type": "string",
        "pattern": "^.+:[0-9]+:[0-9]+$",
        "description": "Where the bad message was read: topic:partition:offset.",
    },
}

CONTROL_ADVANCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "until"],
    "properties": {
        "schema": {"const": "control/advance"},
        "until": {"type": "string", "format": "date-time"},
    },
    "description": "Advance the stream clock to `until` (written by `retention replay --until`).",
}


def _internal(kind: str, **properties: dict[str, Any]) -> dict[str, Any]:
    """An internal-topic message of this ``type``; every property is required."""
    return {
        "type": "object",
        "required": ["type", *properties],
        "properties": {"type": {"const": kind}, **properties},
    }


_EV = _internal(
    "ev",
    src={"type": "string", "description": "topic:partition it was read from"},
    ev={"type": "object", "description": "the validated input event"},
)
_ADV = _internal(
    "adv",
    src={"type": "string"},
    until={"type": "integer", "description": "stream clock, microseconds"},
)
_RULES = _internal(
    "rules",
    src={"type": "string"},
    effective_at={"type": "integer", "description": "declared effective time, microseconds"},
    rules={"type": "string", "description": "the rules file's TOML text"},
    version={"type": "string", "description": "its set id"},
)
# The internal topic's message kinds (agents/messages.py).
CUSTOMER_EVENT_SCHEMA: dict[str, Any] = {
    "oneOf": [
        _EV,
        _ADV,
        _RULES,
        _internal("tick", now={"type": "integer", "description": "wall clock, microseconds"}),
        _internal(
            "bundle",
            items={
                "type": "array",
                "items": {"oneOf": [_EV, _ADV, _RULES]},
                "description": "ev/adv/rules messages of one partition, in order",
            },
        ),
    ]
}


def _message(name: str, title: str, payload: dict[str, Any], key: str) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "contentType": CONTENT_TYPE,
        "payload": payload,
        "bindings": {
            "kafka": {"key": KEY_SCHEMAS[key], "bindingVersion": KAFKA_BINDING_VERSION},
        },
    }


def _channel(address: str, description: str, messages: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": address,
        "description": description,
        "messages": messages,
        "bindings": {"kafka": {"topic": address, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _operation(action: str, channel: str, messages: list[str], summary: str) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
        "summary": summary,
    }


def _title(channel_id: str) -> str:
    """``productViews`` -> ``ProductViews``, for an operation id."""
    return channel_id[0].upper() + channel_id[1:]


def _record_schema(schema_file: str) -> dict[str, Any]:
    """A record schema from the ``schemas`` package, as an AsyncAPI Schema Object.

    ``$schema`` and ``$id`` are left out: inside an AsyncAPI document the schema
    dialect is the document's, and an ``$id`` would move the base of any reference.
    """
    text = resources.files("schemas").joinpath(schema_file).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}


def published(topics: Topics | None = None) -> dict[str, Any]:
    """:func:`document` made self-contained: what `retention schema asyncapi` prints
    and ``/retention/asyncapi`` serves.

    Each record schema is copied under ``components/schemas/<message id>`` and the
    payloads point there, so the document validates with nothing beside it.
    """
    doc = document(topics)
    schemas: dict[str, Any] = {}
    for channel_id, (_, message_id, schema_file, _) in {**INPUTS, **OUTPUTS}.items():
        versions = {message_id: schema_file, **VERSIONS.get(channel_id, {})}
        for version_id, version_file in versions.items():
            schemas[version_id] = _record_schema(version_file)
            payload = doc["channels"][channel_id]["messages"][version_id]["payload"]
            payload["$ref"] = f"#/components/schemas/{version_id}"
    rules_id, rules_file = CONTROL_RULES
    schemas[rules_id] = _record_schema(rules_file)
    for channel_id in (*INPUTS, RULES):
        payload = doc["channels"][channel_id]["messages"][rules_id]["payload"]
        payload["$ref"] = f"#/components/schemas/{rules_id}"
    doc["components"] = {"schemas": schemas}
    return doc


def document(topics: Topics | None = None, *, schema_base: str = "./") -> dict[str, Any]:
    """The AsyncAPI 3.0 document for ``topics`` (default names when None).

    Operations are the processor's: it *receives* the inputs (published by shops
    and apps), *sends* the outputs (consumed by messaging services, analytics and
    ops), and both sends and receives its internal topic.
    """
    topics = topics or Topics()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    rules_id, rules_file = CONTROL_RULES
    for channel_id, (field, message_id, schema_file, key) in {**INPUTS, **OUTPUTS}.items():
        address = getattr(topics, field)
        payload = {"$ref": f"{schema_base}{schema_file}"}
        messages = {message_id: _message(message_id, DESCRIPTIONS[channel_id], payload, key)}
        for version_id, version_file in VERSIONS.get(channel_id, {}).items():
            messages[version_id] = _message(
                version_id,
                DESCRIPTIONS[version_id],
                {"$ref": f"{schema_base}{version_file}"},
                key,
            )
        if channel_id in INPUTS:
            messages["controlAdvance"] = _message(
                "controlAdvance", "Stream clock marker", CONTROL_ADVANCE_SCHEMA, "optional"
            )
            messages[rules_id] = _message(
                rules_id,
                "Rules change marker (`retention rules publish`)",
                {"$ref": f"{schema_base}{rules_file}"},
                "optional",
            )
        channels[channel_id] = _channel(address, DESCRIPTIONS[channel_id], messages)
        if channel_id in INPUTS:
            operations[f"receive{_title(channel_id)}"] = _operation(
                "receive",
                channel_id,
                list(messages),
                f"The ingest agent validates {address}; producers: shops, apps, "
                "`retention produce` / `replay`.",
            )
        else:
            operations[f"send{_title(channel_id)}"] = _operation(
                "send",
                channel_id,
                [message_id],
                f"The customer agent publishes {address}; consumers: messaging services, "
                "analytics, ops.",
            )
    channels[RULES] = _channel(
        topics.rules,
        "The published rules versions (control/rules), one partition, compacted on the "
        "version: the registry that `retention rules publish`, a starting worker and "
        "/retention/rules read.",
        {
            rules_id: _message(
                rules_id,
                "A published rules version",
                {"$ref": f"{schema_base}{rules_file}"},
                "version",
            )
        },
    )
    operations["sendRules"] = _operation(
        "send",
        RULES,
        [rules_id],
        "The first worker of a deployment publishes its rules as the seed when the topic is "
        "empty; `retention rules publish` writes the later versions.",
    )
    operations["receiveRules"] = _operation(
        "receive",
        RULES,
        [rules_id],
        "A starting worker reads every published version (their markers on the input "
        "topics switch the partitions).",
    )
    channels[CUSTOMER_EVENTS] = _channel(
        topics.customer_events,
        "Internal: validated events per customer partition (single or bundled), "
        "stream-clock markers and wall-clock ticks.",
        {
            "customerEvent": _message(
                "customerEvent", "Internal customer event", CUSTOMER_EVENT_SCHEMA, "internal"
            )
        },
    )
    operations["sendCustomerEvents"] = _operation(
        "send",
        CUSTOMER_EVENTS,
        ["customerEvent"],
        "The ingest agent re-keys validated events (and clock messages) by customer_id.",
    )
    operations["receiveCustomerEvents"] = _operation(
        "receive",
        CUSTOMER_EVENTS,
        ["customerEvent"],
        "The customer agent keeps each customer's state and fires the rules.",
    )
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "retention-processor",
            "version": "1.0.0",
            "description": (
                "Every Kafka topic of the retention processor: input events, nudge triggers, "
                "decisions, outcomes, dead letters, the rules versions and the internal "
                "customer-keyed topic. "
                "Generated by `retention schema asyncapi` (effective topic names)."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
    }
