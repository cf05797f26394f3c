"""The records sent on the output topics (decisions, outcomes, dead letters).

The internal topic's format lives in :mod:`agents.wire`.  Input topics
additionally accept the control records ``{"schema": "control/advance",
"until": "<RFC 3339>"}`` written by ``retention replay --until`` and
``{"schema": "control/rules", "effective_at": "<RFC 3339>", "rules": "<TOML>"}``
written by ``retention rules publish`` (schemas/control_rules.schema.json).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from datetime import timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from agents.core.guardrails import OUTCOME_DELIVERED
from agents.core.ids import trigger_id_at
from agents.core.timeutil import EPOCH, TIME_MAX, TIME_MIN, duration_record, iso
from agents.core.zones import load_zone
from schemas.records import DeadLetter, Decision, Outcome, SourcePosition

if TYPE_CHECKING:
    from agents.core.emissions import Firing

CONTROL_ADVANCE = "control/advance"
# Dead-letter code of a control/rules marker that cannot be adopted: ingest's checks
# and the customer agent's compatibility with the seed (docs/rules.md "Changing rules").
CODE_INVALID_RULES = "invalid_rules"

PREVIEW_CHARS = 512
# Kept whole up to this size; a larger message keeps its head, length and hash, so
# that the dead letter itself (base64 is 4/3 of the bytes) stays within the output
# budget of agents/core/budget.py (docs/budget.md "Byte budget").
MAX_ORIGINAL_BYTES = 160 * 1024
# The error text is cut too: it may quote a field of any length.
MAX_ERROR_CHARS = 1024


def decision_record(
    f: Firing, *, fired_at: int | str, clock: str, outcome: str, holdout: bool
) -> Decision:
    """The ``decision/1`` record of a firing; ``nudge_dict()`` is its ``nudge/1``.

    ``fired_at`` is micros or, when the caller formats it once for many firings,
    its ``iso`` text.
    """
    anchor = iso(f.anchor_at)  # formatted once: the trigger id and the reason use it too
    return Decision(
        trigger_id=trigger_id_at(f.customer_id, f.rule, f.step, anchor, f.key),
        customer_id=f.customer_id,
        rule=f.rule,
        step=f.step,
        threshold=duration_record(f.threshold),
        anchor_at=anchor,
        due_at=iso(f.due_at),
        fired_at=fired_at if isinstance(fired_at, str) else iso(fired_at),
        holdout=holdout,
        reason=f.reason(anchor),
        context=f.context,
        delivered=outcome == OUTCOME_DELIVERED,
        outcome=outcome,
        clock=clock,
        rule_version=f.rule_version,
        channel=f.channel,
        # Set only when the rule has a window (f.zone is then its zone).
        send_at=None if f.send_at is None else iso(f.send_at),
        send_zone=f.zone,
        send_local=None if f.send_at is None or f.zone is None else local_iso(f.send_at, f.zone),
    )


@functools.lru_cache(maxsize=4096)
def local_iso(at: int, zone: str) -> str:
    """The local wall time of instant ``at`` (micros) in ``zone``, RFC 3339 to the
    second with its UTC offset: ``2026-03-29T09:00:00+02:00`` (docs/send-windows.md
    "Outputs").  Cached: firings piling onto one opening share it.

    The zone comes from the pinned tzdata (agents.core.zones) like the window's own
    check, so the local time shown is the one the window was judged in.  RFC 3339
    offsets are whole minutes; a historical local mean time (e.g. +00:19:32) is
    shown with its offset cut to the minute and the wall time to match, so the
    text still names the same instant.  An instant whose local time would leave
    the years 1..9999 is shown in UTC.
    """
    utc = EPOCH + timedelta(microseconds=min(max(at, TIME_MIN), TIME_MAX))
    utc = utc.replace(microsecond=0)
    tz = load_zone(zone)
    try:
        offset = (utc.astimezone(tz) if tz is not None else utc).utcoffset() or timedelta(0)
        minutes = int(offset.total_seconds() / 60)  # toward zero
        local = utc.astimezone(timezone(timedelta(minutes=minutes)))
    except OverflowError:
        local = utc
    return local.isoformat()


class AttributedConversion(Protocol):
    """A conversion as both the engine and the offline reference describe it
    (``agents.core.emissions.Conversion``, ``agents.offline.reference.Conversion``);
    times in micros."""

    @property
    def trigger_id(self) -> str: ...
    @property
    def customer_id(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def step(self) -> int: ...
    @property
    def group(self) -> str: ...
    @property
    def anchor_at(self) -> int: ...
    @property
    def due_at(self) -> int: ...
    @property
    def converted_at(self) -> int: ...
    @property
    def order_id(self) -> str: ...
    @property
    def hours_to_convert(self) -> float: ...
    @property
    def amount(self) -> str | None: ...
    @property
    def currency(self) -> str | None: ...


def outcome_record(c: AttributedConversion, *, attribution_window: int) -> Outcome:
    """A conversion on retention.outcomes: once per firing, delivered or holdout.

    A conversion that names the firing's ``send_at`` (its rule has a window:
    ``agents.core.emissions.Conversion.send_at``) carries it on the record."""
    # Not in the protocol: a conversion without windows need not know the field.
    send_at: int | None = getattr(c, "send_at", None)
    return Outcome(
        trigger_id=c.trigger_id,
        customer_id=c.customer_id,
        rule=c.rule,
        step=c.step,
        group=c.group,
        anchor_at=iso(c.anchor_at),
        due_at=iso(c.due_at),
        converted_at=iso(c.converted_at),
        order_id=c.order_id,
        hours_to_convert=c.hours_to_convert,
        attribution_window=duration_record(attribution_window),
        send_at=None if send_at is None else iso(send_at),
        amount=c.amount,
        currency=c.currency,
    )


def dead_letter_record(
    raw: bytes,
    *,
    code: str,
    message: str,
    topic: str,
    partition: int,
    offset: int,
    received_at: int,
) -> DeadLetter:
    """A ``dead_letter/1`` record: the original bytes, where they came from and why."""
    text: str | None
    try:
        text = raw[:PREVIEW_CHARS].decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return DeadLetter(
        error_code=code,
        error=message[:MAX_ERROR_CHARS],
        source=SourcePosition(topic, partition, offset),
        original_base64=base64.b64encode(raw[:MAX_ORIGINAL_BYTES]).decode("ascii"),
        original_size=len(raw),
        original_truncated=len(raw) > MAX_ORIGINAL_BYTES,
        original_sha256=hashlib.sha256(raw).hexdigest(),
        original_text=text,
        received_at=iso(received_at),
    )


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)
