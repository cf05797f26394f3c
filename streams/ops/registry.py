"""The rules topic: every published version of the rules file (docs/rules.md
"Changing rules").

The topic (``Topics.rules``, one partition, compacted, key = set id, @ effective time
after the seed) is the
registry of a deployment's rules: the seed, written by the first worker that
finds the topic empty, then each version ``retention rules publish`` wrote.  The
publisher, the worker's start-up check and ``GET /retention/rules`` read it; the
partitions switch on the ``control/rules`` markers that ``publish`` sends down
every input partition, never on this topic (a side topic read whenever it arrives
cannot switch every partition at the same point of its stream: docs/rules.md
"Changing rules").

The pure parts - the record, :class:`Registry`, :func:`startup` - take no
Kafka; :func:`read_registry`, :func:`write_version` and :func:`send_markers` are
the thin edge.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from agents.core.clock import clock_mode
from agents.core.rules import RulesError, default_text, load_rules
from agents.core.rules.history import CONTROL_RULES, Version, compatible, set_id
from agents.core.timeutil import MICROS_PER_SECOND, iso, parse_timestamp, to_micros
from streams.config import Config
from streams.feed.producer import _producer, input_partitions
from streams.kafka import ensure_topics
from streams.ops.offsets import read_all


class RegistryError(Exception):
    """A record of the rules topic that cannot be read (its text says why)."""


class StartRefused(Exception):
    """The worker must not start: its one line says why (docs/operations.md
    "Changing rules live")."""


@dataclass(frozen=True, slots=True)
class Published:
    """One record of the rules topic: a version and when it was published."""

    version: Version
    published_at: int

    @property
    def id(self) -> str:
        return self.version.id

    @property
    def effective_at(self) -> int | None:
        return self.version.effective_at


def published(text: str, effective_at: int | None, published_at: int) -> Published:
    """The record for a rules file's ``text`` (RulesError if it does not load);
    ``effective_at`` None: the seed."""
    rules = load_rules(text)
    version = Version(set_id(rules), rules, text, effective_at, effective_at)
    return Published(version, published_at)


def control_record(version: Version) -> dict[str, Any]:
    """The ``control/rules`` record of a version (schemas/control_rules.schema.json)."""
    at = version.effective_at
    return {
        "schema": CONTROL_RULES,
        "effective_at": None if at is None else iso(at),
        "rules": version.text,
        "version": version.id,
    }


def record_bytes(p: Published) -> bytes:
    """The rules topic's value: the control record with ``published_at``."""
    return orjson.dumps({**control_record(p.version), "published_at": iso(p.published_at)})


def marker_bytes(version: Version) -> bytes:
    """The marker sent down every input partition (effective_at required there)."""
    return orjson.dumps(control_record(version))


def _time(record: dict[str, Any], name: str) -> int | None:
    raw = record.get(name)
    if raw is None:
        return None
    try:
        return to_micros(parse_timestamp(raw))
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{name}: {exc}") from None


