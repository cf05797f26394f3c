"""What the processors and the Faust shell agree on: the records a processor hands
over to send (:class:`Output`) and the key layout of the customer table's rows.

The processors (:mod:`agents.ingest`, :mod:`agents.customer`) write these; the
shell, the read model and the table tools in ``streams`` read them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Output:
    """One record to send: topic, key and the serialised value."""

    topic: str
    key: str
    value: bytes


# One table holds both kinds of record; the prefixes keep any customer id (which
# may be any string) from ever colliding with a partition's clock.
CUSTOMER_KEY_PREFIX = "c/"
CLOCK_KEY_PREFIX = "clock/"
# A customer's pending events beyond its row's share: "p/<slot>/<customer_id>"
# (agents.core.pending; docs/budget.md "Byte budget").
PENDING_KEY_PREFIX = "p/"
# What an overflow row no longer named by its customer's row holds.
EMPTY_CHUNK = b"[]"
# The rules versions a partition switched to (docs/rules.md "Changing rules"):
# "rules/<partition>" lists them (id, effective_at, applied_at), each text has a row
# of its own, "rules/<id>/<partition>", so that no row nears the changelog's 1 MiB
# message limit (a text is at most an input message, RETENTION_MAX_MESSAGE_BYTES).
# Like "clock/<partition>", each key ends with its partition.
RULES_KEY_PREFIX = "rules/"


def pending_key(slot: int, customer_id: str) -> str:
    return f"{PENDING_KEY_PREFIX}{slot}/{customer_id}"


def rules_key(partition: int) -> str:
    return f"{RULES_KEY_PREFIX}{partition}"


def rules_text_key(partition: int, version_id: str) -> str:
    return f"{RULES_KEY_PREFIX}{version_id}/{partition}"
