"""The unit tier (`make unit`) starts no broker, Redis or worker process."""

from __future__ import annotations

from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent

# Session fixtures of tests/fixtures/ that start real services.
SERVICE_FIXTURES = {"local_stack"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Called with every collected item of the session (`make test` collects all tiers).
    for item in items:
        if not item.path.resolve().is_relative_to(UNIT):
            continue
        used = SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
        if used:
            raise pytest.UsageError(
                f"{item.nodeid} uses {sorted(used)}: a unit test may not start services; "
                "move it to tests/integration or tests/e2e"
            )
