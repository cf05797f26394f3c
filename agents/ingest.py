"""The ingest step: raw input bytes -> validated event re-keyed by customer, or a
dead letter.  Nothing here knows Faust; the agent in :mod:`agents.faust_agents` only
moves bytes between topics and this class.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import orjson

from agents.contract import Output
from agents.core.clock import WallClock, source_name
from agents.core.rules import RulesError, load_rules
from agents.core.rules.history import CONTROL_RULES, set_id
from agents.core.timeutil import DEFAULT_MIN_EVENT_TIME, iso, parse_timestamp, to_micros
from agents.core.validation import ValidationError, early_error, validate
from agents.messages import CODE_INVALID_RULES, CONTROL_ADVANCE, dead_letter_record, dumps
from agents.messages import MAX_ORIGINAL_BYTES as MAX_ORIGINAL_BYTES
from agents.wire import advance_message, event_message, rules_message

log = logging.getLogger(__name__)

# A record batch the consumer could not decode (README "Inputs"): one dead letter
# for the whole batch, since its messages cannot be told apart.
CODE_UNDECODABLE_BATCH = "undecodable_batch"
# How far ahead a rules change may be scheduled: unlike an event or a clock marker,
# a change is announced ahead of its time (docs/rules.md "Changing rules").
RULES_HORIZON = 366 * 86400 * 1_000_000


class IngestProcessor:
    def __init__(
        self,
        *,
        customer_topic: str,
        dlq_topic: str,
        customer_partitions: int,
        max_message_bytes: int,
        future_tolerance: int,
        wall_clock: WallClock,
        min_event_time: int = DEFAULT_MIN_EVENT_TIME,
    ) -> None:
        self.customer_topic = customer_topic
        self.dlq_topic = dlq_topic
        self.customer_partitions = customer_partitions
        self.max_message_bytes = max_message_bytes
        self.future_tolerance = future_tolerance
        self.wall_clock = wall_clock
        # The earliest accepted event time, an absolute instant (docs/time.md "Time").
        self.min_event_time = min_event_time
        self.dead_letters: Counter[str] = Counter()
        # Accepted timestamps in a form a later version refuses (README "Inputs").
        self.lenient_timestamps: Counter[str] = Counter()
        # Accepted events whose timezone was ignored: not a zone tzdata knows
        # (docs/send-windows.md "The customer's zone").
        self.invalid_timezones = 0
        self.accepted = 0
        self.markers = 0
        self.rules_markers = 0

    def handle(
        self, raw: bytes | None, topic: str, partition: int, offset: int
    ) -> tuple[list[Output], list[tuple[int, bytes]]]:
        """Returns (keyed outputs, per-partition control messages)."""
        src = source_name(topic, partition)
        if raw is None:
            # A tombstone: Kafka's "delete this key", which carries no event.
            return self._letter(
                b"",
                ValidationError("invalid_json", "the message has no value (a tombstone)"),
                topic,
                partition,
                offset,
            ), []
        lenient_before = self.lenient_timestamps.total()
        try:
            event = validate(
                raw,
                now=self.wall_clock(),
                max_bytes=self.max_message_bytes,
                future_tolerance=self.future_tolerance,
                lenient=self.lenient_timestamps,
                earliest=self.min_event_time,
            )
        except ValidationError as exc:
            if exc.code == "unknown_schema" and b"control/" in raw:
                try:
                    controls = self._control(raw, src)
                except ValidationError as bad:
                    exc = bad
                else:
                    if controls is not None:
                        return [], controls
            return self._letter(raw, exc, topic, partition, offset), []
        self.accepted += 1
        if event.timezone_ignored is not None:
            self.invalid_timezones += 1
        if self.lenient_timestamps.total() != lenient_before:
            self._warn_lenient(f"{topic}:{partition}:{offset}")
        payload = event_message(src, event)
        return [Output(self.customer_topic, event.customer_id, payload)], []

    def _warn_lenient(self, position: str) -> None:
        """Log the 1st, 10th, 100th... lenient timestamp: a producer to fix, not a flood."""
        total = self.lenient_timestamps.total()
        if str(total).rstrip("0") == "1":
            forms = ", ".join(f"{k} {v}" for k, v in sorted(self.lenient_timestamps.items()))
            log.warning(
                "lenient timestamp accepted at %s (%d so far: %s): occurred_at must use 'T' "
                "and seconds 00-59 (RFC 3339 date-time); a later version dead-letters these "
                "as invalid_timestamp. See retention_lenient_timestamps_total.",
                position,
                total,
                forms,
            )

    def undecodable_batch(
        self, raw: bytes, topic: str, partition: int, first: int, last: int, error: str
    ) -> list[Output]:
        """The dead letter of a record batch the consumer could not decode: the
        offsets ``first``..``last`` of the partition, skipped; ``raw`` is the batch."""
        count = last - first + 1
        exc = ValidationError(
            CODE_UNDECODABLE_BATCH,
            f"the record batch at offsets {first}-{last} ({count} offsets) cannot be "
            f"decoded ({error}); its messages are skipped. original_base64 holds the "
            "batch as fetched: re-send its events uncompressed or with gzip, snappy, "
            "lz4 or zstd",
        )
        return self._letter(raw, exc, topic, partition, first, key_offsets=f"{first}-{last}")

    def _letter(
        self,
        raw: bytes,
        exc: ValidationError,
        topic: str,
        partition: int,
        offset: int,
        key_offsets: str | None = None,
    ) -> list[Output]:
        self.dead_letters[exc.code] += 1
        key = f"{topic}:{partition}:{key_offsets or offset}"
        return [Output(self.dlq_topic, key, self.dead_letter(raw, exc, topic, partition, offset))]

    def _control(self, raw: bytes, src: str) -> list[tuple[int, bytes]] | None:
        """A control record's per-partition messages; None if the record is no
        control record (its text merely mentions one: it keeps its own error).  The
        ``schema`` key may come anywhere, e.g. after a rules file's long text."""
        obj = orjson.loads(raw)  # a JSON object: validation got as far as its schema
        schema = obj.get("schema") if isinstance(obj, dict) else None
        if schema == CONTROL_ADVANCE:
            return self._advance(obj, src)
        if schema == CONTROL_RULES:
            return self._rules(obj, src)
        return None

    def _advance(self, obj: dict[str, Any], src: str) -> list[tuple[int, bytes]]:
        try:
            until = to_micros(parse_timestamp(obj.get("until")))
        except ValueError as exc:
            raise ValidationError("invalid_timestamp", f"control/advance: {exc}") from None
        limit = self.wall_clock() + self.future_tolerance
        if until > limit:
            # Bounded like any event time: an advance far into the future would
            # fire every ladder at once (docs/time.md "Time").
            raise ValidationError(
                "future_timestamp",
                f"control/advance: until {iso(until)} is after {iso(limit)} "
                "(now + the future tolerance)",
            )
        if until < self.min_event_time:
            # A clock before every accepted event decides nothing; refused like
            # an event dated there (docs/time.md "Time").
            raise early_error("control/advance: until", until, self.min_event_time)
        self.markers += 1
        payload = advance_message(src, until)
        return [(p, payload) for p in range(self.customer_partitions)]

    def _rules(self, obj: dict[str, Any], src: str) -> list[tuple[int, bytes]]:
        """A ``control/rules`` marker, checked, for every customer partition in order
        with its other items, as an advance is (docs/rules.md "Changing rules")."""
        effective_at = self._rules_time(obj.get("effective_at"))
        text = obj.get("rules")
        if not isinstance(text, str):
            raise _bad_rules("'rules' must be the rules file's TOML text")
        try:
            rules = load_rules(text)
        except RulesError as exc:
            raise _bad_rules(f"the rules do not load: {exc}") from None
        version = set_id(rules)
        declared = obj.get("version")
        if declared is not None and declared != version:
            raise _bad_rules(f"'version' {str(declared)[:40]!r} is not the rules' set id {version}")
        self.rules_markers += 1
        payload = rules_message(src, effective_at, text, version)
        return [(p, payload) for p in range(self.customer_partitions)]

    def _rules_time(self, value: object) -> int:
        """``effective_at``: RFC 3339, no earlier than the earliest accepted event time
        and at most :data:`RULES_HORIZON` past now."""
        try:
            t = to_micros(parse_timestamp(value))
        except ValueError as exc:
            raise _bad_rules(f"effective_at must be an RFC 3339 date-time ({exc})") from None
        if t < self.min_event_time:
            raise _bad_rules(
                f"effective_at {iso(t)} is before the earliest accepted event time "
                f"{iso(self.min_event_time)}"
            )
        limit = self.wall_clock() + RULES_HORIZON
        if t > limit:
            raise _bad_rules(
                f"effective_at {iso(t)} is after {iso(limit)} (a change is scheduled at "
                "most a year ahead)"
            )
        return t

    def dead_letter(
        self, raw: bytes, exc: ValidationError, topic: str, partition: int, offset: int
    ) -> bytes:
        record = dead_letter_record(
            raw,
            code=exc.code,
            message=exc.message,
            topic=topic,
            partition=partition,
            offset=offset,
            received_at=self.wall_clock(),
        )
        return dumps(record.to_dict())


def _bad_rules(why: str) -> ValidationError:
    return ValidationError(CODE_INVALID_RULES, f"control/rules: {why}")
