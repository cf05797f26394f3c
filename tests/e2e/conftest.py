"""End-to-end fixtures: isolated deployments of real workers on the session's broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.local.stack import StackInfo
from tests.e2e.harness import Deployment
from tests.fixtures.kafka import RestartableStack


@pytest.fixture
def deployment(local_stack: StackInfo, unique_prefix: str, tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(local_stack.kafka, local_stack.redis, unique_prefix, tmp_path)
    try:
        yield dep
    finally:
        dep.stop_all()
        for w in dep.workers:
            if w.proc is not None and w.proc.returncode not in (0, None, -15):
                print(f"--- {w.name} log tail ---\n{w.log_tail()}")


@pytest.fixture
def make_deployment(local_stack: StackInfo, tmp_path: Path) -> Iterator[object]:
    """Factory for tests that need several independent deployments."""
    import secrets

    made: list[Deployment] = []

    def make(**extra_env: str) -> Deployment:
        prefix = f"t{secrets.token_hex(3)}."
        dep = Deployment(
            local_stack.kafka, local_stack.redis, prefix, tmp_path / prefix, extra_env=extra_env
        )
        made.append(dep)
        return dep

    try:
        yield make
    finally:
        for dep in made:
            dep.stop_all()


@pytest.fixture
def restartable_stack(tmp_path: Path) -> Iterator[RestartableStack]:
    """A broker + redis-server of this test's own, whose broker it may stop and start."""
    stack = RestartableStack(tmp_path / "own-stack")
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
