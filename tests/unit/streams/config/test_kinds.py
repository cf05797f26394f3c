"""A bad value of any kind is a ConfigError naming the variable, at start-up
(streams/config/kinds.py).

In particular no value can make a datetime overflow later (a bare OverflowError at
start-up, or a crash of the read-model task when a due time is rendered), and no
error or `retention config` output shows a credential.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.core.engine import overdue_threshold
from agents.core.settings import DAY
from agents.core.timeutil import MAX_DURATION, MAX_DURATION_DAYS, iso, parse_duration
from streams.cli import main
from streams.config import MAX_LADDER_STEPS, ConfigError, load_config


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
