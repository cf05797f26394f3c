"""README "Send your own events (kcat)": the section's three ``sh`` blocks, run as
written with kcat against the session's broker and a real stream-mode worker, send
the events and the ``control/advance`` and read the nudge back.

The blocks are read out of README.md, so the docs and this test cannot drift; only
``$BROKER``, ``$PREFIX`` and ``$PARTITIONS`` come from the test's deployment.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from tests.e2e.harness import Deployment
from tests.fixtures import tools
from tests.fixtures.contracts import errors

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### Send your own events (kcat)"


def section_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n#", start + len(SECTION))
    return re.findall(r"```sh\n(.*?)```", text[start:end], re.DOTALL)


def require_kcat() -> str:
    return tools.require("kcat", "apt-get install kcat")


def run(block: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{block}\n--- stderr ---\n{done.stderr}"
    return done.stdout


def test_the_section_has_send_advance_and_read_blocks() -> None:
    send, advance, read = section_blocks()
    assert send.count("kcat -P") == 3 and "control/advance" in advance and "kcat -C" in read


async def test_readme_kcat_commands_send_events_advance_the_clock_and_read_the_nudge(
    deployment: Deployment,
) -> None:
    require_kcat()
    send, advance, read = section_blocks()
    worker = deployment.start_worker()
    await worker.wait_ready()  # it created the topics with RETENTION_PARTITIONS partitions
    env = os.environ | {
        "BROKER": deployment.kafka,
        "PREFIX": deployment.prefix,
        "PARTITIONS": str(deployment.config.partitions),
    }
    run(send, env)
    run(advance, env)
    deadline = time.monotonic() + 45
    lines: list[str] = []
    while not lines and time.monotonic() < deadline:
        lines = [line for line in run(read, env).splitlines() if line.strip()]
        if not lines:
            await asyncio.sleep(1)
    assert len(lines) == 1, lines
    key, _, value = lines[0].partition(" ")
    nudge = orjson.loads(value)
    assert key == nudge["customer_id"] == "cus_000481"
    assert (nudge["rule"], nudge["step"], nudge["due_at"]) == (
        "second_purchase",
        1,
        "2026-03-09T10:15:00Z",
    )
    assert errors("nudge", nudge) == []
    # The three events were accepted; the markers are no events and no dead letters.
    assert await worker.metric("retention_events_accepted_total") == 3
