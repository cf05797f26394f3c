"""Loading (streams/config/loading.py): the TOML file and the environment, and the
rules that involve more than one setting, checked at start-up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.core.budget import MAX_FIRINGS
from agents.core.settings import DAY
from streams.config import Config, ConfigError, load_config
from streams.local.stack import StackInfo
from streams.local.workers import stream_deployment, worker_env


def _load(**env: str) -> object:
    return load_config({f"RETENTION_{k}": v for k, v in env.items()}, use_stack_file=False)


def _toml(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "retention.toml"
    path.write_text(line + "\n")
    return path


def _from_toml(tmp_path: Path, line: str) -> Config:
    return load_config({"RETENTION_CONFIG": str(_toml(tmp_path, line))}, use_stack_file=False)


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


def test_the_stream_heartbeat_is_off_by_default_and_at_least_a_second() -> None:
    # docs/time.md "Time", "Heartbeat": it writes to every input partition each time.
    assert _load().stream_heartbeat == 0
    assert _load(STREAM_HEARTBEAT="PT1M").stream_heartbeat == 60_000_000
    with pytest.raises(ConfigError, match=r"^RETENTION_STREAM_HEARTBEAT must be PT0S \(off\)"):
        _load(STREAM_HEARTBEAT="PT0.1S")
