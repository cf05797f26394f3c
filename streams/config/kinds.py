"""How a setting is parsed, validated and shown: one :class:`Kind` per sort of
value, and :class:`ConfigError`, the one error a bad value raises.

A kind's ``parse`` reads a raw value from TOML or the environment and names the
variable in its error; its ``show`` gives what `retention config` prints, with
credentials masked (:func:`redact`), which ``parse`` reads back to the same value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

from agents.core.timeutil import (
    MICROS_PER_SECOND,
    format_duration,
    iso,
    parse_duration,
    parse_timestamp,
    to_micros,
)
from streams.config.topics import MAX_TOPIC_NAME, Topics

# Steps per ladder: each step is a key in the customer row's counts, so the
# row stays small (docs/budget.md "Byte budget").
MAX_LADDER_STEPS = 10


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the setting."""


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
