"""The rules topic on the session's broker (docs/operations.md "Changing rules live"):
the first worker seeds it; a worker started with a file other than the newest
published version refuses to start with one line; `retention rules publish` writes
the version and a marker to every input partition."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from agents.core.rules import default_text, load_rules
from agents.core.rules.history import set_id
from agents.core.timeutil import iso, parse_timestamp, to_micros
from streams.config import load_config
from streams.local.stack import StackInfo
from streams.ops.offsets import read_all
from streams.ops.registry import published, read_registry, write_version

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SEED = default_text()
SOONER = SEED.replace('steps = ["P7D", "P14D", "P30D"]', 'steps = ["P5D", "P14D", "P30D"]')


def retention(
    stack: StackInfo, prefix: str, tmp_path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    base.update(
        RETENTION_HOME=str(tmp_path / "home"),
        RETENTION_KAFKA=stack.kafka,
        RETENTION_REDIS=stack.redis,
        RETENTION_TOPIC_PREFIX=prefix,
        RETENTION_APP_ID=f"{prefix}app",
        RETENTION_DATA_DIR=str(tmp_path / "data"),
        RETENTION_CLOCK="stream",
        RETENTION_PARTITIONS="2",
        PYTHONPATH=str(ROOT),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=tmp_path,
        env=base,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


async def test_a_worker_with_a_file_other_than_the_published_one_refuses_to_start(
    local_stack: StackInfo, unique_prefix: str, tmp_path: Path
) -> None:
    config = load_config(
        {
            "RETENTION_KAFKA": local_stack.kafka,
            "RETENTION_TOPIC_PREFIX": unique_prefix,
            "RETENTION_PARTITIONS": "2",
        },
        use_stack_file=False,
    )
    await write_version(config, published(SEED, None, 0))
    path = tmp_path / "sooner.toml"
    path.write_text(SOONER)
    started = time.monotonic()
    out = retention(local_stack, unique_prefix, tmp_path, "worker", RETENTION_RULES_FILE=str(path))
    assert time.monotonic() - started < 60
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.startswith("retention: ")]
    assert lines == [
        f"retention: RETENTION_RULES_FILE={path} is version {set_id(load_rules(SOONER))}, but "
        f"the deployment runs version {set_id(load_rules(SEED))} (the seed); publish it with "
        f"retention rules publish {path}, or unset RETENTION_RULES_FILE"
    ], out.stderr[-2000:]
    assert "Traceback" not in out.stderr

    # Publishing the file is the way: then the same worker command is accepted.
    at = to_micros(parse_timestamp("2026-06-01T00:00:00Z"))
    pub = retention(
        local_stack, unique_prefix, tmp_path, "rules", "publish", str(path), "--effective", iso(at)
    )
    assert pub.returncode == 0, pub.stderr
    vid = set_id(load_rules(SOONER))
    assert pub.stdout.startswith(f"{path}: version {vid} effective {iso(at)} published to ")
    # Every partition of every input topic (docs/rules.md "Changing rules").
    inputs = len(config.topics.inputs()) * config.partitions
    assert inputs == 14  # 7 input topics (docs/lifecycle.md "Inputs") x 2 partitions
    assert f"marker written to {inputs} input partitions" in pub.stdout
    registry = await read_registry(config)
    assert [(p.id, p.effective_at) for p in registry.versions] == [
        (set_id(load_rules(SEED)), None),
        (vid, at),
    ]
    markers = [orjson.loads(v) for t in config.topics.inputs() for v in await read_all(config, t)]
    assert len(markers) == inputs
    assert {(m["schema"], m["version"], m["effective_at"]) for m in markers} == {
        ("control/rules", vid, iso(at))
    }
