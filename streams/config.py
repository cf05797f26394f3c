"""The one typed configuration object.

Sources, lowest precedence first: built-in defaults, the local stack's
``stack.json`` (written by ``retention local up``), a TOML file named by
``RETENTION_CONFIG``, then ``RETENTION_*`` environment variables.  A bad value
raises :class:`ConfigError` naming the variable, at start-up.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import orjson

from agents.core.reports import ReportSettings
from agents.core.settings import CoreSettings, LadderSettings
from agents.core.state import MAX_ORDER_TIMES
from agents.core.timeutil import (
    MICROS_PER_SECOND,
    format_duration,
    parse_duration,
    parse_timestamp,
    to_micros,
)

CLOCKS = ("wall", "stream")
GUARANTEES = ("at_least_once",)
# Refused at start-up: under kill -9 it lost decisions with faust-streaming 0.15.3
# (docs/design.md, "exactly_once: refused").
EXACTLY_ONCE_REFUSED = (
    "RETENTION_PROCESSING_GUARANTEE=exactly_once is refused: with faust-streaming 0.15.3 "
    "it lost decisions when a worker was killed (-9) and restarted (see docs/design.md, "
    '"exactly_once: refused"). Use at_least_once (the default): a crash can only repeat '
    "a decision, never lose one, and a repeat carries the same trigger_id, so "
    "deduplicate on trigger_id downstream."
)
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Steps per ladder: each step is a key in the customer row's counts, so the
# row stays small (README "Byte budget").
MAX_LADDER_STEPS = 10


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
    """Every setting of a worker and the CLI; see the README's configuration table."""

    kafka: str = "127.0.0.1:9092"
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    redis: str = "redis://127.0.0.1:6379/0"
    redis_password: str | None = None
    redis_prefix: str = "retention:"
    app_id: str = "retention-processor"
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
        """The effective settings with secrets masked (for `retention config` and logs)."""
        sec = self.kafka_security
        return {
            "kafka": self.kafka,
            "kafka_security_protocol": sec.protocol,
            "kafka_sasl_password": "***" if sec.sasl_password else None,
            "redis": _mask_url(self.redis),
            "app_id": self.app_id,
            "topic_prefix": self.topic_prefix,
            "topics": {f.name: getattr(self.topics, f.name) for f in fields(Topics)},
            "partitions": self.partitions,
            "clock": self.clock,
            "batch_max": self.batch_max,
            "batch_within": self.batch_within,
            "producer_linger": self.producer_linger,
            "producer_batch_bytes": self.producer_batch_bytes,
            "commit_interval": self.commit_interval,
            "processing_guarantee": self.processing_guarantee,
            "store": self.store,
            "data_dir": str(self.data_dir),
            "web": f"{self.web_host}:{self.web_port}",
            "second_purchase_steps": [_dur(s) for s in self.core.second_purchase.steps],
            "inactivity_steps": [_dur(s) for s in self.core.inactivity.steps],
            "overdue_enabled": self.core.overdue_enabled,
            "overdue_multiplier": self.core.overdue_multiplier,
            "overdue_floor": _dur(self.core.overdue_floor),
            "overdue_min_orders": self.core.overdue_min_orders,
            "holdout_percent": self.core.holdout_percent,
            "min_gap": _dur(self.core.min_gap),
            "frequency_cap": self.core.frequency_cap,
            "frequency_window": _dur(self.core.frequency_window),
            "attribution_window": _dur(self.core.attribution_window),
            "active_window": _dur(self.core.active_window),
            "clv_lifetime_years": self.clv_lifetime_years,
            "stream_allowed_lateness": _dur(self.core.stream_allowed_lateness),
            "backfill_until": self.core.backfill_until,
        }


def _dur(micros: int) -> str:
    from datetime import timedelta

    return format_duration(timedelta(microseconds=micros))


def _mask_url(url: str) -> str:
    if "@" in url and "//" in url:
        scheme, rest = url.split("//", 1)
        return f"{scheme}//***@{rest.split('@', 1)[1]}"
    return url


# --- parsing -----------------------------------------------------------------------


