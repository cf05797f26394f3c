"""The one typed configuration object.

Sources, lowest precedence first: built-in defaults, the local stack's
``stack.json`` (written by ``retention local up``), a TOML file named by
``RETENTION_CONFIG``, then ``RETENTION_*`` environment variables.  A bad value
raises :class:`ConfigError` naming the variable, at start-up.

Each setting is declared once, in :data:`SETTINGS`: its key (the TOML name; the
environment variable is ``RETENTION_`` + the key in upper case), where its value
lives in :class:`Config`, its kind (how it is parsed, validated and shown) and its
help text.  Its default is the dataclass field's (``Config``, ``KafkaSecurity`` or
the core's ``CoreSettings``).  Loading, :meth:`Config.describe`, ``retention config
--list`` and docs/configuration.md's table (checked by tests/unit/test_readme.py)
are derived from that one list.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

from agents.core.budget import MAX_FIRINGS, firing_memory
from agents.core.reports import ReportSettings
from agents.core.settings import CoreSettings
from agents.core.state import MAX_ORDER_TIMES
from agents.core.timeutil import (
    DEFAULT_MIN_EVENT_TIME,
    MICROS_PER_SECOND,
    format_duration,
    iso,
    parse_duration,
    parse_timestamp,
    to_micros,
)

# Refused at start-up: under kill -9 it lost decisions with faust-streaming 0.15.3
# (docs/design.md, "exactly_once: refused").
EXACTLY_ONCE_REFUSED = (
    "RETENTION_PROCESSING_GUARANTEE=exactly_once is refused: with faust-streaming 0.15.3 "
    "it lost decisions when a worker was killed (-9) and restarted "
    '(see docs/design.md, "exactly_once: refused"). Use at_least_once (the default): '
    "a crash can only repeat a decision, never lose one, and a repeat carries the same "
    "trigger_id, so deduplicate on trigger_id downstream."
)
# Steps per ladder: each step is a key in the customer row's counts, so the
# row stays small (docs/budget.md "Byte budget").
MAX_LADDER_STEPS = 10
# Kafka's limit on a topic name; the prefix goes before the longest name we use.
MAX_TOPIC_NAME = 249


DEFAULT_APP_ID = "retention-processor"
# Messaging services read the default deployment's hashes under this prefix
# (schemas/readmodel.md); any other app id gets a prefix of its own.
DEFAULT_REDIS_PREFIX = "retention:"


def default_redis_prefix(app_id: str) -> str:
    """The Redis key prefix of a deployment that does not set one: ``retention:`` for
    the default app id, ``<app id>:`` for any other, so that a demo, a replay or a
    second deployment never overwrites another one's read model."""
    return DEFAULT_REDIS_PREFIX if app_id == DEFAULT_APP_ID else f"{app_id}:"


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the setting."""


def default_home() -> Path:
    """Where the local stack keeps its jar cache, data and run files."""
    env = os.environ.get("RETENTION_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "retention-processor"


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names; every one can be renamed, and a prefix isolates whole deployments."""

    purchases: str = "retention.purchases"
    sessions: str = "retention.sessions"
    consents: str = "retention.consents"
    nudges: str = "retention.nudges"
    decisions: str = "retention.decisions"
    outcomes: str = "retention.outcomes"
    dlq: str = "retention.dlq"
    # Internal: validated events re-keyed by customer_id, plus clock messages.
    customer_events: str = "retention.customer-events"

    def inputs(self) -> tuple[str, str, str]:
        return (self.purchases, self.sessions, self.consents)

    def outputs(self) -> tuple[str, ...]:
        return (self.nudges, self.decisions, self.outcomes, self.dlq)

    def all(self) -> tuple[str, ...]:
        return (*self.inputs(), *self.outputs(), self.customer_events)

    def resolve(self, name: str) -> str:
        """A short name (``nudges``, ``customer_events`` or ``customer-events``) or a full
        topic name, as the CLI takes it."""
        short = {f.name: getattr(self, f.name) for f in fields(Topics)}
        short.update({k.replace("_", "-"): v for k, v in short.items()})
        return str(short.get(name, name))


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """Client security for Kafka; PLAINTEXT on loopback by default."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting of a worker and the CLI; declared in :data:`SETTINGS` below."""

    kafka: str = "127.0.0.1:9092"
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    redis: str = "redis://127.0.0.1:6379/0"
    redis_password: str | None = None
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    app_id: str = DEFAULT_APP_ID
    topic_prefix: str = ""
    partitions: int = 4
    replication_factor: int = 1
    clock: str = "wall"
    tick_interval: float = 1.0
    # Messages per agent batch and the longest wait to fill one (docs/benchmarks.md).
    batch_max: int = 2000
    batch_within: float = 0.05
    producer_linger: float = 0.005
    producer_batch_bytes: int = 1 << 20
    commit_interval: float = 2.8
    processing_guarantee: str = "at_least_once"
    store: str = "rocksdb://"
    data_dir: Path = field(default_factory=lambda: default_home() / "data")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_advertised_host: str | None = None
    web_enabled: bool = True
    max_message_bytes: int = 64 * 1024
    future_tolerance: int = 86400 * MICROS_PER_SECOND
    # The earliest accepted event time: an absolute instant, never relative to
    # today (docs/time.md "Time").
    min_event_time: int = DEFAULT_MIN_EVENT_TIME
    # A stream clock that has not moved for this long while events wait on it
    # (never started: since its first event) is reported as stuck (docs/time.md "Time").
    clock_idle_timeout: int = 300 * MICROS_PER_SECOND
    # Stream mode, live: the leader advances every input partition to now - the
    # allowed lateness this often (0: off, the default, since it would make a
    # replayed history late; docs/time.md "Time", "Heartbeat").
    stream_heartbeat: int = 0
    core: CoreSettings = field(default_factory=CoreSettings)
    clv_lifetime_years: float = 2.0
    log_level: str = "info"

    @property
    def report(self) -> ReportSettings:
        """What the retention reports are parameterised by."""
        return ReportSettings(
            active_window=self.core.active_window, clv_lifetime_years=self.clv_lifetime_years
        )

    @property
    def topics(self) -> Topics:
        base = Topics()
        if not self.topic_prefix:
            return base
        return Topics(**{f.name: self.topic_prefix + getattr(base, f.name) for f in fields(Topics)})

    def describe(self) -> dict[str, Any]:
        """Every setting's effective value, secrets masked (`retention config`, logs)."""
        out: dict[str, Any] = {s.key: s.shown(s.value(self)) for s in SETTINGS}
        out["topics"] = {f.name: getattr(self.topics, f.name) for f in fields(Topics)}
        return out


