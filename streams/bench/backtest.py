"""The backtest's rate and peak memory: ``python -m streams.bench.backtest``.

On the bench's generated sample (``--customers`` 10000, ``--days`` 365, seed 7, as
``retention bench`` and ``python -m streams.bench_core`` generate it) and on a history
``--scale`` (10) times larger (that many times the customers), each written to a
file: ``retention rules backtest`` is run on each file in a process of its own with
``--workers`` (the cores) and measured there.  Figures per history: input lines,
seconds, rate (non-blank input lines per second, as ``retention bench`` counts
events), the measuring process's peak RSS (the sort and the tallies), the largest
worker's (``getrusage(RUSAGE_CHILDREN)``) and their bound parent + workers x largest
worker.  ``retention bench`` runs it and writes the figures to docs/benchmarks.md
and artifacts/bench.json; alone it prints them as JSON.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from streams.config import load_config
from streams.feed.sample import default_end, generate
from streams.ops.backtest import RulesFile, backtest

SEED = 7
# The configuration's rules and guardrails (today's three rules).
RULES = RulesFile("default rules", None)


def write_history(path: Path, customers: int, days: int) -> int:
    """The bench sample for ``customers`` into ``path``; its line count."""
    lines = 0
    with path.open("wb") as out:
        for line in generate(customers, days, seed=SEED, end=default_end()):
            out.write(line + b"\n")
            lines += 1
    return lines


def measure(path: Path, workers: int) -> dict[str, Any]:
    """Run the backtest on ``path`` in this process; its figures (call it in a fresh one)."""
    start = time.perf_counter()
    result = backtest(str(path), load_config(use_stack_file=False), RULES, workers=workers)
    seconds = time.perf_counter() - start
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    lines = result.tally.lines
    return {
        "lines": lines,
        "customers": result.tally.customers,
        "decisions": sum(n for k, n in result.tally.counts.items() if ":" not in k[3]),
        "workers": result.workers,
        "chunks": result.chunks,
        "seconds": round(seconds, 2),
        "events_per_s": round(lines / seconds) if seconds > 0 else 0,
        "peak_rss_parent_mb": round(parent / 2**20),
        "peak_rss_worker_mb": round(child / 2**20),
        "peak_rss_bound_mb": round((parent + result.workers * child) / 2**20),
    }


def _child(*args: str) -> bytes:
    return subprocess.run(
        [sys.executable, "-m", "streams.bench.backtest", *args],
        check=True,
        stdout=subprocess.PIPE,
    ).stdout


def run(customers: int, days: int, scale: int, workers: int) -> dict[str, Any]:
    """Both histories, each generated and measured in a process of its own."""
    sizes = [("sample", customers)] + ([(f"x{scale}", customers * scale)] if scale > 1 else [])
    out: dict[str, Any] = {"customers": customers, "days": days, "scale": scale}
    with tempfile.TemporaryDirectory(prefix="retention-bench-backtest-") as folder:
        for name, n in sizes:
            path = Path(folder) / f"{name}.jsonl"
            _child("--generate", str(path), "--customers", str(n), "--days", str(days))
            figures = orjson.loads(_child("--measure", str(path), "--workers", str(workers)))
            out[name] = {"customers_generated": n, **figures}
            path.unlink()
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=10_000, help="the sample (10000)")
    parser.add_argument("--days", type=int, default=365, help="days of history (365)")
    parser.add_argument("--scale", type=int, default=10, help="the larger history (10x)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--generate", metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--measure", metavar="PATH", help=argparse.SUPPRESS)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.bench.backtest", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.generate:
        write_history(Path(args.generate), args.customers, args.days)
        return
    if args.measure:
        figures = measure(Path(args.measure), args.workers)
    else:
        figures = run(args.customers, args.days, args.scale, args.workers)
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