def parse_record(raw: bytes) -> Published:
    """A rules topic record; RegistryError says what is wrong with it."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RegistryError(f"not JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("schema") != CONTROL_RULES:
        raise RegistryError(f"not a {CONTROL_RULES} record")
    text = record.get("rules")
    if not isinstance(text, str):
        raise RegistryError("rules: not a text")
    try:
        p = published(text, _time(record, "effective_at"), _time(record, "published_at") or 0)
    except RulesError as exc:
        raise RegistryError(f"rules: {exc.problems[0]}") from None
    claimed = record.get("version")
    if claimed is not None and claimed != p.id:
        raise RegistryError(f"version {claimed} is not the text's set id {p.id}")
    return p


@dataclass(frozen=True, slots=True)
class Registry:
    """The published versions: the seed first, then by effective time."""

    versions: tuple[Published, ...] = ()

    @classmethod
    def of(cls, records: Iterable[Published]) -> Registry:
        """The registry of records in topic order.  The first seed wins (two workers
        that found the topic empty at once both wrote one; the loser's start-up
        check then compares its file with the winner's), a record of an id already
        read is the same version again (compaction keeps one per key)."""
        seed: Published | None = None
        later: dict[tuple[str, int], Published] = {}
        for p in records:
            if p.effective_at is None:
                seed = seed or p
            else:
                # A file may be published again at a later time (a rollback): one
                # version per (id, effective time), as the record's key says.
                later.setdefault((p.id, p.effective_at), p)
        ordered = sorted(later.values(), key=lambda p: p.effective_at or 0)
        return cls(((seed,) if seed else ()) + tuple(ordered))

    @property
    def empty(self) -> bool:
        return not self.versions

    @property
    def seed(self) -> Published | None:
        first = self.versions[0] if self.versions else None
        return first if first is not None and first.effective_at is None else None

    @property
    def later(self) -> tuple[Published, ...]:
        """The versions after the seed, by effective time."""
        return tuple(p for p in self.versions if p.effective_at is not None)

    @property
    def newest(self) -> Published | None:
        return self.versions[-1] if self.versions else None

    def find(self, version_id: str, effective_at: int | None) -> Published | None:
        """The version published with this id and effective time, if any."""
        return next(
            (p for p in self.versions if p.id == version_id and p.effective_at == effective_at),
            None,
        )


# --- the worker's start ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Startup:
    """What a starting worker runs: ``config`` with the registry's seed as its rules,
    ``versions`` the published ones after it; ``seed`` the record to publish first
    (the topic was empty), else None."""

    config: Config
    versions: tuple[Version, ...]
    seed: Published | None = None


def local_seed(config: Config, now: int) -> Published:
    """The seed this worker would publish: its rules file, or the default file."""
    return published(config.rules_text or default_text(), None, now)


def from_aliases(config: Config) -> bool:
    """The worker runs the default file edited by the deprecated aliases: a rule set
    with no text to publish (docs/rules.md "Environment aliases")."""
    if config.rules_file:
        return False
    return set_id(config.core.rule_set) != set_id(load_rules(default_text()))


def startup(config: Config, registry: Registry, now: int) -> Startup:
    """The start-up decision (docs/operations.md "Changing rules live").

    An empty registry: publish this worker's seed and run it.  Else refuse a
    ``RETENTION_RULES_FILE`` that is not the newest published version (one line
    naming both ids): the published sets are the source of truth, a local file only
    seeds an empty deployment.  Otherwise run the registry's seed as the configured
    rules, the later versions as the partitions' history.

    Rules from the deprecated aliases have no file text to publish: such a worker
    seeds nothing and runs its own rules on an empty registry, and is held to the
    newest version like a file on a published one."""
    aliases = from_aliases(config)
    if registry.empty:
        if aliases:
            return Startup(config, ())
        seed = local_seed(config, now)
        return Startup(_running(config, seed.version), (), seed)
    newest, seed_p = registry.newest, registry.seed
    assert newest is not None
    if config.rules_file or aliases:
        mine = set_id(config.core.rule_set)
        if mine != newest.id:
            name = (
                f"RETENTION_RULES_FILE={config.rules_file}"
                if config.rules_file
                else "the rules of the deprecated aliases"
            )
            fix = (
                f"publish it with retention rules publish {config.rules_file}, "
                "or unset RETENTION_RULES_FILE"
                if config.rules_file
                else "unset the aliases"
            )
            raise StartRefused(
                f"{name} is version {mine}, but the deployment runs version {newest.id} "
                f"({_when(newest)}); {fix}"
            )
    if seed_p is None:
        raise StartRefused(
            f"the rules topic {config.topics.rules} has versions but no seed; "
            "it was changed by hand: restore its seed record"
        )
    return Startup(_running(config, seed_p.version), tuple(p.version for p in registry.later))


def _when(p: Published) -> str:
    at = p.effective_at
    return "the seed" if at is None else f"effective {iso(at)}"


def _running(config: Config, seed: Version) -> Config:
    return replace(config, core=replace(config.core, rules=seed.rules), rules_text=seed.text)


# --- publishing ---------------------------------------------------------------------------


class PublishRefused(Exception):
    """``retention rules publish`` will not publish: each line of ``lines`` is one reason."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def plan_publish(
    config: Config,
    registry: Registry,
    text: str,
    *,
    effective: int | None,
    clocks: dict[int, int],
    now: int,
) -> Published:
    """The version to publish, or :class:`PublishRefused` with every reason not to
    (docs/operations.md "Changing rules live").  A version published before with
    the same effective time comes back as it is (the caller sends its markers again).

    ``text`` must load (RulesError otherwise); ``clocks`` are the customer
    partitions' stream clocks as the table's changelog holds them (micros, only the
    partitions that have one); ``effective`` None takes the default (wall mode: now +
    ``RETENTION_RULES_LEAD``; stream mode has none: the stream's time is not the
    publisher's)."""
    rules = load_rules(text)
    seed = registry.seed
    if seed is None:
        raise PublishRefused(
            [
                f"nothing is published on {config.topics.rules} yet: start a worker first "
                "(it publishes its rules as the seed), then publish the change"
            ]
        )
    version_id = set_id(rules)
    before = registry.find(version_id, effective) if effective is not None else None
    if before is not None:
        # The same command again: its markers go out again (an interrupted publish is
        # finished by repeating it); a partition ignores a version it knows.
        return before
    reasons = [str(problem) for problem in compatible(seed.version.rules, rules)]
    newest = registry.newest
    if newest is not None and newest.id == version_id:
        again = "" if newest.effective_at is None else f" (--effective {iso(newest.effective_at)})"
        reasons.append(
            f"version {version_id} is the newest published ({_when(newest)}): publishing it "
            f"again changes nothing; repeat its command{again} to send its markers again "
            "(an earlier version may be published again: a rollback)"
        )
    stream = clock_mode(config.clock).event_time
    if effective is None:
        if stream:
            raise PublishRefused(
                [*reasons, "stream clock mode: give --effective T, a time of the stream"]
            )
        effective = now + config.rules_lead
    last = registry.later[-1] if registry.later else None
    if last is not None and last.effective_at is not None and effective <= last.effective_at:
        reasons.append(
            f"effective {iso(effective)} is not after version {last.id}'s "
            f"{iso(last.effective_at)}: versions take effect in the order published"
        )
    if stream:
        passed = sorted((p, c) for p, c in clocks.items() if c >= effective)
        if passed:
            ahead, clock = max(passed, key=lambda pc: pc[1])
            reasons.append(
                f"effective {iso(effective)} is not after the stream clock of customer "
                f"partition {ahead} ({iso(clock)}; {len(passed)} partition"
                f"{'s' if len(passed) != 1 else ''} past it): give a later time"
            )
    elif effective < now + config.rules_lead:
        reasons.append(
            f"effective {iso(effective)} is less than RETENTION_RULES_LEAD "
            f"({config.rules_lead // MICROS_PER_SECOND} s) from now ({iso(now)}): a worker "
            "could pass it before the marker reaches it"
        )
    version = Version(version_id, rules, text, effective, effective)
    record = Published(version, now)
    size = max(len(record_bytes(record)), len(marker_bytes(version)))
    if size > config.max_message_bytes:
        reasons.append(
            f"the record is {size:,} bytes, over RETENTION_MAX_MESSAGE_BYTES "
            f"({config.max_message_bytes:,}): ingest would dead-letter the marker"
        )
    if reasons:
        raise PublishRefused(reasons)
    return record


