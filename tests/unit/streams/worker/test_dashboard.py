"""deploy/grafana/retention-dashboard.json against what a worker's /metrics renders
(docs/operations.md, "Dashboard and alerts"): every family streams/worker/metrics.py
renders, so every metric an alert rule fires on, has a panel, and every panel uses
only rendered metrics and labels.  Rendered from a Snapshot, no worker."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.unit.streams.worker.test_alert_rules import problems, rendered, rules

DASHBOARD = Path(__file__).resolve().parents[4] / "deploy" / "grafana" / "retention-dashboard.json"


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


# Grafana unit ids (its valueFormats): what each panel's numbers are.
UNITS = {"short", "ops", "s", "dateTimeAsIso"}
# Stat panels: the value that is healthy, and one that needs a look.
STAT_HEALTH = {
    "Workers ready": (1, 0),
    "Partitions owned": (2, 0),
    "Redis up (read model)": (1, 0),
    "Topics with a wrong partition count": (0, 1),
}


def color_at(panel: dict[str, Any], value: float) -> str:
    """The colour Grafana's absolute thresholds give ``value`` (the last step it reaches)."""
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[0]["value"] is None  # the base step covers everything below the rest
    reached = [s for s in steps if s["value"] is None or value >= s["value"]]
    return str(reached[-1]["color"])


def test_every_panel_says_its_unit() -> None:
    for panel in panels():
        config = panel["fieldConfig"]
        assert config["defaults"]["unit"] in UNITS, panel["title"]
        for override in config.get("overrides", []):
            assert override["matcher"]["id"] == "byFrameRefID"
            assert override["matcher"]["options"] in {t["refId"] for t in panel["targets"]}
            assert [p["id"] for p in override["properties"]] == ["unit"]
    # A per-second rate of a counter is ops/s; a quantile of durations is seconds.
    exprs = {p["title"]: p["targets"][0]["expr"] for p in panels()}
    rates = {t for t, e in exprs.items() if "rate(" in e and "histogram_quantile" not in e}
    assert rates and {by_title(t)["fieldConfig"]["defaults"]["unit"] for t in rates} == {"ops"}
    quantiles = {t for t, e in exprs.items() if "histogram_quantile" in e}
    assert {by_title(t)["fieldConfig"]["defaults"]["unit"] for t in quantiles} == {"s"}


def by_title(title: str) -> dict[str, Any]:
    return next(p for p in panels() if p["title"] == title)


def test_stat_panels_turn_red_when_something_needs_a_look() -> None:
    stats = {p["title"]: p for p in panels() if p["type"] == "stat"}
    assert set(stats) == set(STAT_HEALTH)
    for title, (healthy, bad) in STAT_HEALTH.items():
        panel = stats[title]
        assert panel["fieldConfig"]["defaults"]["color"]["mode"] == "thresholds"
        assert (color_at(panel, healthy), color_at(panel, bad)) == ("green", "red"), title