def _as_int(name: str, raw: Any, lo: int, hi: int) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, got {str(raw)[:40]!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {str(value)[:40]}")
    return value


def _as_float(name: str, raw: Any, lo: float, hi: float) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {str(raw)[:40]!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _as_choice(name: str, raw: Any, choices: tuple[str, ...]) -> str:
    value = str(raw).strip()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _as_bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _as_duration(name: str, raw: Any) -> int:
    # parse_duration is exact and refuses anything over 100 years, so no
    # duration (or an event time plus a few of them) can overflow a datetime.
    try:
        value = parse_duration(str(raw))
    except (ValueError, OverflowError) as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return (value.days * 86400 + value.seconds) * MICROS_PER_SECOND + value.microseconds


def _as_steps(name: str, raw: Any) -> tuple[int, ...]:
    items = raw if isinstance(raw, list) else [s for s in str(raw).split(",") if s.strip()]
    if not items:
        raise ConfigError(f"{name} needs at least one duration, e.g. P7D,P14D,P30D")
    if len(items) > MAX_LADDER_STEPS:
        raise ConfigError(f"{name} may have at most {MAX_LADDER_STEPS} steps, got {len(items)}")
    steps = tuple(_as_duration(name, s) for s in items)
    if any(s <= 0 for s in steps) or list(steps) != sorted(set(steps)):
        raise ConfigError(f"{name} must be positive and strictly increasing, got {raw!r}")
    return steps


def _as_guarantee(raw: Any) -> str:
    if str(raw).strip() == "exactly_once":
        raise ConfigError(EXACTLY_ONCE_REFUSED)
    return _as_choice("RETENTION_PROCESSING_GUARANTEE", raw, GUARANTEES)


def _as_hostport(name: str, raw: Any) -> str:
    value = str(raw).strip()
    for part in value.split(","):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"{name} must be host:port[,host:port...], got {value!r}")
    return value


def _as_time(name: str, raw: Any) -> int:
    try:
        return to_micros(parse_timestamp(str(raw)))
    except (ValueError, OverflowError) as exc:
        raise ConfigError(f"{name}: {exc}") from None


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
        unknown = set(data) - set(ENV_KEYS)
        if unknown:
            raise ConfigError(f"RETENTION_CONFIG: unknown settings {sorted(unknown)}")
        values.update(data)
    for key in ENV_KEYS:
        var = "RETENTION_" + key.upper()
        if var in env and env[var] != "":
            values[key] = env[var]
    return _build(values)


# Every setting, by its name in the TOML file; the env var is RETENTION_ + upper case.
ENV_KEYS: dict[str, str] = {
    "kafka": "Kafka bootstrap servers (host:port,...)",
    "kafka_security_protocol": "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    "kafka_sasl_mechanism": "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    "kafka_sasl_username": "SASL user name",
    "kafka_sasl_password": "SASL password (never logged)",
    "kafka_ssl_cafile": "CA bundle for TLS",
    "kafka_ssl_certfile": "client certificate for TLS",
    "kafka_ssl_keyfile": "client key for TLS",
    "redis": "Redis URL (redis:// or rediss:// for TLS)",
    "redis_password": "Redis password (overrides the URL's)",
    "redis_prefix": "prefix of every Redis key",
    "app_id": "Faust app id = Kafka consumer group",
    "topic_prefix": "prefix for every topic name",
    "partitions": "partitions of the topics the worker creates",
    "replication_factor": "replication factor of created topics",
    "clock": "wall (live) or stream (replay/backfill)",
    "tick_interval": "seconds between wall-clock ticks",
    "batch_max": "messages an agent takes per batch",
    "batch_within": "seconds an agent waits to fill a batch",
    "producer_linger": "seconds the producer waits to fill a request",
    "producer_batch_bytes": "largest producer batch per partition (bytes)",
    "commit_interval": "seconds between offset commits",
    "processing_guarantee": "at_least_once (exactly_once is refused: see Crash safety)",
    "store": "table store: rocksdb:// or memory://",
    "data_dir": "worker data directory (RocksDB)",
    "web_host": "Faust web bind address",
    "web_port": "Faust web port",
    "web_advertised_host": "host name other workers use to reach this one (default: web_host)",
    "web_enabled": "serve Faust web",
    "max_message_bytes": "largest accepted input message",
    "future_tolerance": "how far past the wall clock an event may be dated",
    "second_purchase_steps": "second_purchase ladder, e.g. P7D,P14D,P30D",
    "inactivity_steps": "inactivity ladder, e.g. P14D,P30D,P60D",
    "stream_allowed_lateness": "out-of-orderness tolerated in stream-clock mode",
    "backfill_until": "RFC 3339 cut-over: steps due before it are not emitted",
    "holdout_percent": "share of customers in the control group",
    "holdout_salt": "salt of the holdout hash",
    "min_gap": "minimum time between delivered nudges",
    "frequency_cap": "delivered nudges allowed per frequency window",
    "frequency_window": "window of the frequency cap",
    "attribution_window": "an order within this after a firing is a conversion",
    "overdue_enabled": "run the cadence-aware overdue rule",
    "overdue_multiplier": "overdue fires after this many median gaps without an order",
    "overdue_floor": "overdue never fires sooner than this after the last order",
    "overdue_min_orders": "orders a customer needs before overdue applies",
    "active_window": "an order within this trailing window makes a customer active (CRR)",
    "clv_lifetime_years": "expected customer lifetime in years (simple CLV)",
    "log_level": "debug, info, warning or error",
}


def _build(v: dict[str, Any]) -> Config:
    d = Config()
    core = d.core
    sec = KafkaSecurity(
        protocol=_as_choice(
            "RETENTION_KAFKA_SECURITY_PROTOCOL",
            v.get("kafka_security_protocol", "PLAINTEXT"),
            SECURITY_PROTOCOLS,
        ),
        sasl_mechanism=_as_choice(
            "RETENTION_KAFKA_SASL_MECHANISM",
            v.get("kafka_sasl_mechanism", "PLAIN"),
            SASL_MECHANISMS,
        ),
        sasl_username=v.get("kafka_sasl_username"),
        sasl_password=v.get("kafka_sasl_password"),
        ssl_cafile=v.get("kafka_ssl_cafile"),
        ssl_certfile=v.get("kafka_ssl_certfile"),
        ssl_keyfile=v.get("kafka_ssl_keyfile"),
    )
    if sec.protocol.startswith("SASL") and not (sec.sasl_username and sec.sasl_password):
        raise ConfigError(
            "RETENTION_KAFKA_SASL_USERNAME and RETENTION_KAFKA_SASL_PASSWORD are required "
            f"with RETENTION_KAFKA_SECURITY_PROTOCOL={sec.protocol}"
        )
    redis = str(v.get("redis", d.redis))
    if not redis.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"RETENTION_REDIS must be a redis://, rediss:// or unix:// URL, got {redis!r}"
        )
    backfill = v.get("backfill_until")
    new_core = replace(
        core,
        second_purchase=LadderSettings(
            core.second_purchase.rule,
            _as_steps("RETENTION_SECOND_PURCHASE_STEPS", v["second_purchase_steps"])
            if "second_purchase_steps" in v
            else core.second_purchase.steps,
        ),
        inactivity=LadderSettings(
            core.inactivity.rule,
            _as_steps("RETENTION_INACTIVITY_STEPS", v["inactivity_steps"])
            if "inactivity_steps" in v
            else core.inactivity.steps,
        ),
        holdout_percent=_as_float(
            "RETENTION_HOLDOUT_PERCENT", v.get("holdout_percent", core.holdout_percent), 0, 100
        ),
        holdout_salt=str(v.get("holdout_salt", core.holdout_salt)),
        min_gap=_as_duration("RETENTION_MIN_GAP", v["min_gap"]) if "min_gap" in v else core.min_gap,
        frequency_cap=_as_int(
            "RETENTION_FREQUENCY_CAP", v.get("frequency_cap", core.frequency_cap), 1, 1000
        ),
        frequency_window=_as_duration("RETENTION_FREQUENCY_WINDOW", v["frequency_window"])
        if "frequency_window" in v
        else core.frequency_window,
        attribution_window=_as_duration("RETENTION_ATTRIBUTION_WINDOW", v["attribution_window"])
        if "attribution_window" in v
        else core.attribution_window,
        stream_allowed_lateness=_as_duration(
            "RETENTION_STREAM_ALLOWED_LATENESS", v["stream_allowed_lateness"]
        )
        if "stream_allowed_lateness" in v
        else core.stream_allowed_lateness,
        backfill_until=_as_time("RETENTION_BACKFILL_UNTIL", backfill) if backfill else None,
        overdue_enabled=_as_bool("RETENTION_OVERDUE_ENABLED", v.get("overdue_enabled", True)),
        overdue_multiplier=_as_float(
            "RETENTION_OVERDUE_MULTIPLIER",
            v.get("overdue_multiplier", core.overdue_multiplier),
            1,
            100,
        ),
        overdue_floor=_as_duration("RETENTION_OVERDUE_FLOOR", v["overdue_floor"])
        if "overdue_floor" in v
        else core.overdue_floor,
        overdue_min_orders=_as_int(
            "RETENTION_OVERDUE_MIN_ORDERS",
            v.get("overdue_min_orders", core.overdue_min_orders),
            2,
            MAX_ORDER_TIMES,
        ),
        active_window=_as_duration("RETENTION_ACTIVE_WINDOW", v["active_window"])
        if "active_window" in v
        else core.active_window,
    )
    store = str(v.get("store", d.store))
    if store not in ("rocksdb://", "memory://"):
        raise ConfigError(f"RETENTION_STORE must be rocksdb:// or memory://, got {store!r}")
    topic_prefix = str(v.get("topic_prefix", ""))
    if topic_prefix and not all(c.isalnum() or c in "._-" for c in topic_prefix):
        raise ConfigError("RETENTION_TOPIC_PREFIX may hold only letters, digits, '.', '_' and '-'")
    return Config(
        kafka=_as_hostport("RETENTION_KAFKA", v.get("kafka", d.kafka)),
        kafka_security=sec,
        redis=redis,
        redis_password=v.get("redis_password"),
        redis_prefix=str(v.get("redis_prefix", d.redis_prefix)),
        app_id=str(v.get("app_id", d.app_id)),
        topic_prefix=topic_prefix,
        partitions=_as_int("RETENTION_PARTITIONS", v.get("partitions", d.partitions), 1, 1024),
        replication_factor=_as_int(
            "RETENTION_REPLICATION_FACTOR", v.get("replication_factor", 1), 1, 16
        ),
        clock=_as_choice("RETENTION_CLOCK", v.get("clock", d.clock), CLOCKS),
        tick_interval=_as_float("RETENTION_TICK_INTERVAL", v.get("tick_interval", 1.0), 0.05, 3600),
        batch_max=_as_int("RETENTION_BATCH_MAX", v.get("batch_max", d.batch_max), 1, 100_000),
        batch_within=_as_float(
            "RETENTION_BATCH_WITHIN", v.get("batch_within", d.batch_within), 0.001, 10
        ),
        producer_linger=_as_float(
            "RETENTION_PRODUCER_LINGER", v.get("producer_linger", d.producer_linger), 0, 5
        ),
        producer_batch_bytes=_as_int(
            "RETENTION_PRODUCER_BATCH_BYTES",
            v.get("producer_batch_bytes", d.producer_batch_bytes),
            1024,
            16 << 20,
        ),
        commit_interval=_as_float(
            "RETENTION_COMMIT_INTERVAL", v.get("commit_interval", d.commit_interval), 0.1, 600
        ),
        processing_guarantee=_as_guarantee(v.get("processing_guarantee", d.processing_guarantee)),
        store=store,
        data_dir=Path(v.get("data_dir", d.data_dir)).expanduser(),
        web_host=str(v.get("web_host", d.web_host)),
        web_port=_as_int("RETENTION_WEB_PORT", v.get("web_port", d.web_port), 1, 65535),
        web_advertised_host=v.get("web_advertised_host") or None,
        web_enabled=_as_bool("RETENTION_WEB_ENABLED", v.get("web_enabled", True)),
        max_message_bytes=_as_int(
            "RETENTION_MAX_MESSAGE_BYTES",
            v.get("max_message_bytes", d.max_message_bytes),
            256,
            1 << 20,
        ),
        future_tolerance=_as_duration("RETENTION_FUTURE_TOLERANCE", v["future_tolerance"])
        if "future_tolerance" in v
        else d.future_tolerance,
        core=new_core,
        clv_lifetime_years=_as_float(
            "RETENTION_CLV_LIFETIME_YEARS",
            v.get("clv_lifetime_years", d.clv_lifetime_years),
            0,
            100,
        ),
        log_level=_as_choice(
            "RETENTION_LOG_LEVEL", v.get("log_level", "info"), ("debug", "info", "warning", "error")
        ),
    )
