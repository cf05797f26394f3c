"""retention bench: worker throughput against the raw consume+decode ceiling.

Both are measured in the same run over the same topics, because these machines
are shared and noisy: the ratio is the figure that matters.  Results go to
docs/benchmarks.md (and artifacts/bench.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from agents.core.timeutil import iso
from streams.config import Config
from streams.kafka import client_kwargs
from streams.local.procs import LocalStackError
from streams.offsets import end_offsets, group_lag
from streams.producer import produce_lines
from streams.sample import default_end, generate
from streams.workers import (
    borrowed_stack,
    start_worker,
    stop_worker,
    stream_deployment,
    worker_env,
)

ROOT = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=10_000, help="customers (10000)")
    parser.add_argument("--days", type=int, default=365, help="days of history (365)")
    parser.add_argument(
        "--timeout", type=float, default=7200, help="seconds to wait for the worker"
    )
    parser.add_argument("--workers", type=int, default=2, help="also run N workers (2; 1 = skip)")
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


async def bare_faust(config: Config, folder: Path, total: int, mode: str, timeout: float) -> float:
    """Messages per second of a bare Faust agent (streams.bench_faust) over the inputs."""
    out = folder / f"bare-{mode}.json"
    out.unlink(missing_ok=True)
    log = open(folder / f"bare-{mode}.log", "ab")  # noqa: SIM115 - owned by the child
    child = subprocess.Popen(
        [sys.executable, "-m", "streams.bench_faust"],
        env=worker_env(
            config,
            RETENTION_BENCH_TOTAL=str(total),
            RETENTION_BENCH_OUT=str(out),
            RETENTION_BENCH_MODE=mode,
            RETENTION_WEB_ENABLED="false",
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        started = time.perf_counter()
        while not out.exists():
            if child.poll() is not None and not out.exists():
                raise RuntimeError(f"the bare Faust agent exited; see {folder}/bare-{mode}.log")
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"the bare Faust agent did not finish within {timeout} s")
            await asyncio.sleep(0.2)
        r = orjson.loads(out.read_bytes())
        return float(r["messages"]) / float(r["seconds"])
    finally:
        stop_worker(child)


async def run_workers(
    config: Config, folder: Path, count: int, total: int, timeout: float
) -> dict[str, Any]:
    """Start ``count`` workers of one app on the backlog; time until zero lag.

    Returns the seconds from the first committed progress to zero lag on the
    inputs and the internal topic, the tail (input lag zero to all lag zero: the
    final ``--until`` advance and what it fires), and the largest "woke up too
    late" drift Faust logged.
    """
    workers = []
    for i in range(count):
        sub = folder / f"worker-{i}"
        cfg = dataclasses.replace(config, data_dir=sub / "data", web_port=config.web_port + i)
        workers.append((start_worker(cfg, sub), sub))
    try:
        first = inputs_done = last = None
        started = time.perf_counter()
        inputs = config.topics.inputs()
        while time.perf_counter() - started < timeout:
            lag = await group_lag(config)
            now = time.perf_counter()
            if lag is not None and first is None and lag < total:
                first = now
            if inputs_done is None and first is not None and await group_lag(config, inputs) == 0:
                inputs_done = now
            if lag == 0 and first is not None:
                last = now
                break
            for w, sub in workers:
                if w.poll() is not None:
                    raise RuntimeError(f"a worker exited; see {sub / 'worker.log'}")
            await asyncio.sleep(0.25)
        if first is None or last is None:
            raise RuntimeError(f"the workers did not finish within {timeout} s")
    finally:
        rss = [_peak_rss(w.pid) for w, _ in workers]
        for w, _ in workers:
            stop_worker(w)
    drift = max((_max_drift(sub / "worker.log") for _, sub in workers), default=0.0)
    return {
        "seconds": last - first,
        "tail_seconds": last - (inputs_done or last),
        "max_drift_seconds": drift,
        "peak_rss_bytes": max(rss) if rss else 0,
    }


_DRIFT = re.compile(r"woke up too late, with a drift of \+?([0-9.]+)")


def _max_drift(log: Path) -> float:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0.0
    return max((float(m) for m in _DRIFT.findall(text)), default=0.0)


def _peak_rss(pid: int) -> int:
    """Peak resident set (VmHWM) of a live process, in bytes; 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


