"""retention config: print the effective configuration (secrets masked)."""

from __future__ import annotations

import argparse

import orjson

from streams.config import SETTINGS, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--list", action="store_true", help="list every RETENTION_* variable, its default and use"
    )


def run(args: argparse.Namespace) -> int:
    if args.list:
        for s in SETTINGS:
            print(f"{s.env:<40} {s.default_text():<34} {s.help}")
        return 0
    print(orjson.dumps(load_config().describe(), option=orjson.OPT_INDENT_2).decode())
    return 0
