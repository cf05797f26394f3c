"""Every setting, from its declaration in SETTINGS (streams/config/settings.py): each
declared once, its default shown and read back, every bad value refused naming the
variable, from the environment and the TOML file alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

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


def _load(**env: str) -> object:
    return load_config({f"RETENTION_{k}": v for k, v in env.items()}, use_stack_file=False)


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
    # rules_text is read from the file rules_file names, not set.
    top = {f.name for f in fields(Config)} - {"kafka_security", "core", "rules_text"}
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


@pytest.mark.parametrize("key", ["redis_password", "kafka_sasl_password"])
def test_a_password_of_the_wrong_type_in_the_toml_file_is_not_quoted(
    key: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as exc:
        _from_toml(tmp_path, f"{key} = 73914682")
    assert "73914682" not in str(exc.value)


def test_retention_config_list_names_every_variable_with_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [s.env for s in SETTINGS]
    assert "RETENTION_MIN_GAP" in lines[[s.key for s in SETTINGS].index("min_gap")]
    assert any(line.split()[:2] == ["RETENTION_MIN_GAP", "P1D"] for line in lines)


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
