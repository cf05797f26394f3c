"""retention bench: worker throughput against the raw consume+decode ceiling.

Both are measured in the same run over the same topics, because these machines
are shared and noisy: the ratio is the figure that matters.  Results go to
docs/benchmarks.md (and artifacts/bench.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from agents.core.timeutil import iso
from streams.commands.demo import borrowed_stack, start_worker, stop_worker, stream_deployment
from streams.config import Config
from streams.kafka import client_kwargs
from streams.local.procs import LocalStackError
from streams.monitor import end_offsets, group_lag
from streams.producer import produce_lines
from streams.sample import default_end, generate

ROOT = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=100_000, help="customers (100000)")
    parser.add_argument("--days", type=int, default=365, help="days of history (365)")
    parser.add_argument(
        "--timeout", type=float, default=7200, help="seconds to wait for the worker"
    )
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))


def run(args: argparse.Namespace) -> int:
    try:
        with borrowed_stack() as info:
            config, folder = stream_deployment(info, "bench")
            result = asyncio.run(bench(config, args, folder))
    except LocalStackError as exc:
        print(f"retention bench: {exc}", file=sys.stderr)
        return 1
    write_report(Path(args.out), result)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


async def raw_ceiling(config: Config, total: int) -> float:
    """Messages per second of a bare aiokafka getmany + orjson decode loop."""
    consumer = AIOKafkaConsumer(
        *config.topics.inputs(),
        **client_kwargs(config),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    seen = 0
    try:
        start = time.perf_counter()
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batch.values():
                for rec in records:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        orjson.loads(rec.value or b"")
                seen += len(records)
        return seen / (time.perf_counter() - start)
    finally:
        await consumer.stop()


async def bench(config: Config, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    end = default_end()
    lines = list(generate(args.customers, args.days, seed=7, end=end))
    t0 = time.perf_counter()
    await produce_lines(config, lines, until=iso(end))
    produce_rate = len(lines) / (time.perf_counter() - t0)
    total = sum((await end_offsets(config, config.topics.inputs())).values())
    ceiling = await raw_ceiling(config, total)
    print(f"raw consume+decode ceiling: {ceiling:,.0f} msg/s over {total} messages")

    worker = start_worker(config, folder)
    try:
        first = last = None
        started = time.perf_counter()
        while time.perf_counter() - started < args.timeout:
            lag = await group_lag(config)
            now = time.perf_counter()
            if lag is not None and first is None and lag < total:
                first = now
            if lag == 0 and first is not None:
                last = now
                break
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited; see {folder / 'worker.log'}")
            await asyncio.sleep(0.5)
        if first is None or last is None:
            raise RuntimeError(f"the worker did not finish within {args.timeout} s")
    finally:
        stop_worker(worker)
    events = sum(1 for line in lines if line.strip())
    worker_rate = events / (last - first)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_cpu()}, "
        f"Python {platform.python_version()}",
        "customers": args.customers,
        "days": args.days,
        "input_messages": total,
        "produce_msg_per_s": round(produce_rate),
        "raw_consume_decode_msg_per_s": round(ceiling),
        "worker_events_per_s": round(worker_rate),
        "worker_seconds": round(last - first, 1),
        "ratio_worker_to_raw": round(worker_rate / ceiling, 4),
    }


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_report(path: Path, r: dict[str, Any]) -> None:
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "bench.json").write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""# Benchmarks

Written by `make bench` (`retention bench`); the latest run is below.

## Method

1. `retention local up` (single-node Kafka 3.9.2 + Redis on loopback, same machine).
2. A generated sample (`retention sample`: {r["customers"]} customers, {r["days"]} days) is
   produced to the input topics, with a `control/advance` marker at the end.
3. **Ceiling**: a bare aiokafka `getmany` + `orjson.loads` loop reads the same input
   topics from the beginning.
4. **Worker**: one `retention worker` (stream clock, at-least-once, RocksDB) processes
   the backlog; throughput = valid+invalid events / (time from the first committed
   progress to zero lag on the input and internal topics, polled every 0.5 s).
5. The ratio worker / ceiling, measured in one run, is the figure to compare.

## Latest run ({r["date"]})

Machine: {r["machine"]}

| figure | value |
|---|---|
| input messages | {r["input_messages"]:,} |
| produce rate (CLI producer) | {r["produce_msg_per_s"]:,} msg/s |
| raw consume + decode ceiling | {r["raw_consume_decode_msg_per_s"]:,} msg/s |
| worker end-to-end | {r["worker_events_per_s"]:,} events/s ({r["worker_seconds"]} s) |
| **ratio worker / ceiling** | **{r["ratio_worker_to_raw"]:.4f}** |

The worker does two Faust hops per event (ingest + re-key, then the customer
agent with its table write and changelog), so it pays Faust's per-message cost
at least twice.  See `docs/design.md` for where the time goes (py-spy).
"""
    )
