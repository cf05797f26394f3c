"""retention worker: run the Faust worker with the configured settings."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from agents.core.clock import system_clock
from agents.core.rules.history import Version
from streams.cli._common import fail
from streams.config import Config, load_config
from streams.kafka import check_partitions, ensure_topics
from streams.ops.registry import StartRefused, adopt

log = logging.getLogger(__name__)

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--web-port", type=int, help="override RETENTION_WEB_PORT")
    parser.add_argument("--data-dir", help="override RETENTION_DATA_DIR")


def make_worker(
    config: Config,
    partition_warnings: dict[str, str] | None = None,
    versions: Sequence[Version] = (),
) -> Any:
    import faust

    from agents.faust_agents import EXIT_CRASHED
    from streams.worker.app import RetentionApp

    level = LEVELS[config.log_level]

    class Worker(faust.Worker):  # type: ignore[misc]
        def execute_from_commandline(self) -> NoReturn:
            try:
                super().execute_from_commandline()
            except SystemExit as exc:
                # mode re-raises a crashed service's error when the loop closes and
                # exits 1 on it (mode.worker.exiting); a crash is 70 here, the code
                # supervisors and docs/operations.md know, whatever crashed.
                if exc.code in crashed_by_mode():
                    raise SystemExit(EXIT_CRASHED) from exc
                raise
            raise SystemExit(0)  # execute_from_commandline always exits

        def on_setup_root_logger(self, logger: logging.Logger, loglevel: int) -> None:
            super().on_setup_root_logger(logger, loglevel)
            # Pin the level on the chatty libraries too: a debug record built per
            # message is a visible share of the worker's CPU in a py-spy profile.
            for name in ("", "faust", "mode", "aiokafka", "streams", "agents"):
                logging.getLogger(name).setLevel(level)

    retention = RetentionApp(config, versions=versions)
    retention.partition_warnings = dict(partition_warnings or {})
    return Worker(retention.faust_app, loglevel=level)


def crashed_by_mode() -> tuple[int, int]:
    """The exit statuses mode's worker gives a crash: ``EX_FAILURE``, and
    ``EX_OSERR`` when it was out of memory."""
    from mode.worker import EX_FAILURE, EX_OSERR

    return int(EX_FAILURE), int(EX_OSERR)


def run(args: argparse.Namespace) -> int:
    config = load_config()
    if args.web_port:
        config = dataclasses.replace(config, web_port=args.web_port)
    if args.data_dir:
        config = dataclasses.replace(config, data_dir=Path(args.data_dir))
    config.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(ensure_topics(config, changelogs=True))
    # The published rules are the source of truth: an empty rules topic takes this
    # worker's rules as the seed, a differing RETENTION_RULES_FILE is refused
    # (docs/operations.md "Changing rules live").
    try:
        start = asyncio.run(adopt(config, system_clock()))
    except StartRefused as exc:
        return fail(str(exc), 2)
    if start.seed is not None:
        log.warning("published this worker's rules as the seed: version %s", start.seed.id)
    config = start.config
    # A topic with the wrong partition count holds the stream clock back for good
    # or dead-letters events: say so at start, in /health/ready and in /metrics.
    mismatches = asyncio.run(check_partitions(config))
    for warning in mismatches.values():
        log.warning("%s", warning)
    # asyncio.run closed its loop; Faust wants a current one of its own.
    asyncio.set_event_loop(asyncio.new_event_loop())
    make_worker(config, mismatches, start.versions).execute_from_commandline()
    return 0
