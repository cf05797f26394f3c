"""deploy/prometheus/alerts.yml against what a worker's /metrics renders (docs/operations.md
"Operations"): every metric a rule uses, with every label it groups or selects by,
is on /metrics when every family has samples, so the rules cannot rot when a
metric is renamed.  Rendered from a Snapshot, no worker (tests/e2e/test_ops.py
checks the same against a real worker after a replay).  And each rule fires, and
stays silent, when Prometheus itself evaluates it: ``promtool test rules`` over
deploy/prometheus/alerts.test.yml (docs/operations.md, "Dashboard and alerts")."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from streams.worker.metrics import Metrics
from streams.worker.observe import (
    PartitionClock,
    PartitionRules,
    ReadModelStatus,
    RulesVersion,
    Snapshot,
)
from tests.fixtures import tools

RULES = Path(__file__).resolve().parents[4] / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = RULES.with_name("alerts.test.yml")
NOW = 1_772_000_000_000_000
# Labels Prometheus attaches to every scraped series, and the histogram bucket label.
SCRAPE_LABELS = {"instance", "job", "le"}
# The failure signals docs/operations.md "What to alert on" names, each with its rule.
SIGNALS = {
    "RetentionWorkerDown",  # Prometheus's own `up`
    "RetentionWorkerNotReady",
    "RetentionConsumerLagGrowing",
    "RetentionStreamClockStuck",
    "RetentionPartitionMismatch",
    "RetentionDeadLettersRising",
    "RetentionReadModelBehind",
    "RetentionReadModelRedisDown",
    "RetentionReadModelErrors",
    "RetentionNoDecisions",
    "RetentionRulesLate",
}


def rendered() -> dict[str, set[str]]:
    """Sample name -> its labels, from a snapshot where every family has a sample."""
    snap = Snapshot(
        at=NOW,
        worker="127.0.0.1:6066",
        url="http://127.0.0.1:6066",
        clock_mode="stream",
        ready=True,
        owned=(0,),
        accepted=3,
        events=2,
        duplicates=1,
        ingest_dead_letters={"invalid_json": 1},
        customer_dead_letters={"future_timestamp": 1},
        late={"retention.sessions": 1},
        decisions={("inactivity", 1, "delivered"): 1},
        windowed_rules=("inactivity",),
        deferred={"inactivity": 1},
        clocks=(
            PartitionClock(
                0, watermark=NOW - 10**6, advanced_at=NOW - 10**6, due=1, since=NOW - 10**6
            ),
        ),
        lag={"retention.purchases": 5},
        read_model=ReadModelStatus(redis_up=True, lag=1, oldest_age=2.0, errors=1, written=1),
        partition_warnings={"retention.consents": "3 partitions, RETENTION_PARTITIONS is 4"},
        rules=(PartitionRules(0, (RulesVersion("0123456789ab", None, None, True, False),)),),
        rules_late=1,
    )
    metrics = Metrics(lambda: snap)
    metrics.tick_duration.observe(0.01)
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        assert family.samples, f"{family.name} has no sample: extend the snapshot"
        for s in family.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def problems(expr: str, exported: dict[str, set[str]]) -> list[str]:
    """What in ``expr`` a worker's /metrics does not carry."""
    names = set(re.findall(r"\bretention_[a-z0-9_]+\b", expr))
    if not names and "up{" not in expr:
        return ["uses no retention metric"]
    out = [f"{n} is not rendered" for n in sorted(names - set(exported))]
    labels = set().union(*(exported.get(n, set()) for n in names)) if names else set()
    grouped = {
        label.strip()
        for group in re.findall(r"\bby \(([^)]*)\)", expr)
        for label in group.split(",")
    }
    selected = set(re.findall(r"[{,]\s*([a-z_]+)\s*=~?", expr))
    out += [
        f"label {la!r} not on {sorted(names)}"
        for la in sorted((grouped | selected) - SCRAPE_LABELS)
        if la not in labels
    ]
    return out


def test_every_metric_and_label_the_alert_rules_use_is_rendered() -> None:
    exported = rendered()
    found = {rule["alert"]: problems(rule["expr"], exported) for rule in rules()}
    assert {name: p for name, p in found.items() if p} == {}


def test_the_check_sees_a_renamed_metric_or_label() -> None:
    exported = rendered()
    assert problems("retention_ready_total == 0", exported) == [
        "retention_ready_total is not rendered"
    ]
    assert problems("max by (shard) (retention_consumer_lag) > 1", exported) == [
        "label 'shard' not on ['retention_consumer_lag']"
    ]


def test_each_failure_signal_has_a_complete_rule() -> None:
    found = rules()
    assert {r["alert"] for r in found} >= SIGNALS
    for rule in found:
        assert set(rule) >= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["alert"]


def promtool() -> str:
    """promtool's path; fails under CI (.ci/run installs Debian's prometheus), else skips."""
    return tools.require("promtool", "apt-get install prometheus")


def test_every_alert_rule_fires_and_stays_silent_as_its_promtool_tests_say() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_rule_has_a_firing_and_a_silent_promtool_case() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    assert doc["rule_files"] == [RULES.name]
    cases = [case for test in doc["tests"] for case in test["alert_rule_test"]]
    fired = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    names = {rule["alert"] for rule in rules()}
    assert (names - fired, names - silent) == (set(), set())
