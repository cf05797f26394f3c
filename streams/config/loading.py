"""Loading the configuration, lowest precedence first: built-in defaults, the local
stack's ``stack.json`` (written by ``retention local up``), a TOML file named by
``RETENTION_CONFIG``, then ``RETENTION_*`` environment variables; then the rules
that involve more than one setting.  A bad value raises :class:`ConfigError`
naming the variable, at start-up."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from agents.core.budget import MAX_FIRINGS, firing_memory
from agents.core.rules import BUILTIN, RulesError, builtin_text, load_rules
from agents.core.settings import CoreSettings
from agents.core.timeutil import MICROS_PER_SECOND
from streams.config.defaults import default_home, default_redis_prefix
from streams.config.kinds import ConfigError, Duration
from streams.config.settings import BY_KEY, SETTINGS, Config


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
    shortest = Duration().show(core.inactivity.steps[0])
    # Held-out firings are bounded by the ladder alone; delivered ones also by the gap.
    other = (
        "set RETENTION_HOLDOUT_PERCENT=0"
        if core.holdout_percent > 0
        else "set a longer RETENTION_MIN_GAP"
    )
    raise ConfigError(
        f"RETENTION_ATTRIBUTION_WINDOW={Duration().show(core.attribution_window)} with "
        f"RETENTION_INACTIVITY_STEPS starting at {shortest}: {need}; shorten the window, "
        f"lengthen the first inactivity step or {other}"
    )


# The deprecated settings that edit the default rules file (docs/rules.md
# "Environment aliases"): with a rules file they would be silently overruled, so
# setting one beside it is refused.
RULE_ALIASES = (
    "second_purchase_steps",
    "inactivity_steps",
    "overdue_enabled",
    "overdue_multiplier",
    "overdue_floor",
    "overdue_min_orders",
    "holdout_percent",
    "holdout_salt",
    "min_gap",
    "frequency_cap",
    "frequency_window",
    "attribution_window",
)
# The largest rules file read: the largest file the checks accept (16 rules of
# 10 steps, docs/rules.md "Checks") is a few KiB; anything far larger is a mistake,
# not a rule set, and is refused before it is parsed.
MAX_RULES_FILE_BYTES = 256 * 1024


def rules_file_text(path: str, name: str | None = None) -> str:
    """The text of the rules file at ``path``, or of a shipped one named so
    (``lifecycle``, ``default``: docs/lifecycle.md "Rules") when no file of that name
    is in the working directory; :class:`ConfigError` (prefixed ``name``) when it
    cannot be read, is too large or is not UTF-8."""
    name = name or path
    try:
        if path in BUILTIN and not os.path.exists(path):
            data = builtin_text(path).encode()
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_RULES_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read it: {exc.strerror}") from None
    if len(data) > MAX_RULES_FILE_BYTES:
        raise ConfigError(
            f"{name}: larger than {MAX_RULES_FILE_BYTES // 1024} KiB; a rules file is a few KiB"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: not UTF-8 text") from None


def _with_rules_file(config: Config, values: Mapping[str, Any]) -> Config:
    """``config`` running the rules file it names, read and checked now: a worker
    never starts on a file that cannot run (docs/rules.md "Checks")."""
    path = config.rules_file
    if path is None:
        return config
    name = f"RETENTION_RULES_FILE={path}"
    aliases = [BY_KEY[key].env for key in RULE_ALIASES if key in values]
    if aliases:
        raise ConfigError(
            f"{name}: {', '.join(aliases)} {'is' if len(aliases) == 1 else 'are'} also set; "
            'set it in the rules file (docs/rules.md "Environment aliases")'
        )
    text = rules_file_text(path, name)
    try:
        rules = load_rules(text)
    except RulesError as exc:
        count = len(exc.problems)
        raise ConfigError(
            f"{name}: {count} problem{'s' if count != 1 else ''}, first: "
            f"{str(exc.problems[0]).replace(chr(10), ' ')}; run retention rules check {path}"
        ) from None
    return replace(config, core=replace(config.core, rules=rules), rules_text=text)


def build_config(values: Mapping[str, Any]) -> Config:
    """A :class:`Config` from raw values by setting key; unnamed settings keep defaults."""
    config = Config()
    for key, raw in values.items():
        setting = BY_KEY[key]
        value = setting.kind.parse(setting.env, raw)
        config = _set(config, setting.path.split("."), value)
    if "redis_prefix" not in values:
        config = replace(config, redis_prefix=default_redis_prefix(config.app_id))
    config = _with_rules_file(config, values)
    _check(config)
    return config


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
