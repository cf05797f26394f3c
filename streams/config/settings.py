"""The one typed configuration object and its settings, each declared once.

Each setting is declared once, in :data:`SETTINGS`: its key (the TOML name; the
environment variable is ``RETENTION_`` + the key in upper case), where its value
lives in :class:`Config`, its kind (how it is parsed, validated and shown:
:mod:`streams.config.kinds`) and its help text.  Its default is the dataclass
field's (``Config``, ``KafkaSecurity`` or the core's ``CoreSettings``).  Loading
(:mod:`streams.config.loading`), :meth:`Config.describe`, ``retention config
--list`` and docs/configuration.md's table (checked by tests/unit/test_readme.py)
are derived from that one list.  ``Config`` and ``SETTINGS`` share this module
because each needs the other: ``describe`` walks the settings, and a setting's
default is read from a default ``Config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from agents.core.reports import ReportSettings
from agents.core.settings import CoreSettings
from agents.core.state import MAX_ORDER_TIMES
from agents.core.timeutil import DEFAULT_MIN_EVENT_TIME, MICROS_PER_SECOND
from streams.config.defaults import DEFAULT_APP_ID, DEFAULT_REDIS_PREFIX, default_home
from streams.config.kinds import (
    Choice,
    Directory,
    Duration,
    Flag,
    Host,
    HostPorts,
    Instant,
    Kind,
    Number,
    OptionalText,
    RedisUrl,
    Secret,
    Steps,
    Text,
    TopicName,
    Whole,
)
from streams.config.topics import Topics

# Refused at start-up: under kill -9 it lost decisions with faust-streaming 0.15.3
# (docs/design.md, "exactly_once: refused").
EXACTLY_ONCE_REFUSED = (
    "RETENTION_PROCESSING_GUARANTEE=exactly_once is refused: with faust-streaming 0.15.3 "
    "it lost decisions when a worker was killed (-9) and restarted "
    '(see docs/design.md, "exactly_once: refused"). Use at_least_once (the default): '
    "a crash can only repeat a decision, never lose one, and a repeat carries the same "
    "trigger_id, so deduplicate on trigger_id downstream."
)


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
    # A rules file (docs/rules.md "Rules file"); unset: the default file edited by
    # the deprecated aliases (docs/rules.md "Environment aliases").
    rules_file: str | None = None
    # The rules file's text as checked at load, for the offline reference, which
    # reads the text itself (it is the oracle: never the engine's parsed rules).
    rules_text: str | None = field(default=None, repr=False, compare=False)
    # Wall mode: how far ahead of now a published rules change must take effect, so that
    # every partition learns of it before its clock passes it (docs/rules.md "Changing rules").
    rules_lead: int = 300 * MICROS_PER_SECOND
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
        "rules_file",
        "rules_file",
        OptionalText(),
        "the rules file (TOML, docs/rules.md), checked at start-up, or a shipped one by name"
        " (`default`, `lifecycle`); unset: the default rules, edited by the deprecated rule"
        " and guardrail settings",
    ),
    Setting(
        "rules_lead",
        "rules_lead",
        Duration(),
        "wall mode: the least time from now to a published rules change's effective time"
        " (`retention rules publish`)",
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
