"""Kafka client settings and topic administration shared by the worker and CLI."""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.config import Config, ConfigError


def ssl_context(config: Config) -> ssl.SSLContext | None:
    sec = config.kafka_security
    if sec.protocol not in ("SSL", "SASL_SSL"):
        return None
    try:
        ctx = ssl.create_default_context(cafile=sec.ssl_cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"RETENTION_KAFKA_SSL_CAFILE: cannot use {sec.ssl_cafile}: {_why(exc)}"
        ) from None
    if sec.ssl_certfile:
        try:
            ctx.load_cert_chain(sec.ssl_certfile, sec.ssl_keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "RETENTION_KAFKA_SSL_CERTFILE / RETENTION_KAFKA_SSL_KEYFILE: cannot use "
                f"{sec.ssl_certfile} / {sec.ssl_keyfile}: {_why(exc)}"
            ) from None
    return ctx


def _why(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def client_kwargs(config: Config) -> dict[str, Any]:
    """Connection keyword arguments for any aiokafka client."""
    sec = config.kafka_security
    kwargs: dict[str, Any] = {
        "bootstrap_servers": config.kafka,
        "security_protocol": sec.protocol,
    }
    ctx = ssl_context(config)
    if ctx is not None:
        kwargs["ssl_context"] = ctx
    if sec.protocol.startswith("SASL"):
        kwargs.update(
            sasl_mechanism=sec.sasl_mechanism,
            sasl_plain_username=sec.sasl_username,
            sasl_plain_password=sec.sasl_password,
        )
    return kwargs


TABLE_NAMES = ("customers",)


def changelog_topics(config: Config) -> tuple[str, ...]:
    """Faust's changelog topic names for our tables (``{app_id}-{table}-changelog``)."""
    return tuple(f"{config.app_id}-{name}-changelog" for name in TABLE_NAMES)


async def ensure_topics(
    config: Config, names: tuple[str, ...] | None = None, *, changelogs: bool = False
) -> list[str]:
    """Create any missing topic with the configured partitions; returns those created.

    With ``changelogs`` the tables' compacted changelog topics are created too, so
    that they exist with the right partition count before Faust first writes.
    """
    admin = AIOKafkaAdminClient(**client_kwargs(config), request_timeout_ms=30000)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        wanted = list(names or config.topics.all())
        compacted = set(changelog_topics(config)) if changelogs else set()
        wanted.extend(sorted(compacted))
        missing = [t for t in wanted if t not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        t,
                        # The rules registry is one ordered log (docs/rules.md "Changing rules").
                        num_partitions=1 if t == config.topics.rules else config.partitions,
                        replication_factor=config.replication_factor,
                        topic_configs=(
                            {"cleanup.policy": "compact"}
                            if t in compacted or t == config.topics.rules
                            else {}
                        ),
                    )
                    for t in missing
                ]
            )
            await _wait_for_leaders(admin, missing)
        return missing
    finally:
        await admin.close()


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, names: list[str], timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = await admin.describe_topics(names)
        if all(
            t["error_code"] == 0
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        ):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"topics {names} have no partition leaders after {timeout} s")


async def partition_counts(config: Config, names: tuple[str, ...]) -> dict[str, int]:
    """The partition count of each named topic that exists."""
    admin = AIOKafkaAdminClient(**client_kwargs(config), request_timeout_ms=30000)
    try:
        await admin.start()
        described = await admin.describe_topics(list(names))
        return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}
    finally:
        await admin.close()


def partition_mismatches(config: Config, counts: dict[str, int]) -> dict[str, str]:
    """Topic -> warning, for each topic the worker reads whose partition count is not
    ``RETENTION_PARTITIONS`` (docs/time.md "Time", "A stuck clock")."""
    n = config.partitions
    inputs = config.topics.inputs()
    out: dict[str, str] = {}
    for topic in (*inputs, config.topics.customer_events, *changelog_topics(config)):
        have = counts.get(topic)
        if have is None or have == n:
            continue
        if topic not in inputs:
            effect = (
                f"customers are routed to {n} partitions of it; "
                "recreate it (and the worker's data) with the configured count"
            )
        elif have < n:
            effect = (
                f"in stream-clock mode every customer partition waits for input partitions "
                f"{have}-{n - 1}, which never send, so the stream clock never moves and no "
                f"decision fires; recreate the topic with {n} partitions or set "
                f"RETENTION_PARTITIONS={have} on a fresh deployment"
            )
        else:
            effect = (
                f"events on its partitions {n}-{have - 1} come from no known input partition "
                "and become dead letters (invalid_internal_message); set RETENTION_PARTITIONS "
                f"to {have} on a fresh deployment or recreate the topic with {n} partitions"
            )
        out[topic] = f"topic {topic} has {have} partitions, RETENTION_PARTITIONS is {n}: {effect}"
    return out


async def check_partitions(config: Config) -> dict[str, str]:
    """Start-up check: :func:`partition_mismatches` of the topics as they are now."""
    names = (*config.topics.inputs(), config.topics.customer_events, *changelog_topics(config))
    return partition_mismatches(config, await partition_counts(config, names))


async def partitions_for(config: Config, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(**client_kwargs(config), request_timeout_ms=30000)
    try:
        await admin.start()
        desc = await admin.describe_topics([topic])
        return sorted(p["partition"] for p in desc[0]["partitions"])
    finally:
        await admin.close()
