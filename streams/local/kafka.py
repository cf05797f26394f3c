"""An embedded single-node Apache Kafka broker (KRaft) for development and tests.

The broker runs as ``java kafka.Kafka server.properties`` with combined
broker+controller roles, listeners on 127.0.0.1 only, and settings sized for one
machine (replication 1, few internal partitions, small heap).  Its jars are cached
once per machine by :mod:`streams.local.jars`.

``python -m streams.local.kafka --fetch`` downloads the jars ahead of time;
``--lock`` rewrites ``kafka-jars.lock`` from Maven's resolution.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import struct
import subprocess
import sys
import uuid
from pathlib import Path

from streams.local.jars import (
    JAR_LOCK,
    KAFKA_VERSION,
    POM,
    ensure_jars,
    jar_cache_dir,
    maven_resolution,
    write_lock,
)
from streams.local.prereqs import find_mvn
from streams.local.procs import LOOPBACK, LocalStackError, spawn

HEAP_OPTS = ("-Xmx512m", "-Xms256m")
# The JVM flags Kafka's own kafka-run-class.sh uses, minus the GC logging.
JVM_OPTS = (
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
MAIN_CLASS = "kafka.Kafka"
FORMAT_TIMEOUT = 120.0


# --- configuration --------------------------------------------------------------------


def random_cluster_id() -> str:
    """A KRaft cluster id, as ``kafka-storage.sh random-uuid`` makes it.

    Kafka's ``Uuid.randomUuid()`` is 16 random bytes in URL-safe base64 without
    padding, never starting with '-'.  Done in Python to save a JVM start.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def server_properties(*, port: int, controller_port: int, data_dir: Path) -> str:
    """A combined broker+controller on loopback, sized for one small machine."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{LOOPBACK}:{controller_port}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "group.initial.rebalance.delay.ms": "0",
        # Kafka's default; the worker creates its own topics with the right partitions.
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        # The default 128 MiB buffer is most of a small heap; Kafka insists on
        # strictly more than 1 MiB per cleaner thread (1048576 itself is refused).
        "log.cleaner.dedupe.buffer.size": "4194304",
        "log.cleaner.threads": "1",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def log4j_properties(log_file: Path) -> str:
    """Everything the broker logs goes to one rolling file under the run folder."""
    return "\n".join(
        [
            "log4j.rootLogger=INFO, file",
            "log4j.appender.file=org.apache.log4j.RollingFileAppender",
            f"log4j.appender.file.File={log_file}",
            "log4j.appender.file.MaxFileSize=20MB",
            "log4j.appender.file.MaxBackupIndex=2",
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n",
            "log4j.logger.kafka=INFO",
            "log4j.logger.org.apache.kafka=INFO",
            "log4j.logger.state.change.logger=WARN",
            "log4j.logger.kafka.request.logger=WARN",
            "log4j.logger.kafka.log.LogCleaner=WARN",
            "log4j.logger.org.apache.kafka.raft=WARN",
            "",
        ]
    )


# --- the broker process ---------------------------------------------------------------


class KafkaPaths:
    """Where one broker keeps its files inside a run folder."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.config_dir = run_dir / "kafka"
        self.data_dir = run_dir / "kafka" / "data"
        self.properties = self.config_dir / "server.properties"
        self.log4j = self.config_dir / "log4j.properties"
        self.log = run_dir / "logs" / "kafka.log"
        self.console_log = run_dir / "logs" / "kafka-console.log"


def start_broker(
    libs: Path,
    run_dir: Path,
    *,
    port: int,
    controller_port: int,
    java: str = "java",
) -> subprocess.Popen[bytes]:
    """Write the configuration, format storage if new, and start the broker (not yet ready)."""
    paths = KafkaPaths(run_dir)
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    paths.properties.write_text(
        server_properties(port=port, controller_port=controller_port, data_dir=paths.data_dir)
    )
    paths.log4j.write_text(log4j_properties(paths.log))
    base = [
        java,
        *HEAP_OPTS,
        *JVM_OPTS,
        f"-Dlog4j.configuration={paths.log4j.as_uri()}",
        f"-Dkafka.logs.dir={paths.log.parent}",
        "-cp",
        f"{libs}{os.sep}*",
    ]
    if not (paths.data_dir / "meta.properties").is_file():
        _format_storage(base, paths, cwd=run_dir)
    argv = [*base, MAIN_CLASS, str(paths.properties)]
    return spawn(argv, log_path=paths.console_log, cwd=run_dir)


def _format_storage(base: list[str], paths: KafkaPaths, *, cwd: Path) -> None:
    """``kafka-storage.sh format`` for a new data folder (a JVM start of a few seconds)."""
    try:
        fmt = subprocess.run(
            [
                *base,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                random_cluster_id(),
                "-c",
                str(paths.properties),
                "--ignore-formatted",
            ],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=FORMAT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise LocalStackError(
            f"formatting Kafka storage in {paths.data_dir} took over {FORMAT_TIMEOUT:.0f} s"
        ) from None
    if fmt.returncode != 0:
        raise LocalStackError(
            f"formatting Kafka storage in {paths.data_dir} failed (exit {fmt.returncode}):\n"
            + "\n".join((fmt.stdout + fmt.stderr).splitlines()[-20:])
        )


def _metadata_request(correlation_id: int) -> bytes:
    client_id = b"retention-local"
    # Metadata v1 (api key 3): header v1, then an empty topic array = "brokers only".
    body = struct.pack(">hhih", 3, 1, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)
    return struct.pack(">i", len(body)) + body


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def broker_count(host: str, port: int, *, timeout: float = 2.0) -> int:
    """How many live brokers the cluster reports in a Metadata response (0 if none / no answer).

    A KRaft broker lists itself only once it has registered with the controller
    and been unfenced, i.e. when clients can really use it.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_metadata_request(7))
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            payload = _recv_exact(sock, size)
    except (OSError, ConnectionError, struct.error):
        return 0
    correlation_id, brokers = struct.unpack(">ii", payload[:8])
    return brokers if correlation_id == 7 else 0


def is_ready(bootstrap: str, *, timeout: float = 2.0) -> bool:
    host, _, port = bootstrap.rpartition(":")
    return broker_count(host, int(port), timeout=timeout) > 0


# --- command line: prefetch the jars --------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.local.kafka",
        description=f"Manage the cached Apache Kafka {KAFKA_VERSION} jars of the local stack.",
    )
    parser.add_argument("--fetch", action="store_true", help="download the jars if not cached")
    parser.add_argument("--path", action="store_true", help="print the jar cache folder")
    parser.add_argument(
        "--lock",
        action="store_true",
        help=f"rewrite {JAR_LOCK.name} from what mvn resolves for {POM.name} (needs mvn)",
    )
    args = parser.parse_args(argv)
    cache = jar_cache_dir()
    if args.lock:
        mvn = find_mvn()
        if mvn is None:
            print("retention local: --lock needs mvn on the PATH", file=sys.stderr)
            return 1
        jars = maven_resolution(mvn.path)
        write_lock(jars)
        print(f"wrote {len(jars)} jars to {JAR_LOCK}")
        return 0
    if args.fetch:
        try:
            ensure_jars(cache, say=lambda line: print(line, file=sys.stderr))
        except LocalStackError as exc:
            print(f"retention local: {exc}", file=sys.stderr)
            return 1
        print(f"Apache Kafka {KAFKA_VERSION} jars ready in {cache / 'libs'}")
        return 0
    if args.path:
        print(cache)
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
