"""`retention worker` refuses a rules file that cannot run: one line on stderr and a
non-zero exit before it connects anywhere, never half a rule set (docs/rules.md
"Checks")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.unit.streams.test_cli import retention

BAD = """format = 1

[[rule]]
name = "vip"
priority = 10
anchor = "first_order"
steps = ["P7D", "P3D"]
colour = "gold"
"""


def test_the_worker_refuses_an_invalid_rules_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(BAD)
    started = time.monotonic()
    # Port 1: nothing listens there, so a worker that tried to connect would hang
    # on retries instead of exiting.
    out = retention(tmp_path, "worker", KAFKA="127.0.0.1:1", RULES_FILE=str(path))
    assert time.monotonic() - started < 30
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [out.stderr.strip()], out.stderr  # one line
    assert out.stderr.startswith(
        f"retention: configuration error: RETENTION_RULES_FILE={path}: 2 problems, first: "
    )
    assert out.stderr.strip().endswith(f"run retention rules check {path}")
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("alias", ["MIN_GAP", "INACTIVITY_STEPS"])
def test_the_worker_refuses_an_alias_beside_a_rules_file(tmp_path: Path, alias: str) -> None:
    path = Path(__file__).resolve().parents[3] / "docs" / "examples" / "rules" / "collide.toml"
    value = "P2D" if alias == "MIN_GAP" else "P1D,P2D"
    out = retention(tmp_path, "worker", KAFKA="127.0.0.1:1", RULES_FILE=str(path), **{alias: value})
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [
        f"retention: configuration error: RETENTION_RULES_FILE={path}: RETENTION_{alias} is "
        'also set; set it in the rules file (docs/rules.md "Environment aliases")'
    ]
