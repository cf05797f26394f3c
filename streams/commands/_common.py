"""Helpers shared by the CLI commands."""

from __future__ import annotations

import sys
from dataclasses import fields

from streams.config import Config, Topics


def resolve_topic(config: Config, name: str) -> str:
    """Accept a short name (``nudges``) or a full topic name."""
    short: dict[str, str] = {f.name: getattr(config.topics, f.name) for f in fields(Topics)}
    short.update({k.replace("_", "-"): v for k, v in short.items()})
    return short.get(name, name)


def fail(message: str, code: int = 1) -> int:
    print(f"retention: {message}", file=sys.stderr)
    return code