# --- kinds: how a setting is parsed, validated and shown ---------------------------

T = TypeVar("T")


# Credentials a value may carry: a URL's user-info (up to its *last* '@', since an
# unencoded '@' in a password is common) or a password in its query string, which
# redis-py reads as a connection argument.
_USERINFO = re.compile(r"(?<=//).*@", re.DOTALL)
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:password|passwd|pass|pwd|secret|token)=)[^&#;]*")


def redact(text: str) -> str:
    """``text`` with a URL's credentials masked: ``redis://u:p@ss@h/0`` -> ``redis://***@h/0``."""
    if "//" in text:
        text = _USERINFO.sub("***@", text, count=1)
    elif "@" in text:
        text = "***@" + text.rsplit("@", 1)[1]
    return _SECRET_QUERY.sub(r"\1***", text)


def _quote(raw: Any) -> str:
    """The start of a bad value, for an error message (quoted, credentials masked
    first, never dumped whole)."""
    return repr(redact(str(raw))[:40])


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 150 else text[:150] + "..."


@dataclass(frozen=True, slots=True)
class Kind(Generic[T]):
    """How one kind of setting is read from TOML or the environment and shown.

    ``parse`` raises :class:`ConfigError` starting with the variable's name;
    ``show`` gives the JSON value `retention config` prints, which ``parse`` reads
    back to the same value.
    """

    def parse(self, name: str, raw: Any) -> T:
        raise NotImplementedError

    def show(self, value: T) -> Any:
        return value


@dataclass(frozen=True, slots=True)
class Text(Kind[str]):
    """Any string (the empty one too, unless ``nonempty``)."""

    nonempty: bool = False

    def parse(self, name: str, raw: Any) -> str:
        if not isinstance(raw, str):
            raise ConfigError(f"{name} must be a string, got {_quote(raw)}")
        if self.nonempty and not raw.strip():
            raise ConfigError(f"{name} must not be empty")
        return raw


@dataclass(frozen=True, slots=True)
class OptionalText(Kind[str | None]):
    """A string, or unset (None) when empty."""

    def parse(self, name: str, raw: Any) -> str | None:
        if not isinstance(raw, str):
            raise ConfigError(f"{name} must be a string, got {_quote(raw)}")
        return raw or None


@dataclass(frozen=True, slots=True)
class Secret(Kind[str | None]):
    """A password: parsed like :class:`OptionalText`, never shown."""

    def parse(self, name: str, raw: Any) -> str | None:
        if not isinstance(raw, str):
            raise ConfigError(f"{name} must be a string")  # the value is never quoted
        return raw or None

    def show(self, value: str | None) -> Any:
        return "***" if value else None


@dataclass(frozen=True, slots=True)
class TopicName(Kind[str]):
    """A part of Kafka topic names: ASCII letters, digits, '.', '_', '-'."""

    nonempty: bool = True

    def parse(self, name: str, raw: Any) -> str:
        value = Text(self.nonempty).parse(name, raw)
        if not re.fullmatch(r"[A-Za-z0-9._-]*", value):
            raise ConfigError(f"{name} may hold only letters, digits, '.', '_' and '-'")
        longest = max(len(t) for t in Topics().all())
        if len(value) + longest > MAX_TOPIC_NAME:
            raise ConfigError(
                f"{name} may be at most {MAX_TOPIC_NAME - longest} characters, got {len(value)}"
            )
        return value


N = TypeVar("N", int, float)


def _in_range(
    name: str, raw: Any, convert: type[N], what: str, refused: tuple[type, ...], lo: N, hi: N
) -> N:
    if isinstance(raw, refused):
        raise ConfigError(f"{name} must be {what}, got {_quote(raw)}")
    try:
        value = convert(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {what}, got {_quote(raw)}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {str(value)[:40]}")
    return value


@dataclass(frozen=True, slots=True)
class Whole(Kind[int]):
    """A whole number in [lo, hi] (not a TOML float or boolean)."""

    lo: int
    hi: int

    def parse(self, name: str, raw: Any) -> int:
        return _in_range(name, raw, int, "a whole number", (bool, float), self.lo, self.hi)


@dataclass(frozen=True, slots=True)
class Number(Kind[float]):
    """A number in [lo, hi] (NaN and infinities are out of range; not a boolean)."""

    lo: float
    hi: float

    def parse(self, name: str, raw: Any) -> float:
        return _in_range(name, raw, float, "a number", (bool,), self.lo, self.hi)


@dataclass(frozen=True, slots=True)
class Choice(Kind[str]):
    """One of a few words; ``refused`` maps a word to the error that explains why not."""

    choices: tuple[str, ...]
    refused: tuple[tuple[str, str], ...] = ()

    def parse(self, name: str, raw: Any) -> str:
        value = str(raw).strip()
        for word, reason in self.refused:
            if value == word:
                raise ConfigError(reason)
        if value not in self.choices:
            raise ConfigError(
                f"{name} must be one of {', '.join(self.choices)}; got {_quote(value)}"
            )
        return value


@dataclass(frozen=True, slots=True)
class Flag(Kind[bool]):
    """true/false, yes/no, on/off, 1/0."""

    def parse(self, name: str, raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {_quote(raw)}")


def _show_duration(micros: int) -> str:
    return format_duration(timedelta(microseconds=micros))


@dataclass(frozen=True, slots=True)
class Duration(Kind[int]):
    """An ISO 8601 duration, held in microseconds.

    ``zero_disables`` (for a window a feature needs) refuses a zero duration, saying
    what it would silently switch off.
    """

    zero_disables: str = ""

    def parse(self, name: str, raw: Any) -> int:
        # parse_duration is exact and refuses anything over 100 years, so no
        # duration (or an event time plus a few of them) can overflow a datetime.
        try:
            value = parse_duration(str(raw))
        except (ValueError, OverflowError) as exc:
            raise ConfigError(f"{name}: {_reason(exc)}") from None
        micros = (value.days * 86400 + value.seconds) * MICROS_PER_SECOND + value.microseconds
        if self.zero_disables and micros == 0:
            raise ConfigError(f"{name} must be longer than zero: {self.zero_disables}")
        return micros

    def show(self, value: int) -> Any:
        return _show_duration(value)


@dataclass(frozen=True, slots=True)
class Steps(Kind[tuple[int, ...]]):
    """A ladder: 1 to MAX_LADDER_STEPS positive, strictly increasing durations."""

    def parse(self, name: str, raw: Any) -> tuple[int, ...]:
        items = raw if isinstance(raw, list) else [s for s in str(raw).split(",") if s.strip()]
        if not items:
            raise ConfigError(f"{name} needs at least one duration, e.g. P7D,P14D,P30D")
        if len(items) > MAX_LADDER_STEPS:
            raise ConfigError(f"{name} may have at most {MAX_LADDER_STEPS} steps, got {len(items)}")
        steps = tuple(Duration().parse(name, s) for s in items)
        if any(s <= 0 for s in steps) or list(steps) != sorted(set(steps)):
            raise ConfigError(f"{name} must be positive and strictly increasing, got {_quote(raw)}")
        return steps

    def show(self, value: tuple[int, ...]) -> Any:
        return [_show_duration(s) for s in value]


@dataclass(frozen=True, slots=True)
class Instant(Kind[int | None]):
    """An RFC 3339 time with an offset, held in microseconds; unset when empty
    (unless ``required``)."""

    required: bool = False

    def parse(self, name: str, raw: Any) -> int | None:
        if raw == "":
            if self.required:
                raise ConfigError(f"{name} must be an RFC 3339 time such as 1970-01-01T00:00:00Z")
            return None
        try:
            return to_micros(parse_timestamp(str(raw)))
        except (ValueError, OverflowError) as exc:
            raise ConfigError(f"{name}: {_reason(exc)}") from None

    def show(self, value: int | None) -> Any:
        return None if value is None else iso(value)


@dataclass(frozen=True, slots=True)
class HostPorts(Kind[str]):
    """host:port[,host:port...]"""

    def parse(self, name: str, raw: Any) -> str:
        value = str(raw).strip()
        for part in value.split(","):
            host, _, port = part.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"{name} must be host:port[,host:port...], got {_quote(value)}")
        return value


@dataclass(frozen=True, slots=True)
class RedisUrl(Kind[str]):
    """A redis://, rediss:// or unix:// URL; a password in it is masked when shown."""

    def parse(self, name: str, raw: Any) -> str:
        value = str(raw)
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"{name} must be a redis://, rediss:// or unix:// URL, got {_quote(value)}"
            )
        return value

    def show(self, value: str) -> Any:
        return redact(value)


@dataclass(frozen=True, slots=True)
class Host(Kind[str | None]):
    """A host name or IP address to bind or advertise; unset when ``optional`` and empty.

    Anything else (a newline, a space, a URL) would reach Faust's web server or the
    URLs other workers route lookups to, and fail there or later."""

    optional: bool = False

    def parse(self, name: str, raw: Any) -> str | None:
        value = OptionalText().parse(name, raw)
        if value is None:
            if self.optional:
                return None
            raise ConfigError(f"{name} must not be empty")
        if not re.fullmatch(r"[A-Za-z0-9._:%\[\]-]+", value):
            raise ConfigError(f"{name} must be a host name or IP address, got {_quote(value)}")
        return value


@dataclass(frozen=True, slots=True)
class Directory(Kind[Path]):
    """A directory path; ``~`` is expanded."""

    def parse(self, name: str, raw: Any) -> Path:
        if not isinstance(raw, str) or not raw.strip():
            raise ConfigError(f"{name} must be a directory path, got {_quote(raw)}")
        return Path(raw).expanduser()

    def show(self, value: Path) -> Any:
        return str(value)


# --- the settings ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: ``key`` in TOML, ``RETENTION_<KEY>`` in the environment.

    ``path`` is where the value lives in :class:`Config` (``core.min_gap``); the
    default is that dataclass field's.  ``doc_default`` is docs/configuration.md's default
    where the real one depends on the machine.
    """

    key: str
    path: str
    kind: Kind[Any]
    help: str
    doc_default: str | None = None

    @property
    def env(self) -> str:
        return "RETENTION_" + self.key.upper()

    def value(self, config: Config) -> Any:
        obj: Any = config
        for part in self.path.split("."):
            obj = getattr(obj, part)
        return obj

    def default(self) -> Any:
        return self.value(Config())

    def shown(self, value: Any) -> Any:
        """The value as `retention config` prints it (secrets masked)."""
        return self.kind.show(value)

    def default_text(self) -> str:
        """The default as docs/configuration.md's table writes it."""
        if self.doc_default is not None:
            return self.doc_default
        shown = self.shown(self.default())
        if shown is None:
            return "(unset)"
        if shown == "":
            return "(none)"
        if isinstance(shown, bool):
            return str(shown).lower()
        if isinstance(shown, list):
            return ",".join(map(str, shown))
        return str(shown)


SETTINGS: tuple[Setting, ...] = (
    Setting("kafka", "kafka", HostPorts(), "Kafka bootstrap servers (host:port,...)"),
    Setting(
        "kafka_security_protocol",
        "kafka_security.protocol",
        Choice(("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")),
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    ),
    Setting(
        "kafka_sasl_mechanism",
        "kafka_security.sasl_mechanism",
        Choice(("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")),
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    ),
    Setting(
        "kafka_sasl_username", "kafka_security.sasl_username", OptionalText(), "SASL user name"
    ),
    Setting(
        "kafka_sasl_password",
        "kafka_security.sasl_password",
        Secret(),
        "SASL password (never logged)",
    ),
    Setting("kafka_ssl_cafile", "kafka_security.ssl_cafile", OptionalText(), "CA bundle for TLS"),
    Setting(
        "kafka_ssl_certfile",
        "kafka_security.ssl_certfile",
        OptionalText(),
        "client certificate for TLS",
    ),
    Setting(
        "kafka_ssl_keyfile", "kafka_security.ssl_keyfile", OptionalText(), "client key for TLS"
    ),
    Setting(
        "redis",
        "redis",
        RedisUrl(),
        "Redis URL (redis:// or rediss:// for TLS) of the read model",
    ),
    Setting("redis_password", "redis_password", Secret(), "Redis password (overrides the URL's)"),
    Setting(
        "redis_prefix",
        "redis_prefix",
        Text(),
        "prefix of every Redis key (unset: retention: for the default app id, else the app id"
        " and ':')",
        doc_default="(from the app id)",
    ),
    Setting("app_id", "app_id", TopicName(), "Faust app id = Kafka consumer group"),
    Setting(
        "topic_prefix", "topic_prefix", TopicName(nonempty=False), "prefix for every topic name"
    ),
    Setting(
        "partitions", "partitions", Whole(1, 1024), "partitions of the topics the worker creates"
    ),
    Setting(
        "replication_factor",
        "replication_factor",
        Whole(1, 16),
        "replication factor of created topics",
    ),
    Setting(
        "clock", "clock", Choice(("wall", "stream")), "wall (live) or stream (replay/backfill)"
    ),
    Setting(
        "tick_interval", "tick_interval", Number(0.05, 3600), "seconds between wall-clock ticks"
    ),
    Setting(
        "batch_max",
        "batch_max",
        Whole(1, 100_000),
        "messages an agent takes per batch (docs/benchmarks.md)",
    ),
    Setting(
        "batch_within",
        "batch_within",
        Number(0.001, 10),
        "seconds an agent waits to fill a batch",
    ),
    Setting(
        "producer_linger",
        "producer_linger",
        Number(0, 5),
        "seconds the producer waits to fill a request",
    ),
    Setting(
        "producer_batch_bytes",
        "producer_batch_bytes",
        Whole(1024, 16 << 20),
        "largest producer batch per partition (bytes)",
    ),
    Setting(
        "commit_interval",
        "commit_interval",
        Number(0.1, 600),
        "seconds between offset commits",
    ),
    Setting(
        "processing_guarantee",
        "processing_guarantee",
        Choice(("at_least_once",), refused=(("exactly_once", EXACTLY_ONCE_REFUSED),)),
        'at_least_once; `exactly_once` is refused at start-up (see "Crash safety")',
    ),
    Setting(
        "store",
        "store",
        Choice(("rocksdb://", "memory://")),
        "table store: rocksdb:// or memory://",
    ),
    Setting(
        "data_dir",
        "data_dir",
        Directory(),
        "worker data directory (RocksDB)",
        doc_default="~/.cache/retention-processor/data",
    ),
    Setting("web_host", "web_host", Host(), "Faust web bind address (loopback by default)"),
    Setting("web_port", "web_port", Whole(1, 65535), "Faust web port"),
    Setting(
        "web_advertised_host",
        "web_advertised_host",
        Host(optional=True),
        "host name other workers use to reach this one for routed lookups"
        " (set it when binding 0.0.0.0)",
        doc_default="(web host)",
    ),
    Setting("web_enabled", "web_enabled", Flag(), "serve Faust web"),
    Setting(
        "max_message_bytes",
        "max_message_bytes",
        Whole(256, 1 << 20),
        "largest accepted input message",
    ),
    Setting(
        "future_tolerance",
        "future_tolerance",
        Duration(),
        "how far past the wall clock an event may be dated",
    ),
    Setting(
        "min_event_time",
        "min_event_time",
        Instant(required=True),
        "earliest accepted event time (an absolute RFC 3339 instant); earlier ones are"
        " `early_timestamp` dead letters",
    ),
    Setting(
        "second_purchase_steps", "core.second_purchase.steps", Steps(), "second_purchase ladder"
    ),
    Setting("inactivity_steps", "core.inactivity.steps", Steps(), "inactivity ladder"),
    Setting(
        "stream_allowed_lateness",
        "core.stream_allowed_lateness",
        Duration(zero_disables="replay advances the stream clock in steps of it"),
        "out-of-orderness tolerated in stream-clock mode",
    ),
    Setting(
        "clock_idle_timeout",
        "clock_idle_timeout",
        Duration(),
        "a stream clock not moving for this long while events wait on it is reported as stuck",
    ),
    Setting(
        "stream_heartbeat",
        "stream_heartbeat",
        Duration(),
        "stream mode, live only: advance every input partition to now minus the allowed "
        "lateness this often (PT0S: off)",
    ),
    Setting(
        "backfill_until",
        "core.backfill_until",
        Instant(),
        "RFC 3339 cut-over: steps due before it are not emitted",
    ),
    Setting(
        "overdue_enabled", "core.overdue_enabled", Flag(), "run the cadence-aware `overdue` rule"
    ),
    Setting(
        "overdue_multiplier",
        "core.overdue_multiplier",
        Number(1, 100),
        "`overdue` fires after this many median gaps without an order",
    ),
    Setting(
        "overdue_floor",
        "core.overdue_floor",
        Duration(),
        "`overdue` never fires sooner than this after the last order",
    ),
    Setting(
        "overdue_min_orders",
        "core.overdue_min_orders",
        Whole(2, MAX_ORDER_TIMES),
        "orders a customer needs before `overdue` applies",
    ),
    Setting(
        "holdout_percent", "core.holdout_percent", Number(0, 100), "control group share (0 to 100)"
    ),
    Setting(
        "holdout_salt",
        "core.holdout_salt",
        Text(),
        "salt of the holdout hash (change it to draw a new control group)",
    ),
    Setting("min_gap", "core.min_gap", Duration(), "minimum time between delivered nudges"),
    Setting(
        "frequency_cap",
        "core.frequency_cap",
        Whole(1, 1000),
        "delivered nudges allowed per window",
    ),
    Setting(
        "frequency_window",
        "core.frequency_window",
        Duration(zero_disables="the frequency cap would count no nudge, so never apply"),
        "window of the frequency cap",
    ),
    Setting(
        "attribution_window",
        "core.attribution_window",
        Duration(zero_disables="no order could ever count as a conversion, so lift is lost"),
        "an order within this after a firing is a conversion",
    ),
    Setting(
        "active_window",
        "core.active_window",
        Duration(zero_disables='no customer could ever be "active": the retention rate is lost'),
        '"active" for the retention rate: an order within this trailing window',
    ),
    Setting(
        "clv_lifetime_years",
        "clv_lifetime_years",
        Number(0, 100),
        "expected customer lifetime in years (simple CLV)",
    ),
    Setting(
        "log_level",
        "log_level",
        Choice(("debug", "info", "warning", "error")),
        "debug, info, warning or error",
    ),
)
BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}


