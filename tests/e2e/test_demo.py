"""`make demo` end to end: its own local stack, a worker, a sample, the summary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.config import default_home

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]


def test_demo_prints_a_summary_and_stops_what_it_started(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    env["RETENTION_HOME"] = str(tmp_path / "home")
    # Reuse this machine's jar cache instead of downloading again.
    jars = default_home() / "jars"
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "jars").symlink_to(jars)
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo", "--customers", "400", "--exit-after-summary"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "retention-processor demo summary" in out
    assert re.search(r"^customers\s+400$", out, re.MULTILINE)
    assert "dead letters" in out and "second_purchase   step 1" in out
    assert out.count("trigger_id ") == 5
    # Guardrails and lift are on screen: every suppression reason, the control group.
    for reason in ("holdout", "opted_out", "min_gap", "frequency_cap"):
        assert re.search(rf"^\s+{reason}\s+\d+$", out, re.MULTILINE), reason
    assert re.search(r"^suppressed\s+[1-9]\d*", out, re.MULTILINE)
    assert re.search(r"second_purchase\s+step 1\s+delivered\s+\d+/[1-9]\d*\s+holdout", out)
    assert "lifecycle stages" in out
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/retention/$", out, re.MULTILINE)
    assert "local stack stopped" in out
    # Nothing left running from the demo's own stack.
    assert not (tmp_path / "home" / "run" / "stack.json").exists()
