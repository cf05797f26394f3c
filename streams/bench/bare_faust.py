"""The bench's "what Faust costs" line: a bare Faust agent with the worker's settings.

One hop over the input topics, decode only, no state and no outputs: the floor
that any Faust worker pays per message on this machine.  ``retention bench`` runs
it as a child process (``python -m streams.bench.bare_faust``) with the worker's
``RETENTION_*`` environment plus:

* ``RETENTION_BENCH_TOTAL``: messages to consume before reporting;
* ``RETENTION_BENCH_OUT``: file that receives ``{"messages": n, "seconds": s}``;
* ``RETENTION_BENCH_MODE``: ``plain`` (``async for value in stream``) or
  ``batch`` (``stream.take_events`` with the worker's batch settings).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any

import faust
import orjson

from streams.config import load_config
from streams.worker.faust_settings import faust_settings


def main() -> None:
    config = load_config()
    total = int(os.environ["RETENTION_BENCH_TOTAL"])
    out = Path(os.environ["RETENTION_BENCH_OUT"])
    mode = os.environ.get("RETENTION_BENCH_MODE", "plain")
    config = dataclasses.replace(config, app_id=f"{config.app_id}-bare-{mode}", web_enabled=False)
    app = faust.App(config.app_id, **{**faust_settings(config), "store": "memory://"})
    topic = app.topic(
        *config.topics.inputs(),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    seen = 0
    first = 0.0

    def count(value: Any) -> None:
        nonlocal seen, first
        if not seen:
            first = time.perf_counter()
        with contextlib.suppress(orjson.JSONDecodeError):
            orjson.loads(value or b"")
        seen += 1
        if seen >= total:
            elapsed = time.perf_counter() - first
            out.write_bytes(orjson.dumps({"messages": seen, "seconds": elapsed, "mode": mode}))
            logging.shutdown()
            os._exit(0)  # a bench child: nothing left to flush

    @app.agent(topic, name="bare")
    async def bare(stream: Any) -> None:
        if mode == "batch":
            async for events in stream.take_events(config.batch_max, within=config.batch_within):
                for event in events:
                    count(event.value)
        else:
            async for value in stream:
                count(value)

    faust.Worker(app, loglevel=logging.WARNING).execute_from_commandline()


if __name__ == "__main__":
    main()
