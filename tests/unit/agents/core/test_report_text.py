"""The text rendering of a report (agents/core/report_text.py) shows its key numbers."""

from __future__ import annotations

from agents.core.report_text import render_report
from agents.core.reports import build_report
from agents.core.settings import DAY
from tests.unit.agents.core.test_reports import CRR_AS_OF, clv_rows, crr_rows, lift_rows, t


def test_render_report_shows_the_key_numbers() -> None:
    rows = [*crr_rows(), *lift_rows()]
    report = build_report(rows, as_of=CRR_AS_OF)
    text = render_report(report)
    assert report["schema"] == "report/1"
    assert "2026-03-15T00:00:00Z" in text
    for period in ("2025-12", "2026-01", "2026-02", "2026-03"):
        assert period in text
    assert "0.6667" in text and "1.333" in text and "0.25" in text  # CRR
    assert "(2 of 4)" in text  # RPR repeaters of buyers
    assert "30/100" in text and "20/100" in text  # lift group sizes
    assert "50" in text.split("Lift per rule and step")[1]
    assert "(to date)" in text  # the running month is marked


def test_render_report_shows_clv_arithmetic() -> None:
    text = render_report(build_report(clv_rows(), as_of=t(2025, 1, 1) + 365 * DAY))
    assert "100.00" in text and "800.00" in text
