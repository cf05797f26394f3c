"""deploy/grafana/retention-dashboard.json against what a worker's /metrics renders
(docs/operations.md, "Dashboard and alerts"): every family streams/metrics.py
renders, so every metric an alert rule fires on, has a panel, and every panel uses
only rendered metrics and labels.  Rendered from a Snapshot, no worker."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.unit.streams.test_alert_rules import problems, rendered, rules

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "retention-dashboard.json"


def panels() -> list[dict[str, Any]]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return list(doc["panels"])


def family(name: str) -> str:
    """The family of a sample name (a counter's _total, a histogram's _bucket...)."""
    return re.sub(r"_(total|bucket|count|sum|created)$", "", name)


def families(expr: str) -> set[str]:
    return {family(n) for n in re.findall(r"\bretention_[a-z0-9_]+\b", expr)}


def shown() -> set[str]:
    return {f for panel in panels() for t in panel["targets"] for f in families(t["expr"])}


def test_every_rendered_family_has_a_panel() -> None:
    assert {family(n) for n in rendered()} - shown() == set()


def test_every_metric_an_alert_fires_on_has_a_panel() -> None:
    alerted = {f for rule in rules() for f in families(rule["expr"])}
    assert "retention_partition_mismatch" in alerted
    assert alerted - shown() == set()


def test_every_panel_uses_rendered_metrics_and_labels() -> None:
    exported = rendered()
    found = {
        f"{panel['title']} {t['refId']}": problems(t["expr"], exported)
        for panel in panels()
        for t in panel["targets"]
    }
    assert {where: p for where, p in found.items() if p} == {}


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))
    for panel in panels():
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
