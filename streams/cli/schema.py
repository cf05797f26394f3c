"""retention schema asyncapi: print the AsyncAPI 3.0 contract with the effective topic names."""

from __future__ import annotations

import argparse
import json

from streams.asyncapi import published
from streams.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    kinds.add_parser(
        "asyncapi",
        help="the AsyncAPI 3.0 document of every topic (JSON, which is also YAML)",
        description=(
            "Print the AsyncAPI 3.0 document of every topic with the effective topic names "
            "(RETENTION_TOPIC_PREFIX applied), self-contained: the record schemas of"
            " schemas/*.schema.json are bundled under components/schemas."
        ),
    )


def run(args: argparse.Namespace) -> int:
    print(json.dumps(published(load_config().topics), indent=2))
    return 0
