"""The Faust app settings of a worker, from its :class:`streams.config.Config`.

The worker (:class:`streams.worker.app.RetentionApp`) and the bench's bare agent
(``streams.bench.bare_faust``) build their Faust app from :func:`faust_settings`:
brokers and credentials, store, web endpoints (which of Faust's own pages are
on, docs/operations.md "Operations"), offsets and producer batching.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

import faust
from faust.sensors import Monitor

from streams.config import Config
from streams.kafka import ssl_context

# An absolute file path (a task's repr names the source line it waits at).
_FILE_PATH = re.compile(r"(?<![\w.])/(?:[\w.+-]+/)+[\w.+-]*")


class PathFreeMonitor(Monitor):
    """Faust's monitor, whose stats page (``/``) shows counters by topic, stream,
    task and partition: a task is labelled by its name and coroutine instead of its
    repr, which names source files on the worker's disk (docs/operations.md)."""

    def asdict(self) -> Mapping[str, Any]:
        out = dict(super().asdict())
        out["events_by_task"] = {_task_label(task): n for task, n in self.events_by_task.items()}
        scrubbed: Mapping[str, Any] = _scrub(out)
        return scrubbed


def _task_label(task: Any) -> str:
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        return f"{task.get_name()} {getattr(coro, '__qualname__', type(coro).__name__)}"
    return str(task)


def _scrub(value: Any) -> Any:
    """``value`` with any absolute file path in its keys or strings replaced."""
    if isinstance(value, str):
        return _FILE_PATH.sub("<path>", value)
    if isinstance(value, Mapping):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _credentials(config: Config) -> Any:
    sec = config.kafka_security
    if sec.protocol == "PLAINTEXT":
        return None
    ctx = ssl_context(config)
    if sec.protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=sec.sasl_username,
            password=sec.sasl_password,
            ssl_context=ctx,
            mechanism=sec.sasl_mechanism,
        )
    return faust.SSLCredentials(ctx)


def faust_settings(config: Config) -> dict[str, Any]:
    """The Faust app settings of a worker: the worker and the bench's bare agent share them."""
    return dict(
        broker=[f"kafka://{hp}" for hp in config.kafka.split(",")],
        broker_credentials=_credentials(config),
        store=config.store,
        datadir=str(config.data_dir),
        processing_guarantee=config.processing_guarantee,
        topic_partitions=config.partitions,
        topic_replication_factor=config.replication_factor,
        topic_allow_declare=True,
        web_enabled=config.web_enabled,
        web_bind=config.web_host,
        # The address other workers use to reach this one (routed lookups);
        # binding 0.0.0.0 needs a reachable name here.
        web_host=config.web_advertised_host or config.web_host,
        web_port=config.web_port,
        # Faust's built-in endpoints, chosen one by one (docs/operations.md):
        # its stats and assignment pages on (docs/operations.md "Operations"; counters
        # only); /table off, because it serves raw customer rows (ids, spend,
        # consent) to anyone who reaches the port; /router off, because
        # routing here happens in-process (RetentionApp.owner_of) and the
        # page only advertises every worker's URL; /graph and /performance
        # off, as /metrics covers what they would show.
        web_stats_enabled=True,
        Monitor=PathFreeMonitor,
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=2 * 1024 * 1024,
        key_serializer="raw",
        value_serializer="raw",
        logging_config=None,
        # Chosen by measurement (docs/benchmarks.md): a batch's outputs leave in a
        # few large produce requests rather than one per 16 KiB, and offsets are
        # committed often enough that a restart replays little.
        producer_linger=config.producer_linger,
        producer_max_batch_size=config.producer_batch_bytes,
        broker_commit_interval=config.commit_interval,
    )
