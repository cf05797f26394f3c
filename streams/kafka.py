"""Kafka client settings and topic administration shared by the worker and CLI."""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.config import Config


def ssl_context(config: Config) -> ssl.SSLContext | None:
    sec = config.kafka_security
    if sec.protocol not in ("SSL", "SASL_SSL"):
        return None
    ctx = ssl.create_default_context(cafile=sec.ssl_cafile)
    if sec.ssl_certfile:
        ctx.load_cert_chain(sec.ssl_certfile, sec.ssl_keyfile)
    return ctx


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


async def ensure_topics(config: Config, names: tuple[str, ...] | None = None) -> list[str]:
    """Create any missing topic with the configured partitions; returns those created."""
    admin = AIOKafkaAdminClient(**client_kwargs(config), request_timeout_ms=30000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = names or config.topics.all()
        missing = [t for t in wanted if t not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(t, num_partitions=config.partitions, replication_factor=config.replication_factor)
                    for t in missing
                ]
            )
        return missing
    finally:
        await admin.close()


async def partitions_for(config: Config, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(**client_kwargs(config), request_timeout_ms=30000)
    await admin.start()
    try:
        desc = await admin.describe_topics([topic])
        return sorted(p["partition"] for p in desc[0]["partitions"])
    finally:
        await admin.close()
