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

from agents.core.timeutil import iso, parse_timestamp, to_micros
from streams.bench import backtest as backtest_bench
from streams.bench import churn as churn_bench
from streams.bench import views as views_bench
from streams.bench import windows as windows_bench
from streams.bench.report import percentile, write_report
from streams.config import Config
from streams.feed.producer import produce_lines
from streams.feed.sample import default_end, generate
from streams.kafka import client_kwargs
from streams.local.procs import LocalStackError
from streams.local.workers import (
    borrowed_stack,
    start_worker,
    stop_worker,
    stream_deployment,
    worker_env,
)
from streams.ops.offsets import end_offsets, group_lag

ROOT = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=10_000, help="customers (10000)")
    parser.add_argument("--days", type=int, default=365, help="days of history (365)")
    parser.add_argument(
        "--timeout", type=float, default=7200, help="seconds to wait for the worker"
    )
    parser.add_argument("--workers", type=int, default=2, help="also run N workers (2; 1 = skip)")
    parser.add_argument(
        "--recovery",
        action="store_true",
        help="also time a worker recovering the whole table on an empty data dir",
    )
    parser.add_argument(
        "--wall-clock-latency",
        type=int,
        default=0,
        metavar="N",
        help="also measure, in wall-clock mode, the delay from due time to the nudge for "
        "N customers whose first step falls due during the run (0 = skip)",
    )
    parser.add_argument(
        "--skip-bare",
        action="store_true",
        help="skip the raw and bare-Faust lines (no ratios; for the large-scale figures)",
    )
    parser.add_argument(
        "--skip-backtest",
        action="store_true",
        help="skip `retention rules backtest` on the sample and a history --backtest-scale "
        "times larger",
    )
    parser.add_argument(
        "--backtest-scale", type=int, default=10, help="the backtest's larger history (10x)"
    )
    parser.add_argument(
        "--skip-windows",
        action="store_true",
        help="skip the zones + send windows runs (per-message CPU, windows on / off)",
    )
    parser.add_argument(
        "--windows-rounds",
        type=int,
        default=2,
        help="runs with zones + windows, each followed by one without (2)",
    )
    parser.add_argument(
        "--skip-churn",
        action="store_true",
        help="skip the churn_risk runs (per-message CPU, the rule on / off)",
    )
    parser.add_argument(
        "--churn-rounds",
        type=int,
        default=3,
        help="runs with a churn_risk rule, each followed by one without (3)",
    )
    parser.add_argument(
        "--skip-views",
        action="store_true",
        help="skip the product-views runs (the sample with --lifecycle against the one "
        "without: the worker's events/s, issue 24)",
    )
    parser.add_argument(
        "--views-rounds",
        type=int,
        default=1,
        help="runs on the views sample, each followed by one on the orders-and-sessions sample (1)",
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
    if not args.skip_backtest:
        # No broker involved: measured after the stack's workers are gone.
        result["backtest"] = backtest_bench.run(
            args.customers, args.days, args.backtest_scale, os.cpu_count() or 1
        )
        print(f"backtest: {result['backtest']['sample']['events_per_s']:,} events/s")
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
    """Messages per second of a bare Faust agent (streams.bench.bare_faust) over the inputs."""
    out = folder / f"bare-{mode}.json"
    out.unlink(missing_ok=True)
    log = open(folder / f"bare-{mode}.log", "ab")  # noqa: SIM115 - owned by the child
    child = subprocess.Popen(
        [sys.executable, "-m", "streams.bench.bare_faust"],
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
    config: Config,
    folder: Path,
    count: int,
    total: int,
    timeout: float,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start ``count`` workers of one app on the backlog; time until zero lag.

    Returns the seconds from the first committed progress to zero lag on the
    inputs and the internal topic, the tail (input lag zero to all lag zero: the
    final ``--until`` advance and what it fires), and the largest "woke up too
    late" drift Faust logged.  ``env``: ``RETENTION_*`` settings the workers get on
    top of ``config`` (a rules file).
    """
    workers = []
    for i in range(count):
        sub = folder / f"worker-{i}"
        cfg = dataclasses.replace(config, data_dir=sub / "data", web_port=config.web_port + i)
        workers.append((_start(cfg, sub, **env) if env else start_worker(cfg, sub), sub))
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
        cpu = [_cpu_seconds(w.pid) for w, _ in workers]
        for w, _ in workers:
            stop_worker(w)
    drift = max((_max_drift(sub / "worker.log") for _, sub in workers), default=0.0)
    return {
        "seconds": last - first,
        "tail_seconds": last - (inputs_done or last),
        "max_drift_seconds": drift,
        "peak_rss_bytes": max(rss) if rss else 0,
        "cpu_seconds": sum(cpu),
    }


_DRIFT = re.compile(r"woke up too late, with a drift of \+?([0-9.]+)")


def _max_drift(log: Path) -> float:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0.0
    return max((float(m) for m in _DRIFT.findall(text)), default=0.0)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used; 0 if unknown.  Steadier
    than a rate on a shared machine: other load stretches the wall clock, not this."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _peak_rss(pid: int) -> int:
    """Peak resident set (VmHWM) of a live process, in bytes; 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _start(config: Config, folder: Path, **env: str) -> subprocess.Popen[bytes]:
    """A worker of ``config`` (``start_worker``, with ``RETENTION_*`` overrides)."""
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / "worker.log", "ab")  # noqa: SIM115 - owned by the child
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker"],
        env={**worker_env(config), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def _ready(config: Config, worker: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until the worker's ``/health/ready`` answers 200 (tables recovered)."""
    import aiohttp

    url = f"http://127.0.0.1:{config.web_port}/health/ready"
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        while time.perf_counter() - started < timeout:
            if worker.poll() is not None:
                raise RuntimeError("the worker exited before it was ready")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - started
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the worker was not ready within {timeout} s")


async def recovery(config: Config, folder: Path, timeout: float) -> dict[str, Any]:
    """Start a worker of the processed deployment on an empty data dir: the time from
    process start to ready is the recovery of the whole table from its changelog."""
    changelog = f"{config.app_id}-customers-changelog"
    rows = sum((await end_offsets(config, [changelog])).values())
    cfg = dataclasses.replace(config, data_dir=folder / "data")
    worker = _start(cfg, folder)
    try:
        seconds = await _ready(cfg, worker, timeout)
        rss = _peak_rss(worker.pid)
    finally:
        stop_worker(worker)
    return {"seconds": seconds, "changelog_messages": rows, "peak_rss_bytes": rss}


async def wall_clock_latency(
    config: Config, folder: Path, customers: int, timeout: float
) -> dict[str, Any]:
    """Due time -> nudge on ``retention.nudges`` under the wall clock.

    A deployment of its own with ``RETENTION_CLOCK=wall``: once its worker is
    ready, ``customers`` first orders are produced, dated so that each one's first
    second-purchase step (7 days) falls due at a distinct instant of a window that
    starts after they are all in; the delay of a nudge is its Kafka timestamp (set
    when the worker sends it) minus its ``due_at``.
    """
    cfg = dataclasses.replace(
        config,
        clock="wall",
        app_id=f"{config.app_id}-wall",
        topic_prefix=f"{config.topic_prefix}wall.",
    )
    worker = _start(cfg, folder, RETENTION_CLOCK="wall")
    try:
        await _ready(cfg, worker, timeout)
        lead = 15 + customers / 5_000  # seconds: every order is in before the first is due
        window = max(30.0, customers / 1_000)
        start = int((time.time() + lead) * 1_000_000)
        step = int(window * 1_000_000) // max(1, customers)
        seven_days = 7 * 86_400 * 1_000_000
        lines = [
            orjson.dumps(
                {
                    "schema": "purchase/1",
                    "event_id": f"wall-{i:08d}",
                    "customer_id": f"wall-{i:08d}",
                    "occurred_at": iso(start + i * step - seven_days),
                    "order_id": f"wall-order-{i:08d}",
                    "amount": "10.00",
                    "currency": "EUR",
                    "channel": "web",
                }
            )
            for i in range(customers)
        ]
        await produce_lines(cfg, lines)
        delays = await _nudge_delays(cfg, window + lead + 60, quiet=10.0)
    finally:
        stop_worker(worker)
    return {
        "customers": customers,
        "nudges": len(delays),
        "p50_seconds": percentile(delays, 0.50),
        "p99_seconds": percentile(delays, 0.99),
        "max_seconds": max(delays, default=0.0),
        "tick_interval": cfg.tick_interval,
    }


async def _nudge_delays(config: Config, timeout: float, quiet: float) -> list[float]:
    """Seconds from due_at to the Kafka timestamp of every nudge, until ``quiet``
    seconds pass without one after the first (or ``timeout``)."""
    consumer = AIOKafkaConsumer(
        config.topics.nudges,
        **client_kwargs(config),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    delays: list[float] = []
    try:
        started = last = time.perf_counter()
        while time.perf_counter() - started < timeout:
            batch = await consumer.getmany(timeout_ms=500)
            now = time.perf_counter()
            for records in batch.values():
                for rec in records:
                    due = to_micros(parse_timestamp(orjson.loads(rec.value or b"{}")["due_at"]))
                    delays.append(rec.timestamp / 1000 - due / 1_000_000)
                    last = now
            if delays and now - last > quiet:
                break
    finally:
        await consumer.stop()
    return delays


async def bench(config: Config, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    end = default_end()
    lines = list(generate(args.customers, args.days, seed=7, end=end))
    t0 = time.perf_counter()
    await produce_lines(config, lines, until=iso(end))
    produce_rate = len(lines) / (time.perf_counter() - t0)
    total = sum((await end_offsets(config, config.topics.inputs())).values())
    events = sum(1 for line in lines if line.strip())
    folder.mkdir(parents=True, exist_ok=True)

    ceiling = bare = bare_batch = 0.0
    if not args.skip_bare:
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
        "worker_cpu_seconds": round(one["cpu_seconds"], 1),
        "bytes_per_customer": round(one["peak_rss_bytes"] / max(1, args.customers)),
        "ratio_worker_to_bare_faust": round(worker_rate / bare, 3) if bare else None,
        "ratio_worker_to_raw": round(worker_rate / ceiling, 4) if ceiling else None,
        "settings": {
            "batch_max": config.batch_max,
            "batch_within": config.batch_within,
            "producer_linger": config.producer_linger,
            "producer_batch_bytes": config.producer_batch_bytes,
            "commit_interval": config.commit_interval,
            "partitions": config.partitions,
        },
    }
    if args.recovery:
        rec = await recovery(config, folder / "recovery", args.timeout)
        result["recovery"] = {
            "seconds": round(rec["seconds"], 1),
            "changelog_messages": rec["changelog_messages"],
            "peak_rss_mb": round(rec["peak_rss_bytes"] / 2**20),
        }
        print(f"recovery on an empty data dir: {rec['seconds']:.1f} s to ready")
    if args.wall_clock_latency:
        lat = await wall_clock_latency(
            config, folder / "wall", args.wall_clock_latency, args.timeout
        )
        result["wall_clock_latency"] = {
            k: round(v, 3) if isinstance(v, float) else v for k, v in lat.items()
        }
        print(
            f"wall clock: {lat['nudges']} nudges, due -> nudge p50 {lat['p50_seconds']:.2f} s, "
            f"p99 {lat['p99_seconds']:.2f} s"
        )
    if not args.skip_windows and args.windows_rounds > 0:
        result["windows"] = await windows_run(config, args, folder, end, lines, total, one)
    if not args.skip_churn and args.churn_rounds > 0:
        result["churn"] = await churn_run(config, args, folder, end, lines, total, one)
    if not args.skip_views and args.views_rounds > 0:
        result["views"] = await views_run(config, args, folder, end, lines, one)
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


async def windows_run(
    config: Config,
    args: argparse.Namespace,
    folder: Path,
    end: int,
    lines: list[bytes],
    total: int,
    off: dict[str, Any],
) -> dict[str, Any]:
    """``--windows-rounds`` times: one worker on the sample with zones and a
    file-default send window, then one without either, each in a deployment of its
    own; per-message CPU against the runs without (``off`` the first), in this run."""
    rules = folder / "windows.toml"
    rules.write_text(windows_bench.windows_rules_text())
    zoned = list(generate(args.customers, args.days, seed=7, end=end, options=windows_bench.ZONED))
    figures = await paired_runs(
        config, args, folder, end, "windows", rules, zoned, lines, total, off, args.windows_rounds
    )
    _print_pair("zones + windows", figures)
    return figures


async def churn_run(
    config: Config,
    args: argparse.Namespace,
    folder: Path,
    end: int,
    lines: list[bytes],
    total: int,
    off: dict[str, Any],
) -> dict[str, Any]:
    """``--churn-rounds`` times: one worker on the sample with the default rules plus
    a churn_risk ladder on MBG/NBD fitted on the sample (streams/bench/churn.py), then
    one with the default rules alone; per-message CPU against the runs without."""
    rules = folder / "churn.toml"
    rules.write_text(
        churn_bench.churn_rules_text(lines, end, config.max_message_bytes, config.min_event_time)
    )
    figures = await paired_runs(
        config, args, folder, end, "churn", rules, lines, lines, total, off, args.churn_rounds
    )
    _print_pair("churn_risk", figures)
    return figures


def _print_pair(label: str, figures: dict[str, Any]) -> None:
    print(
        f"{label}: {figures['on_us_per_message']} µs CPU per message, without "
        f"{figures['off_us_per_message']}: {figures['ratio_on_to_off']} x "
        f"(runs without {figures['noise_off_runs']} apart)"
    )


async def paired_runs(
    config: Config,
    args: argparse.Namespace,
    folder: Path,
    end: int,
    name: str,
    rules: Path,
    on_lines: list[bytes],
    off_lines: list[bytes],
    total: int,
    off: dict[str, Any],
    rounds: int,
) -> dict[str, Any]:
    """``rounds`` times: one worker on ``on_lines`` with the rules file ``rules``,
    then one on ``off_lines`` with the default rules, each in a deployment of its own
    (``off``, the bench's worker line, is the first run without)."""

    def own(suffix: str) -> Config:
        return dataclasses.replace(
            config,
            app_id=f"{config.app_id}-{suffix}",
            topic_prefix=f"{config.topic_prefix}{suffix}.",
        )

    events = sum(1 for line in on_lines if line.strip())
    on_runs: list[dict[str, Any]] = []
    off_runs = [off]
    for i in range(rounds):
        on_cfg = own(f"{name}{i}")
        await produce_lines(on_cfg, on_lines, until=iso(end))
        env = {"RETENTION_RULES_FILE": str(rules)}
        on_runs.append(
            await run_workers(on_cfg, folder / f"{name}{i}", 1, total, args.timeout, env)
        )
        off_cfg = own(f"no{name}{i}")
        await produce_lines(off_cfg, off_lines, until=iso(end))
        off_runs.append(await run_workers(off_cfg, folder / f"no{name}{i}", 1, total, args.timeout))
    figures = windows_bench.cpu_figures(
        total, [r["cpu_seconds"] for r in off_runs], [r["cpu_seconds"] for r in on_runs]
    )
    figures["off_events_per_s"] = [round(events / r["seconds"]) for r in off_runs]
    figures["on_events_per_s"] = [round(events / r["seconds"]) for r in on_runs]
    return figures


async def views_run(
    config: Config,
    args: argparse.Namespace,
    folder: Path,
    end: int,
    lines: list[bytes],
    base: dict[str, Any],
) -> dict[str, Any]:
    """``--views-rounds`` times: one worker on the views sample (the sample with
    ``--lifecycle``), then one on the orders-and-sessions sample, each in a deployment
    of its own with the default rules; events/s against the runs without (``base``, the
    worker line, first), in this run (streams/bench/views.py)."""

    def own(name: str) -> Config:
        return dataclasses.replace(
            config, app_id=f"{config.app_id}-{name}", topic_prefix=f"{config.topic_prefix}{name}."
        )

    viewed = list(generate(args.customers, args.days, seed=7, end=end, options=views_bench.VIEWS))
    events = sum(1 for line in lines if line.strip())
    viewed_events = sum(1 for line in viewed if line.strip())
    base_runs = [(events, base["seconds"], base["cpu_seconds"])]
    views_runs = []
    for i in range(args.views_rounds):
        on_cfg = own(f"views{i}")
        await produce_lines(on_cfg, viewed, until=iso(end))
        total = sum((await end_offsets(on_cfg, on_cfg.topics.inputs())).values())
        run = await run_workers(on_cfg, folder / f"views{i}", 1, total, args.timeout)
        views_runs.append((viewed_events, run["seconds"], run["cpu_seconds"]))
        off_cfg = own(f"noviews{i}")
        await produce_lines(off_cfg, lines, until=iso(end))
        total = sum((await end_offsets(off_cfg, off_cfg.topics.inputs())).values())
        run = await run_workers(off_cfg, folder / f"noviews{i}", 1, total, args.timeout)
        base_runs.append((events, run["seconds"], run["cpu_seconds"]))
    figures = views_bench.rate_figures(base_runs, views_runs)
    figures["sample"] = views_bench.kinds(viewed)
    figures["views_input_messages"] = viewed_events
    print(
        f"views sample: {figures['views_events_per_s']} events/s against "
        f"{figures['base_events_per_s']} without views: {figures['ratio_views_to_base']} x "
        f"(criterion {views_bench.CRITERION}; runs without {figures['noise_base_runs']} apart)"
    )
    return figures


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
