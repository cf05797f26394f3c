"""Every bad configuration value is a ConfigError naming the variable, at start-up.

In particular no value can make a datetime overflow later (a bare OverflowError at
start-up, or a crash of the read-model task when a due time is rendered).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from agents.core.budget import MAX_FIRINGS
from agents.core.engine import overdue_threshold
from agents.core.settings import DAY
from agents.core.timeutil import MAX_DURATION, MAX_DURATION_DAYS, iso, parse_duration
from streams.cli import main
from streams.config import (
    MAX_LADDER_STEPS,
    SETTINGS,
    Choice,
    Config,
    ConfigError,
    Directory,
    Duration,
    Flag,
    Host,
    HostPorts,
    Instant,
    KafkaSecurity,
    Kind,
    Number,
    OptionalText,
    RedisUrl,
    Secret,
    Setting,
    Steps,
    Text,
    TopicName,
    Whole,
    load_config,
)
from streams.local.stack import StackInfo
from streams.local.workers import stream_deployment, worker_env


def _load(**env: str) -> object:
    return load_config({f"RETENTION_{k}": v for k, v in env.items()}, use_stack_file=False)


DURATIONS = (
    "MIN_GAP",
    "FREQUENCY_WINDOW",
    "ATTRIBUTION_WINDOW",
    "STREAM_ALLOWED_LATENESS",
    "OVERDUE_FLOOR",
    "ACTIVE_WINDOW",
    "FUTURE_TOLERANCE",
)
TOO_LONG = (
    "P9999999999D",  # timedelta itself overflows
    "P4000000D",  # a timedelta, but anchor + it is past year 9999
    f"P{MAX_DURATION_DAYS + 1}D",
    "P99999999W",
    "PT9999999999999999999999H",
    "PT" + "9" * 5000 + "S",  # more digits than int() takes by default
)


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize("value", TOO_LONG)
def test_overlong_durations_are_config_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _load(**{name: value})
    message = str(exc.value)
    assert message.startswith(f"RETENTION_{name}: ")
    assert "longer than the maximum of P36500D (100 years)" in message
    assert len(message) < 200


@pytest.mark.parametrize("name", ("SECOND_PURCHASE_STEPS", "INACTIVITY_STEPS"))
@pytest.mark.parametrize("value", ("P7D,P4000000D", "P9999999999D", "P1D,P36501D"))
def test_overlong_ladder_steps_are_config_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"RETENTION_{name}: duration .* longer than"):
        _load(**{name: value})


@pytest.mark.parametrize(
    "value", ("P14", "14D", "P1M", "P1Y", "PT", "P1DT", "-P1D", "P-1D", "P\u0661D", "P1.5D")
)
def test_malformed_durations_are_config_errors(value: str) -> None:
    with pytest.raises(ConfigError, match="RETENTION_MIN_GAP: not an ISO 8601 duration"):
        _load(MIN_GAP=value)


def test_the_longest_duration_is_accepted_and_exact() -> None:
    cfg = _load(MIN_GAP=f"P{MAX_DURATION_DAYS}D", ACTIVE_WINDOW="PT0.0000019S")
    assert cfg.core.min_gap == MAX_DURATION  # type: ignore[attr-defined]
    assert cfg.core.active_window == 1  # type: ignore[attr-defined]  # truncated, not float-rounded
    assert parse_duration("P1W2DT3H4M5.25S").total_seconds() == 9 * 86400 + 3 * 3600 + 245.25


def test_too_many_ladder_steps_is_a_config_error() -> None:
    steps = ",".join(f"P{i}D" for i in range(1, MAX_LADDER_STEPS + 2))
    with pytest.raises(ConfigError, match="at most 10 steps, got 11"):
        _load(INACTIVITY_STEPS=steps)
    ok = ",".join(f"P{i}D" for i in range(1, MAX_LADDER_STEPS + 1))
    assert len(_load(INACTIVITY_STEPS=ok).core.inactivity.steps) == 10  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BACKFILL_UNTIL", "0001-01-01T00:00:00+01:00", "out of range"),
        ("BACKFILL_UNTIL", "9999-12-31T23:59:59-01:00", "out of range"),
        ("BACKFILL_UNTIL", "2026-03-02T10:15:00+05:60", "impossible UTC offset"),
        ("BACKFILL_UNTIL", "soon", "not RFC 3339"),
        ("OVERDUE_MULTIPLIER", "inf", "between 1 and 100"),
        ("OVERDUE_MULTIPLIER", "nan", "between 1 and 100"),
        ("OVERDUE_MULTIPLIER", "1e400", "between 1 and 100"),
        ("HOLDOUT_PERCENT", "-inf", "between 0 and 100"),
        ("TICK_INTERVAL", "1e999", "between 0.05 and 3600"),
        ("PARTITIONS", "9" * 5000, "must be a whole number"),
        ("FREQUENCY_CAP", "1" + "0" * 400, "between 1 and 1000"),
        ("MAX_MESSAGE_BYTES", "1e6", "must be a whole number"),
        ("WEB_PORT", "70000", "between 1 and 65535"),
    ],
)
def test_other_out_of_range_values_are_config_errors(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _load(**{name: value})
    assert str(exc.value).startswith(f"RETENTION_{name}")
    assert message in str(exc.value)
    assert len(str(exc.value)) < 200  # the bad value is quoted, not dumped


@pytest.mark.parametrize(
    ("name", "value", "what"),
    [
        ("FREQUENCY_WINDOW", "P0D", "the frequency cap would count no nudge"),
        ("ATTRIBUTION_WINDOW", "P0D", "no order could ever count as a conversion"),
        ("ACTIVE_WINDOW", "P0D", 'no customer could ever be "active"'),
        ("STREAM_ALLOWED_LATENESS", "PT0S", "replay advances the stream clock in steps"),
    ],
)
def test_a_zero_window_that_would_switch_a_feature_off_is_refused(
    name: str,
    value: str,
    what: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(f"RETENTION_{name}", value)
    assert main(["config"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"retention: configuration error: RETENTION_{name} must be longer than zero: {what}"
    )


@pytest.mark.parametrize("name", ["WEB_HOST", "WEB_ADVERTISED_HOST"])
def test_a_web_host_with_a_newline_is_refused(name: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _load(**{name: "127.0.0.1\nX-Injected: 1"})
    assert str(exc.value) == (
        f"RETENTION_{name} must be a host name or IP address, got '127.0.0.1\\nX-Injected: 1'"
    )
    for ok in ("0.0.0.0", "::", "[::1]", "worker-3.retention.svc.cluster.local", "fe80::1%eth0"):
        _load(**{name: ok})


def test_overdue_threshold_is_capped_so_due_times_stay_representable() -> None:
    # Orders centuries apart (year 1 and 2026) and the largest multiplier.
    year1, now = -62135596800 * 10**6, 1_772_446_500 * 10**6
    threshold = overdue_threshold([year1, year1 + DAY, now], 100.0, 7 * DAY)
    assert threshold == MAX_DURATION
    assert iso(now + threshold).startswith("2126-")


def test_exactly_once_is_refused_with_the_reason_and_the_alternative() -> None:
    with pytest.raises(ConfigError) as exc:
        _load(PROCESSING_GUARANTEE="exactly_once")
    message = str(exc.value)
    assert message.startswith("RETENTION_PROCESSING_GUARANTEE=exactly_once is refused")
    assert "lost decisions" in message and "kill" in message
    assert "docs/design.md" in message
    assert "at_least_once" in message and "trigger_id" in message


def test_exactly_once_is_refused_from_the_toml_file_too(tmp_path: Path) -> None:
    path = tmp_path / "retention.toml"
    path.write_text('processing_guarantee = "exactly_once"\n')
    with pytest.raises(ConfigError, match="exactly_once is refused"):
        load_config({"RETENTION_CONFIG": str(path)}, use_stack_file=False)


def test_at_least_once_is_the_default_and_the_only_guarantee() -> None:
    assert _load().processing_guarantee == "at_least_once"  # type: ignore[attr-defined]
    cfg = _load(PROCESSING_GUARANTEE="at_least_once")
    assert cfg.processing_guarantee == "at_least_once"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="must be one of at_least_once; got 'twice'"):
        _load(PROCESSING_GUARANTEE="twice")


# --- every setting, from its declaration -------------------------------------------

JUNK = "#" * 5000  # a long bad value: the message quotes its start, never all of it


def _whole(k: Whole) -> list[str]:
    return ["four", "1.5", "1e3", str(k.lo - 1), str(k.hi + 1), "9" * 5000, JUNK]


def _number(k: Number) -> list[str]:
    return ["fast", str(k.lo - 1), str(k.hi + 1), "nan", "inf", "-inf", "1e400", JUNK]


def _choice(k: Choice) -> list[str]:
    return ["nope", k.choices[0] + "x", JUNK]


def _steps(_: Steps) -> list[str]:
    too_many = ",".join(f"P{i}D" for i in range(1, MAX_LADDER_STEPS + 2))
    return [",", "P7D,P1D", "P1D,P1D", "PT0S", "P1D,P9999999999D", "P1M", too_many, JUNK]


# The bad values of each kind of setting, given as environment variables.  A new
# kind must say here what is bad for it (possibly nothing, for free text).
BAD: dict[type[Kind[Any]], Callable[[Any], list[str]]] = {
    Whole: _whole,
    Number: _number,
    Choice: _choice,
    Flag: lambda _: ["maybe", "2", "tru", JUNK],
    Duration: lambda k: [
        "P14",
        "14D",
        "-P1D",
        "P1M",
        "P9999999999D",
        "PT" + "9" * 5000 + "S",
        JUNK,
        *(["P0D", "PT0S", "PT0.0000001S"] if k.zero_disables else []),
    ],
    Host: lambda _: ["local host", "http://x", "a/b", JUNK],  # a newline: its own test
    Steps: _steps,
    Instant: lambda _: ["soon", "2026-03-02T10:15:00", "9999-12-31T23:59:59-01:00", JUNK],
    HostPorts: lambda _: ["localhost", "host:port", "a:1,b", ":9092", JUNK],
    RedisUrl: lambda _: ["http://127.0.0.1:6379", "127.0.0.1:6379", JUNK],
    TopicName: lambda _: ["a b", "r\u00e9tention", "a/b", "x" * 250, JUNK],
    Directory: lambda _: [],  # any path can be named; only an empty or non-string one is bad
    Text: lambda _: [],
    OptionalText: lambda _: [],
    Secret: lambda _: [],
}
BAD_CASES = [
    pytest.param(s, value, id=f"{s.key}={value[:12]}")
    for s in SETTINGS
    for value in BAD[type(s.kind)](s.kind)
]


def _toml(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "retention.toml"
    path.write_text(line + "\n")
    return path


def _from_toml(tmp_path: Path, line: str) -> Config:
    return load_config({"RETENTION_CONFIG": str(_toml(tmp_path, line))}, use_stack_file=False)


def _needs_a_value(kind: Kind[Any]) -> bool:
    if isinstance(kind, Instant):
        return kind.required
    if isinstance(kind, OptionalText | Secret):
        return False
    if isinstance(kind, Host):
        return not kind.optional
    if isinstance(kind, Text | TopicName):
        return kind.nonempty
    return True


def test_each_setting_is_declared_once_and_every_field_has_one() -> None:
    assert len({s.key for s in SETTINGS}) == len(SETTINGS)
    paths = [s.path for s in SETTINGS]
    assert len(set(paths)) == len(paths)
    top = {f.name for f in fields(Config)} - {"kafka_security", "core"}
    security = {f"kafka_security.{f.name}" for f in fields(KafkaSecurity)}
    assert top | security <= set(paths), sorted((top | security) - set(paths))
    for s in SETTINGS:
        s.default()  # the path names a real attribute
        assert type(s.kind) in BAD, f"{s.key}: say in BAD what is a bad {type(s.kind).__name__}"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.key)
def test_the_shown_default_reads_back_as_the_default(setting: Setting) -> None:
    default = setting.default()
    shown = setting.kind.show(default)
    raw = "" if shown is None else shown  # unset is written as an empty value
    assert setting.kind.parse(setting.env, raw) == default


def test_retention_config_output_loads_back_as_the_same_config() -> None:
    described = Config().describe()
    env: dict[str, str] = {}
    for s in SETTINGS:
        shown = described[s.key]
        if shown is None:
            continue
        text = ",".join(shown) if isinstance(shown, list) else str(shown)
        env[s.env] = text.lower() if isinstance(shown, bool) else text
    assert load_config(env, use_stack_file=False) == Config()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.key)
def test_an_empty_variable_leaves_the_default(setting: Setting) -> None:
    assert _load(**{setting.key.upper(): ""}) == Config()


@pytest.mark.parametrize(("setting", "value"), BAD_CASES)
def test_a_bad_value_is_a_config_error_naming_the_variable(setting: Setting, value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _load(**{setting.key.upper(): value})
    message = str(exc.value)
    assert message.startswith(setting.env), message
    assert len(message) < 260, message  # the bad value is quoted, not dumped


@pytest.mark.parametrize(("setting", "value"), BAD_CASES)
def test_a_bad_value_in_the_toml_file_is_the_same_error(
    setting: Setting, value: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as from_env:
        _load(**{setting.key.upper(): value})
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    with pytest.raises(ConfigError) as from_file:
        _from_toml(tmp_path, f'{setting.key} = "{escaped}"')
    assert str(from_file.value) == str(from_env.value)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.key)
@pytest.mark.parametrize("value", ["{ a = 1 }", "true", "[[1]]"])
def test_a_value_of_the_wrong_type_in_the_toml_file_is_a_config_error(
    setting: Setting, value: str, tmp_path: Path
) -> None:
    if value == "true" and isinstance(setting.kind, Flag):
        assert _from_toml(tmp_path, f"{setting.key} = {value}") == Config()
        return
    with pytest.raises(ConfigError) as exc:
        _from_toml(tmp_path, f"{setting.key} = {value}")
    assert str(exc.value).startswith(setting.env)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.key)
def test_an_empty_string_in_the_toml_file(setting: Setting, tmp_path: Path) -> None:
    if _needs_a_value(setting.kind):
        with pytest.raises(ConfigError) as exc:
            _from_toml(tmp_path, f'{setting.key} = ""')
        assert str(exc.value).startswith(setting.env)
    else:
        config = _from_toml(tmp_path, f'{setting.key} = ""')
        assert setting.value(config) in ("", None)


def test_the_toml_file_takes_native_values_and_the_environment_wins(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        "partitions = 8\nholdout_percent = 2.5\nweb_enabled = false\n"
        'inactivity_steps = ["P1D", "P2D"]',
    )
    cfg = load_config(
        {"RETENTION_CONFIG": str(path), "RETENTION_PARTITIONS": "12"}, use_stack_file=False
    )
    assert (cfg.partitions, cfg.core.holdout_percent, cfg.web_enabled) == (12, 2.5, False)
    assert cfg.core.inactivity.steps == (DAY, 2 * DAY)


def test_an_unknown_key_in_the_toml_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown settings \['partition'\]"):
        _from_toml(tmp_path, "partition = 8")


def test_sasl_needs_a_user_name_and_a_password() -> None:
    with pytest.raises(ConfigError, match=r"RETENTION_KAFKA_SASL_USERNAME and .* are required"):
        _load(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="svc")
    cfg = _load(
        KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="svc", KAFKA_SASL_PASSWORD="pw"
    )
    assert cfg.kafka_security.sasl_password == "pw"  # type: ignore[attr-defined]


HOURLY = ",".join(f"PT{k}H" for k in range(1, 11))
MINUTELY = ",".join(f"PT{k}M" for k in range(1, 11))


@pytest.mark.parametrize(
    "env",
    [
        {"INACTIVITY_STEPS": HOURLY},  # issue 17's hourly ladder, every other default
        {"FREQUENCY_CAP": "200", "MIN_GAP": "PT1M"},
        {"INACTIVITY_STEPS": MINUTELY, "HOLDOUT_PERCENT": "0"},  # only delivered attributed
        {"INACTIVITY_STEPS": MINUTELY, "ATTRIBUTION_WINDOW": "PT6H"},
    ],
)
def test_guardrails_and_ladders_whose_firing_memory_fits_are_accepted(env: dict[str, str]) -> None:
    assert isinstance(_load(**env), Config)


@pytest.mark.parametrize(
    ("env", "starts", "advice"),
    [
        ({"FREQUENCY_CAP": "1000"}, "RETENTION_FREQUENCY_CAP=1000: ", "lower the cap"),
        (
            {"INACTIVITY_STEPS": MINUTELY},
            "RETENTION_ATTRIBUTION_WINDOW=P5D with RETENTION_INACTIVITY_STEPS starting at PT1M: ",
            "RETENTION_HOLDOUT_PERCENT=0",
        ),
        (  # nobody held out: only a longer gap bounds the delivered nudges
            {
                "INACTIVITY_STEPS": MINUTELY,
                "HOLDOUT_PERCENT": "0",
                "MIN_GAP": "PT1S",
                "FREQUENCY_WINDOW": "PT1M",
            },
            "RETENTION_ATTRIBUTION_WINDOW=P5D with RETENTION_INACTIVITY_STEPS starting at PT1M: ",
            "set a longer RETENTION_MIN_GAP",
        ),
    ],
)
def test_settings_whose_firing_memory_cannot_fit_a_row_are_refused_in_one_line(
    env: dict[str, str], starts: str, advice: str, tmp_path: Path
) -> None:
    """The gap, the cap and the attribution would otherwise have to forget firings they
    need (docs/guardrails.md "Guardrails"): refused at start-up, from the environment or the
    file."""
    with pytest.raises(ConfigError) as exc:
        _load(**env)
    message = str(exc.value)
    assert message.startswith(starts) and advice in message and "\n" not in message
    assert f"more than the {MAX_FIRINGS:,} its byte budget holds" in message
    lines = [f"{k.lower()} = {v if v.isdigit() else repr(v)}" for k, v in env.items()]
    with pytest.raises(ConfigError) as from_file:
        _from_toml(tmp_path, "\n".join(lines))
    assert str(from_file.value) == message


def test_retention_config_masks_every_secret() -> None:
    cfg = _load(
        REDIS="redis://svc:hunter2@cache:6379/0",
        REDIS_PASSWORD="hunter3",
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_USERNAME="svc",
        KAFKA_SASL_PASSWORD="hunter4",
    )
    text = str(cfg.describe())  # type: ignore[attr-defined]
    assert "hunter" not in text
    assert "redis://***@cache:6379/0" in text and "'svc'" in text


@pytest.mark.parametrize(
    "url",
    [
        "redis://svc:x@hunter2@cache:6379/0",  # an unencoded '@' in the password
        "redis://:hun@ter2@cache:6379/0",
        "redis://cache:6379/0?password=hunter2",
        "redis://cache:6379/0?db=0&password=hunter2&health_check_interval=5",
        "rediss://svc:hun/ter2@cache:6380/0",
    ],
)
def test_retention_config_never_prints_a_redis_password(
    url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path))
    monkeypatch.setenv("RETENTION_REDIS", url)
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "hunter" not in out and "ter2" not in out
    assert "cache:63" in out  # where it points is still shown


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("REDIS", "http://svc:hunter2@cache:6379/0"),
        ("REDIS", "https://svc:hunter2hunter2hunter2hunter2@cache:6379/0"),
        ("REDIS", "cache:6379/0?password=hunter2"),
        ("KAFKA", "svc:hunter2@broker"),
    ],
)
def test_a_configuration_error_never_quotes_credentials(env: str, value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _load(**{env: value})
    assert "hunter" not in str(exc.value), exc.value
    assert str(exc.value).startswith(f"RETENTION_{env}")


@pytest.mark.parametrize("key", ["redis_password", "kafka_sasl_password"])
def test_a_password_of_the_wrong_type_in_the_toml_file_is_not_quoted(
    key: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as exc:
        _from_toml(tmp_path, f"{key} = 73914682")
    assert "73914682" not in str(exc.value)


def test_the_redis_prefix_follows_the_app_id_unless_set() -> None:
    # Messaging services read the default deployment under retention:; a demo, a
    # replay or a second deployment on the same Redis must not overwrite its hashes.
    assert _load().redis_prefix == "retention:"  # type: ignore[attr-defined]
    assert _load(APP_ID="retention-processor").redis_prefix == "retention:"  # type: ignore[attr-defined]
    other = _load(APP_ID="retention-backfill")
    assert other.redis_prefix == "retention-backfill:"  # type: ignore[attr-defined]
    explicit = _load(APP_ID="retention-backfill", REDIS_PREFIX="retention:")
    assert explicit.redis_prefix == "retention:"  # type: ignore[attr-defined]


def test_the_demo_and_bench_deployments_have_a_read_model_of_their_own(tmp_path: Path) -> None:
    info = StackInfo(
        kafka="127.0.0.1:9092",
        redis="redis://127.0.0.1:6379/0",
        kafka_pid=0,
        redis_pid=0,
        started_at="",
        run_dir=tmp_path,
    )
    config, _ = stream_deployment(info, "demo")
    assert config.app_id.startswith("retention-demo-")
    assert config.redis_prefix == f"{config.app_id}:"
    env = worker_env(config)
    assert env["RETENTION_REDIS_PREFIX"] == config.redis_prefix
    assert load_config(env, use_stack_file=False).redis_prefix == config.redis_prefix


def test_retention_config_list_names_every_variable_with_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [s.env for s in SETTINGS]
    assert "RETENTION_MIN_GAP" in lines[[s.key for s in SETTINGS].index("min_gap")]
    assert any(line.split()[:2] == ["RETENTION_MIN_GAP", "P1D"] for line in lines)


def test_the_cli_takes_short_topic_names_with_the_prefix_applied() -> None:
    topics = Config(topic_prefix="acme.").topics
    assert topics.resolve("nudges") == "acme.retention.nudges"
    assert topics.resolve("customer-events") == topics.resolve("customer_events")
    assert topics.resolve("customer_events") == "acme.retention.customer-events"
    assert topics.resolve("some.other.topic") == "some.other.topic"


def test_the_stream_heartbeat_is_off_by_default_and_at_least_a_second() -> None:
    # docs/time.md "Time", "Heartbeat": it writes to every input partition each time.
    assert _load().stream_heartbeat == 0
    assert _load(STREAM_HEARTBEAT="PT1M").stream_heartbeat == 60_000_000
    with pytest.raises(ConfigError, match=r"^RETENTION_STREAM_HEARTBEAT must be PT0S \(off\)"):
        _load(STREAM_HEARTBEAT="PT0.1S")


def test_the_earliest_event_time_is_an_absolute_instant_setting() -> None:
    # docs/time.md "Time": 1970-01-01T00:00:00Z unless set; an RFC 3339 instant, never
    # a duration relative to today.
    assert load_config({}, use_stack_file=False).min_event_time == 0
    cfg = load_config(
        {"RETENTION_MIN_EVENT_TIME": "2000-01-01T01:00:00+01:00"}, use_stack_file=False
    )
    assert cfg.min_event_time == 946_684_800_000_000
    assert cfg.describe()["min_event_time"] == "2000-01-01T00:00:00Z"
    with pytest.raises(ConfigError, match=r"^RETENTION_MIN_EVENT_TIME: occurred_at is not RFC"):
        load_config({"RETENTION_MIN_EVENT_TIME": "P30D"}, use_stack_file=False)