# --- Kafka -------------------------------------------------------------------------------


async def ensure_rules_topic(config: Config) -> None:
    """Create the rules topic if missing (with the others: streams.kafka)."""
    await ensure_topics(config, (config.topics.rules,))


async def read_registry(config: Config) -> Registry:
    """The rules topic read to its end."""
    await ensure_rules_topic(config)
    records = await read_all(config, config.topics.rules)
    return Registry.of(parse_record(raw) for raw in records if raw)


async def adopt(config: Config, now: int) -> Startup:
    """The worker's start: read the rules topic, publish the seed if it is empty,
    and decide (:func:`startup`; StartRefused when the worker must not start)."""
    start = startup(config, await read_registry(config), now)
    if start.seed is None:
        return start
    await write_version(config, start.seed)
    # Two workers may have found the topic empty at once; the first seed written
    # wins, so decide again on what the topic holds now.
    return startup(config, await read_registry(config), now)


def record_key(p: Published) -> bytes:
    """The record's key on the compacted rules topic: the set id for the seed, the id
    and the effective time for a later version (a file may be published again)."""
    if p.effective_at is None:
        return p.id.encode()
    return f"{p.id}@{iso(p.effective_at)}".encode()


async def write_version(config: Config, p: Published) -> None:
    """Write one version to the rules topic (key: :func:`record_key`) and wait for it."""
    await ensure_rules_topic(config)
    producer = _producer(config)
    try:
        await producer.start()
        await producer.send_and_wait(
            config.topics.rules, record_bytes(p), key=record_key(p), partition=0
        )
    finally:
        await producer.stop()


async def send_markers(config: Config, version: Version) -> list[tuple[str, int]]:
    """Send the version's ``control/rules`` marker to every partition of every input
    topic and wait for each; returns the partitions written.  Ingest forwards it in
    order to every customer partition, so each switches at the same point of its
    stream (docs/rules.md "Changing rules")."""
    partitions = await input_partitions(config)
    value = marker_bytes(version)
    producer = _producer(config)
    try:
        await producer.start()
        key = version.id.encode()
        sent = [await producer.send(t, value, key=key, partition=p) for t, p in partitions]
        for ack in sent:
            await ack
    finally:
        await producer.stop()
    return partitions