def _set(obj: Any, path: list[str], value: Any) -> Any:
    """A copy of the frozen dataclass ``obj`` with the attribute at ``path`` replaced."""
    head, *rest = path
    return replace(obj, **{head: _set(getattr(obj, head), rest, value) if rest else value})


# The shortest heartbeat: each one is a record to every input partition (docs/time.md "Time").
MIN_STREAM_HEARTBEAT = MICROS_PER_SECOND


def _check(config: Config) -> None:
    """Rules that involve more than one setting."""
    if 0 < config.stream_heartbeat < MIN_STREAM_HEARTBEAT:
        raise ConfigError("RETENTION_STREAM_HEARTBEAT must be PT0S (off) or at least PT1S")
    sec = config.kafka_security
    if sec.protocol.startswith("SASL") and not (sec.sasl_username and sec.sasl_password):
        raise ConfigError(
            "RETENTION_KAFKA_SASL_USERNAME and RETENTION_KAFKA_SASL_PASSWORD are required "
            f"with RETENTION_KAFKA_SECURITY_PROTOCOL={sec.protocol}"
        )
    _check_firing_memory(config.core)


def _check_firing_memory(core: CoreSettings) -> None:
    """Refuse guardrails and ladders whose firing memory cannot fit a customer's row:
    the gap, the cap and the attribution would otherwise forget what they need
    (docs/guardrails.md "Guardrails", agents.core.budget.firing_memory)."""
    memory = firing_memory(core)
    if memory.fits:
        return
    need = (
        f"a customer's row would have to remember up to {memory.entries:,} firings "
        f"({memory.guard:,} for the cap, {memory.attribution:,} for attribution, "
        f"{memory.lookup} for lookups), more than the {MAX_FIRINGS:,} its byte budget holds"
    )
    if memory.guard >= memory.attribution:
        raise ConfigError(f"RETENTION_FREQUENCY_CAP={core.frequency_cap}: {need}; lower the cap")
    shortest = _show_duration(core.inactivity.steps[0])
    # Held-out firings are bounded by the ladder alone; delivered ones also by the gap.
    other = (
        "set RETENTION_HOLDOUT_PERCENT=0"
        if core.holdout_percent > 0
        else "set a longer RETENTION_MIN_GAP"
    )
    raise ConfigError(
        f"RETENTION_ATTRIBUTION_WINDOW={_show_duration(core.attribution_window)} with "
        f"RETENTION_INACTIVITY_STEPS starting at {shortest}: {need}; shorten the window, "
        f"lengthen the first inactivity step or {other}"
    )


