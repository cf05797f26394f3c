"""The README's configuration table lists every setting, with the real default."""

from __future__ import annotations

import re
from pathlib import Path

from streams.config import ENV_KEYS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    rows = set(re.findall(r"^\| `(RETENTION_[A-Z0-9_]+)` \|", README, re.MULTILINE))
    expected = {f"RETENTION_{key.upper()}" for key in ENV_KEYS}
    assert expected <= rows, sorted(expected - rows)


def test_guardrail_defaults_in_the_readme_match_the_code() -> None:
    from agents.core.settings import CoreSettings

    core = CoreSettings()
    table = dict(re.findall(r"^\| `(RETENTION_[A-Z_]+)` \| ([^|]+) \|", README, re.MULTILINE))
    assert float(table["RETENTION_HOLDOUT_PERCENT"]) == core.holdout_percent
    assert int(table["RETENTION_FREQUENCY_CAP"]) == core.frequency_cap
    assert table["RETENTION_MIN_GAP"].strip() == "P1D" and core.min_gap == 24 * 3600 * 10**6
    assert int(table["RETENTION_OVERDUE_MIN_ORDERS"]) == core.overdue_min_orders
