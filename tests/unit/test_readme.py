"""The docs hold to the code: docs/configuration.md's table is the settings'
declarations row for row, docs/operations.md's metrics table is what /metrics
exports, and the README's CLI table lists every command."""

from __future__ import annotations

import re
from pathlib import Path

from streams.config import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
# Read before the configuration is (it locates the stack file and the default data dir).
NOT_A_SETTING = {"RETENTION_HOME"}


def _table_rows() -> list[str]:
    return re.findall(r"^\| `RETENTION_[A-Z0-9_]+` \|.*\|$", CONFIGURATION, re.MULTILINE)


def test_every_setting_is_in_the_configuration_table() -> None:
    rows = set(re.findall(r"^\| `(RETENTION_[A-Z0-9_]+)` \|", CONFIGURATION, re.MULTILINE))
    expected = {s.env for s in SETTINGS}
    assert expected <= rows, sorted(expected - rows)
    assert rows - expected == NOT_A_SETTING, "rows that are no setting"


def test_each_row_is_the_declared_default_and_help_in_declaration_order() -> None:
    rows = [r for r in _table_rows() if r.split("`")[1] not in NOT_A_SETTING]
    expected = [f"| `{s.env}` | {s.default_text()} | {s.help} |" for s in SETTINGS]
    assert rows == expected, "\n".join(
        ["docs/configuration.md rows differ from streams.config.SETTINGS; expected:", *expected]
    )


def test_guardrail_defaults_in_the_configuration_table_match_the_code() -> None:
    from agents.core.settings import CoreSettings

    core = CoreSettings()
    table = dict(
        re.findall(r"^\| `(RETENTION_[A-Z_]+)` \| ([^|]+) \|", CONFIGURATION, re.MULTILINE)
    )
    assert float(table["RETENTION_HOLDOUT_PERCENT"]) == core.holdout_percent
    assert int(table["RETENTION_FREQUENCY_CAP"]) == core.frequency_cap
    assert table["RETENTION_MIN_GAP"].strip() == "P1D" and core.min_gap == 24 * 3600 * 10**6
    assert int(table["RETENTION_OVERDUE_MIN_ORDERS"]) == core.overdue_min_orders


def _section(heading: str) -> str:
    start = README.index(f"\n## {heading}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_the_cli_table_lists_every_command_and_no_other() -> None:
    from streams.cli import COMMANDS

    cells = re.findall(r"^\| (`retention [^|]*(?:\\\|[^|]*)*) \|", _section("CLI"), re.MULTILINE)
    named = {m for cell in cells for m in re.findall(r"`retention ([a-z-]+)", cell)}
    assert named == set(COMMANDS), (sorted(set(COMMANDS) - named), sorted(named - set(COMMANDS)))


def _documented_metrics() -> set[str]:
    """The first column of docs/operations.md's "Metrics" table."""
    start = OPERATIONS.index("\n## Metrics\n")
    section = OPERATIONS[start : OPERATIONS.index("\n## ", start + 1)]
    return set(re.findall(r"^\| `(retention_[a-z_]+(?:\{[a-z_,]+\})?)` \|", section, re.MULTILINE))


def _exported_metrics() -> set[str]:
    """Every family /metrics renders, as the docs write it: name{label,...}."""
    from streams.worker.metrics import Metrics
    from streams.worker.observe import Snapshot

    metrics = Metrics(lambda: Snapshot(at=0, worker="w", url="u", clock_mode="stream"))
    out = set()
    for family in metrics.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = list(getattr(family, "_labelnames", ()))
        out.add(f"{name}{{{','.join(labels)}}}" if labels else name)
    return out


def test_the_metrics_list_is_what_metrics_exports() -> None:
    exported = _exported_metrics()
    assert len(exported) > 15
    listed = _documented_metrics()
    assert listed == exported, (sorted(exported - listed), sorted(listed - exported))


def test_the_readme_says_where_the_retention_command_is() -> None:
    quick_start = _section("Quick start: two commands")
    assert "`.venv/bin/retention" in quick_start
    assert ".venv/bin/retention" in _section("CLI")
