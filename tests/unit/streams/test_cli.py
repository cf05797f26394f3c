"""How the `retention` commands fail (README "CLI"): one line on stderr and an exit
status, never a traceback; a reader that goes away is not an error."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    env.update(RETENTION_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    env.update({f"RETENTION_{k}": v for k, v in settings.items()})
    return env


def retention(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=tmp_path,
        env=cli_env(tmp_path, **settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def events(tmp_path: Path) -> str:
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"schema":"purchase/1","event_id":"e1","customer_id":"c1",'
        '"occurred_at":"2026-03-02T10:00:00Z","order_id":"o1","amount":"5","currency":"EUR"}\n'
    )
    return str(path)


@pytest.mark.parametrize(
    "command",
    [["produce", "EVENTS"], ["replay", "EVENTS", "--until", "latest"], ["tail", "nudges"]],
    ids=lambda c: c[0],
)
def test_kafka_unreachable_is_one_line_and_exit_1(
    command: list[str], events: str, tmp_path: Path
) -> None:
    port = closed_port()
    args = [events if a == "EVENTS" else a for a in command]
    out = retention(tmp_path, *args, KAFKA=f"127.0.0.1:{port}")
    assert out.returncode == 1, out.stderr
    assert out.stderr.splitlines() == [out.stderr.strip()], out.stderr  # one line
    assert out.stderr.startswith(f"retention: cannot reach Kafka at 127.0.0.1:{port}")
    assert "Traceback" not in out.stderr and "Unclosed" not in out.stderr


@pytest.mark.parametrize("command", [["produce", "EVENTS"], ["tail", "nudges"]], ids=str)
def test_a_missing_tls_ca_file_is_one_line_naming_the_setting(
    command: list[str], events: str, tmp_path: Path
) -> None:
    args = [events if a == "EVENTS" else a for a in command]
    out = retention(
        tmp_path,
        *args,
        KAFKA=f"127.0.0.1:{closed_port()}",
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CAFILE=str(tmp_path / "no-such-ca.pem"),
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [
        f"retention: configuration error: RETENTION_KAFKA_SSL_CAFILE: cannot use "
        f"{tmp_path / 'no-such-ca.pem'}: No such file or directory"
    ]


def test_schema_piped_into_a_reader_that_goes_away_exits_quietly(tmp_path: Path) -> None:
    # `retention schema asyncapi | head -1`: the reader has gone before the write.
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "schema", "asyncapi"],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert err == ""
