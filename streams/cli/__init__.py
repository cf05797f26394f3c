"""The `retention` command line: one sub-command a module, imported lazily.

Every command has --help; a bad configuration or argument prints one line on
stderr and exits 2, a failed operation exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from aiokafka.errors import KafkaConnectionError, KafkaError

from streams.config import ConfigError, load_config

# command -> (module, help); each module has add_arguments(parser) and run(args) -> int
COMMANDS: dict[str, tuple[str, str]] = {
    "local": ("streams.cli.local", "start, stop or inspect the embedded Kafka + Redis on loopback"),
    "worker": ("streams.cli.worker", "run the Faust worker"),
    "produce": ("streams.cli.produce", "publish a JSONL file of events"),
    "replay": ("streams.cli.replay", "produce a JSONL file and advance the stream clock"),
    "tail": ("streams.cli.tail", "print a topic as JSONL"),
    "report": ("streams.cli.report", "retention report (live or --from-file)"),
    "rules": ("streams.cli.rules", "rules files: backtest one on a history"),
    "model": ("streams.cli.model", "prediction models: fit on a history, evaluate on a holdout"),
    "sample": ("streams.cli.sample", "generate a realistic JSONL sample of events"),
    "demo": ("streams.cli.demo", "run the whole demo on the local stack"),
    "bench": ("streams.cli.bench", "measure worker throughput against raw consume+decode"),
    "config": ("streams.cli.config_cmd", "print the effective configuration"),
    "schema": ("streams.cli.schema", "print the AsyncAPI 3.0 contract of every topic"),
    "rebuild-read-model": (
        "streams.cli.rebuild_read_model",
        "repopulate the Redis read model from the customer table's changelog",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retention",
        description=(
            "Event-stream retention processor (Kafka + Faust): events in, nudge triggers out."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


# Commands that run no worker in this process: a Kafka client's retries and
# connection errors are not theirs to log; the command's one-line error says what
# failed (README "CLI").
QUIET_CLIENTS = ("aiokafka", "asyncio")
OWN_LOGGING = ("worker",)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in OWN_LOGGING:
        for name in QUIET_CLIENTS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        result: int = importlib.import_module(args._module).run(args)
        return result
    except ConfigError as exc:
        print(f"retention: configuration error: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"retention: {_kafka_reason(exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`retention tail nudges | head`): stop quietly, and
        # keep the interpreter's final flush from reporting the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130


def _kafka_reason(exc: KafkaError) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    prefix = f"{type(exc).__name__}: "
    text = text.removeprefix(prefix)
    if isinstance(exc, KafkaConnectionError):
        return f"cannot reach Kafka at {_bootstrap()}: {text}"
    return f"Kafka: {type(exc).__name__}: {text}"


def _bootstrap() -> str:
    try:
        return load_config().kafka
    except ConfigError:
        return "the configured brokers"