async def bench(config: Config, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    end = default_end()
    lines = list(generate(args.customers, args.days, seed=7, end=end))
    t0 = time.perf_counter()
    await produce_lines(config, lines, until=iso(end))
    produce_rate = len(lines) / (time.perf_counter() - t0)
    total = sum((await end_offsets(config, config.topics.inputs())).values())
    events = sum(1 for line in lines if line.strip())
    folder.mkdir(parents=True, exist_ok=True)

    ceiling = await raw_ceiling(config, total)
    print(f"raw consume+decode ceiling: {ceiling:,.0f} msg/s over {total} messages")
    bare = await bare_faust(config, folder, total, "plain", args.timeout)
    print(f"bare Faust agent: {bare:,.0f} msg/s")
    bare_batch = await bare_faust(config, folder, total, "batch", args.timeout)
    print(f"bare Faust agent, take_events: {bare_batch:,.0f} msg/s")

    one = await run_workers(config, folder / "one", 1, total, args.timeout)
    worker_rate = events / one["seconds"]
    print(f"worker: {worker_rate:,.0f} events/s")
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_cpu()}, "
        f"Python {platform.python_version()}",
        "customers": args.customers,
        "days": args.days,
        "input_messages": total,
        "produce_msg_per_s": round(produce_rate),
        "raw_consume_decode_msg_per_s": round(ceiling),
        "bare_faust_msg_per_s": round(bare),
        "bare_faust_take_events_msg_per_s": round(bare_batch),
        "worker_events_per_s": round(worker_rate),
        "worker_seconds": round(one["seconds"], 1),
        "worker_tail_seconds": round(one["tail_seconds"], 1),
        "worker_max_drift_seconds": one["max_drift_seconds"],
        "worker_peak_rss_mb": round(one["peak_rss_bytes"] / 2**20),
        "bytes_per_customer": round(one["peak_rss_bytes"] / max(1, args.customers)),
        "ratio_worker_to_bare_faust": round(worker_rate / bare, 3),
        "ratio_worker_to_raw": round(worker_rate / ceiling, 4),
        "settings": {
            "batch_max": config.batch_max,
            "batch_within": config.batch_within,
            "producer_linger": config.producer_linger,
            "producer_batch_bytes": config.producer_batch_bytes,
            "commit_interval": config.commit_interval,
            "partitions": config.partitions,
        },
    }
    if args.workers > 1:
        # A deployment of its own (topics, group, tables) fed the same input.
        multi_cfg = dataclasses.replace(
            config,
            app_id=f"{config.app_id}-x{args.workers}",
            topic_prefix=f"{config.topic_prefix}x{args.workers}.",
        )
        await produce_lines(multi_cfg, lines, until=iso(end))
        multi = await run_workers(multi_cfg, folder / "multi", args.workers, total, args.timeout)
        result[f"workers_{args.workers}_events_per_s"] = round(events / multi["seconds"])
        result["multi_workers"] = args.workers
        print(f"{args.workers} workers: {events / multi['seconds']:,.0f} events/s")
    return result


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
    st = r["settings"]
    multi = ""
    if "multi_workers" in r:
        n = r["multi_workers"]
        multi = (
            f"| {n} workers of one app (same machine) | "
            f"{r[f'workers_{n}_events_per_s']:,} events/s |\n"
        )
    path.write_text(
        f"""# Benchmarks

Written by `make bench` (`retention bench --customers {r["customers"]}`); the latest run
is below, and `artifacts/bench.json` holds the same figures.  Compare ratios, not
absolute rates: every line below was measured in one run on a shared machine.

## Method

1. `retention local up` (single-node Kafka 3.9.2 + Redis on loopback, same machine).
2. A generated sample (`retention sample`: {r["customers"]} customers, {r["days"]} days) is
   produced to the input topics, with a `control/advance` marker at the end.
3. **Raw ceiling**: a bare aiokafka `getmany` + `orjson.loads` loop reads the input topics.
4. **Bare Faust agent** (`streams/bench_faust.py`): one Faust app with the worker's own
   settings, one agent over the input topics that only decodes (`async for value in
   stream`, then the same with `take_events`): what Faust itself costs per message.
5. **Worker**: one `retention worker` (stream clock, at-least-once, RocksDB, guardrails,
   conversions, read model, metrics and web on) processes the backlog; throughput =
   events / (first committed progress to zero lag on the input and internal topics,
   polled every 0.25 s).  *Tail* = from zero input lag to zero lag overall (the
   internal topic's backlog, the final `--until` advance and what it fires).
6. **2 workers**: the same input in a deployment of its own, two worker processes of
   one app sharing its {st["partitions"]} partitions.

## Latest run ({r["date"]})

Machine: {r["machine"]}

| figure | value |
|---|---|
| input messages | {r["input_messages"]:,} |
| produce rate (CLI producer) | {r["produce_msg_per_s"]:,} msg/s |
| raw consume + decode ceiling | {r["raw_consume_decode_msg_per_s"]:,} msg/s |
| bare Faust agent (`async for`) | {r["bare_faust_msg_per_s"]:,} msg/s |
| bare Faust agent (`take_events`) | {r["bare_faust_take_events_msg_per_s"]:,} msg/s |
| worker end-to-end | {r["worker_events_per_s"]:,} events/s ({r["worker_seconds"]} s) |
{multi}| tail after the inputs are consumed | {r["worker_tail_seconds"]} s |
| largest "woke up too late" drift in the worker log | {r["worker_max_drift_seconds"]} s |
| worker peak RSS | {r["worker_peak_rss_mb"]} MiB ({r["bytes_per_customer"]:,} bytes per customer) |
| **worker / bare Faust agent** | **{r["ratio_worker_to_bare_faust"]:.3f}** |
| worker / raw ceiling | {r["ratio_worker_to_raw"]:.4f} |

Settings: batch_max {st["batch_max"]}, batch_within {st["batch_within"]} s, producer linger
{st["producer_linger"]} s, producer batch {st["producer_batch_bytes"]:,} bytes, commit interval
{st["commit_interval"]} s.  See `docs/performance.md` for where the time goes, what
each setting did when measured, and the levers left.
"""
    )
