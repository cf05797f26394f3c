"""retention worker: run the Faust worker with the configured settings."""

from __future__ import annotations

import argparse
import asyncio

from streams.config import load_config
from streams.kafka import ensure_topics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--web-port", type=int, help="override RETENTION_WEB_PORT")
    parser.add_argument("--data-dir", help="override RETENTION_DATA_DIR")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    import faust

    from streams.app import RetentionApp

    config = load_config()
    if args.web_port:
        config = dataclasses.replace(config, web_port=args.web_port)
    if args.data_dir:
        config = dataclasses.replace(config, data_dir=Path(args.data_dir))
    asyncio.run(ensure_topics(config, changelogs=True))
    # asyncio.run closed its loop; Faust wants a current one of its own.
    asyncio.set_event_loop(asyncio.new_event_loop())
    retention = RetentionApp(config)
    worker = faust.Worker(retention.app, loglevel=config.log_level.upper())
    worker.execute_from_commandline()
    return 0
