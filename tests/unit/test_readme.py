"""The README's configuration table is the settings' declarations, row for row."""

from __future__ import annotations

import re
from pathlib import Path

from streams.config import SETTINGS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
# Read before the configuration is (it locates the stack file and the default data dir).
NOT_A_SETTING = {"RETENTION_HOME"}


def _table_rows() -> list[str]:
    return re.findall(r"^\| `RETENTION_[A-Z0-9_]+` \|.*\|$", README, re.MULTILINE)


def test_every_setting_is_in_the_configuration_table() -> None:
    rows = set(re.findall(r"^\| `(RETENTION_[A-Z0-9_]+)` \|", README, re.MULTILINE))
    expected = {s.env for s in SETTINGS}
    assert expected <= rows, sorted(expected - rows)
    assert rows - expected == NOT_A_SETTING, "rows that are no setting"


def test_each_row_is_the_declared_default_and_help_in_declaration_order() -> None:
    rows = [r for r in _table_rows() if r.split("`")[1] not in NOT_A_SETTING]
    expected = [f"| `{s.env}` | {s.default_text()} | {s.help} |" for s in SETTINGS]
    assert rows == expected, "\n".join(
        ["README rows differ from streams/config.py SETTINGS; expected:", *expected]
    )


def test_guardrail_defaults_in_the_readme_match_the_code() -> None:
    from agents.core.settings import CoreSettings

    core = CoreSettings()
    table = dict(re.findall(r"^\| `(RETENTION_[A-Z_]+)` \| ([^|]+) \|", README, re.MULTILINE))
    assert float(table["RETENTION_HOLDOUT_PERCENT"]) == core.holdout_percent
    assert int(table["RETENTION_FREQUENCY_CAP"]) == core.frequency_cap
    assert table["RETENTION_MIN_GAP"].strip() == "P1D" and core.min_gap == 24 * 3600 * 10**6
    assert int(table["RETENTION_OVERDUE_MIN_ORDERS"]) == core.overdue_min_orders