def build_config(values: Mapping[str, Any]) -> Config:
    """A :class:`Config` from raw values by setting key; unnamed settings keep defaults."""
    config = Config()
    for key, raw in values.items():
        setting = BY_KEY[key]
        value = setting.kind.parse(setting.env, raw)
        config = _set(config, setting.path.split("."), value)
    if "redis_prefix" not in values:
        config = replace(config, redis_prefix=default_redis_prefix(config.app_id))
    _check(config)
    return config


# --- loading -----------------------------------------------------------------------


def load_stack_file(home: Path | None = None) -> dict[str, Any]:
    """Addresses written by `retention local up`, if a local stack is running."""
    path = (home or default_home()) / "run" / "stack.json"
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def load_config(env: Mapping[str, str] | None = None, *, use_stack_file: bool = True) -> Config:
    """Build the configuration; raises :class:`ConfigError` on any bad value."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    if use_stack_file:
        stack = load_stack_file(Path(env["RETENTION_HOME"]) if env.get("RETENTION_HOME") else None)
        if stack.get("kafka"):
            values["kafka"] = stack["kafka"]
        if stack.get("redis"):
            values["redis"] = stack["redis"]
    if env.get("RETENTION_CONFIG"):
        path = Path(env["RETENTION_CONFIG"])
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"RETENTION_CONFIG: cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"RETENTION_CONFIG: {path} is not valid TOML: {exc}") from None
        unknown = set(data) - set(BY_KEY)
        if unknown:
            raise ConfigError(f"RETENTION_CONFIG: unknown settings {sorted(unknown)}")
        values.update(data)
    for setting in SETTINGS:
        if env.get(setting.env, "") != "":
            values[setting.key] = env[setting.env]
    return build_config(values)
