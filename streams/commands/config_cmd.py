"""retention config: print the effective configuration (secrets masked)."""

from __future__ import annotations

import argparse

import orjson

from streams.config import ENV_KEYS, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list", action="store_true", help="list every RETENTION_* variable")


def run(args: argparse.Namespace) -> int:
    if args.list:
        for key, help_text in ENV_KEYS.items():
            print(f"RETENTION_{key.upper():<32} {help_text}")
        return 0
    print(orjson.dumps(load_config().describe(), option=orjson.OPT_INDENT_2).decode())
    return 0
