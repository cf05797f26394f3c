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
    assert "dead letters" in out
    assert re.search(r"^\s+second_purchase\s+step 1\s+\d+$", out, re.MULTILINE)
    assert out.count("trigger_id ") == 5
    # Guardrails and lift are on screen: every suppression reason, the control group.
    for reason in ("holdout", "opted_out", "min_gap", "frequency_cap"):
        assert re.search(rf"^\s+{reason}\s+\d+$", out, re.MULTILINE), reason
    assert re.search(r"^suppressed\s+[1-9]\d*", out, re.MULTILINE)
    assert re.search(r"second_purchase\s+step 1\s+delivered\s+\d+/[1-9]\d*\s+holdout", out)
    assert "lifecycle stages" in out
    # The lifecycle (docs/lifecycle.md): its inputs forwarded, and each rule
    # lifecycle.toml adds firing (the anniversaries: first orders over a year old).
    for kind in ("signup", "product_view", "cart", "order_cancelled"):
        assert re.search(rf"\b{kind} [1-9]\d*", out), kind
    assert "lifecycle rules (lifecycle.toml)" in out
    for rule in ("welcome", "browse_abandonment", "cart_abandonment", "order_milestone"):
        assert re.search(rf"^\s+{rule}\s+[1-9]\d*\s+[1-9]\d*", out, re.MULTILINE), rule
    assert re.search(r"^\s+cart_abandonment\s+.*\([1-9]\d* carts\)$", out, re.MULTILINE)
    assert re.search(r"^\s+anniversary\s+[1-9]\d*", out, re.MULTILINE)
    # Lift is shown with its caveat: the generated customers ignore nudges.
    lift_at = out.index("lift per rule and step")
    assert "do not react to nudges" in out[lift_at : lift_at + 300]
    # "Where to look next" names only what outlives the demo: the sample it kept,
    # the stack to bring back; no dashboard URL, as the worker stops with the demo.
    [sample] = re.findall(r"retention report --from-file (\S+)", out)
    assert Path(sample).is_file() and Path(sample).stat().st_size > 0
    sent = re.search(r"^sample: (\d+) messages", out, re.MULTILINE)
    assert sent and len(Path(sample).read_bytes().splitlines()) == int(sent[1])
    assert "`retention local up` brings it" in out
    assert "dashboard:" not in out and "dashboard stops with the worker" in out
    assert "local stack stopped" in out
    # Nothing left running from the demo's own stack.
    assert not (tmp_path / "home" / "run" / "stack.json").exists()
