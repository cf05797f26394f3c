"""The defaults that are computed rather than written in :class:`Config`: a
deployment's Redis key prefix (from its app id) and where this machine keeps the
local stack's files."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_APP_ID = "retention-processor"
# Messaging services read the default deployment's hashes under this prefix
# (schemas/readmodel.md); any other app id gets a prefix of its own.
DEFAULT_REDIS_PREFIX = "retention:"


def default_redis_prefix(app_id: str) -> str:
    """The Redis key prefix of a deployment that does not set one: ``retention:`` for
    the default app id, ``<app id>:`` for any other, so that a demo, a replay or a
    second deployment never overwrites another one's read model."""
    return DEFAULT_REDIS_PREFIX if app_id == DEFAULT_APP_ID else f"{app_id}:"


def default_home() -> Path:
    """Where the local stack keeps its jar cache, data and run files."""
    env = os.environ.get("RETENTION_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "retention-processor"
