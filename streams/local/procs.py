"""Small process and port helpers shared by the embedded Kafka and Redis.

Everything here talks only to 127.0.0.1 and only signals processes that the
caller names by pid and that still look like the process it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"

Say = Callable[[str], None]


def quiet(_: str) -> None:
    """A :data:`Say` that prints nothing."""


class LocalStackError(RuntimeError):
    """The local stack could not be started or stopped; the message says why and what to do."""


class MissingPrerequisite(LocalStackError):
    """A program the local stack needs is not installed."""


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (bound together, so never the same one twice)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


# Children this process started, so that stopping one also reaps it (no zombie
# that still "looks alive") and no Popen is collected while its child runs.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def spawn(argv: Sequence[str], *, log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start a long-running child in its own session (so its whole group can be stopped)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc


_HAS_PROCFS = Path("/proc/self").exists()


def _cmdline(pid: int) -> str | None:
    """The command line of a live process ("" if unknown), or None when gone or a zombie."""
    if not _HAS_PROCFS:  # e.g. macOS: all we can tell is that the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return ""
        return ""
    proc = Path("/proc") / str(pid)
    try:
        stat = (proc / "stat").read_text()
        # the field after the parenthesised command name is the state; Z = zombie
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
            return None
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return None


def pid_matches(pid: int | None, marker: str) -> bool:
    """True while ``pid`` is alive and is the process that was started with ``marker``.

    A child spawned by this very process is recognised by its handle (its pid
    cannot be reused before we reap it).  Otherwise its command line must
    contain ``marker`` (e.g. a path inside the run folder): that guards against
    signalling an unrelated process that reused the pid after ours died.
    """
    if not pid or pid <= 0:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    cmd = _cmdline(pid)
    return cmd is not None and (cmd == "" or marker in cmd)


def stop_pid(pid: int | None, marker: str, *, timeout: float = 20.0) -> bool:
    """SIGTERM the process group of ``pid``, wait, SIGKILL it after ``timeout``.

    Returns True when something was stopped; False when it was not running.
    """
    if not pid_matches(pid, marker):
        return False
    assert pid is not None
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_matches(pid, marker):
            return True
        time.sleep(0.1)
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and pid_matches(pid, marker):
        time.sleep(0.05)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # Children were started with start_new_session=True, so pgid == pid.
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file (empty if it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    interval: float = 0.25,
) -> float:
    """Poll ``check`` until it is true; returns seconds waited.

    Fails early when ``proc`` exits, and on timeout; both errors point at ``log_path``.
    """
    start = time.monotonic()
    where = f"; see {log_path}" if log_path else ""
    while True:
        if check():
            return time.monotonic() - start
        if proc is not None and proc.poll() is not None:
            last = tail(log_path) if log_path else ""
            raise LocalStackError(
                f"{what} exited with code {proc.returncode} during start-up{where}"
                + (f"\n--- last lines ---\n{last}" if last else "")
            )
        if time.monotonic() - start > timeout:
            last = tail(log_path) if log_path else ""
            raise LocalStackError(
                f"{what} was not ready after {timeout:.0f} s{where}"
                + (f"\n--- last lines ---\n{last}" if last else "")
            )
        time.sleep(interval)
