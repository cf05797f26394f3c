"""Operations endpoints on real workers: routed customer lookup, summary, health,
Prometheus /metrics and the dashboard files (docs/operations.md)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import orjson
import pytest
import yaml
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families

from agents.core.timeutil import parse_timestamp, to_micros
from agents.offline.reference import compute_decisions
from streams.asyncapi import published
from streams.config import Config
from streams.feed.sample import generate
from tests.e2e.harness import Deployment, WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

END = "2026-06-01T00:00:00Z"


def metric_values(text: str) -> dict[str, float]:
    """Every sample as ``name{label="v",...}`` -> value, parsed by prometheus_client."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def total(values: dict[str, float], name: str) -> float:
    return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))


async def two_ready_workers(dep: Deployment) -> list[WorkerProcess]:
    workers = [dep.start_worker(), dep.start_worker()]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        owned: list[list[int]] = []
        for w in workers:
            status, _, body = await w.get("/health/ready", timeout=2)
            owned.append(orjson.loads(body)["partitions"] if status == 200 else [])
        if all(owned) and sorted(p for ps in owned for p in ps) == [0, 1, 2, 3]:
            return workers
        for w in workers:
            assert w.alive, w.log_tail()
        await asyncio.sleep(1)
    raise TimeoutError("the two workers never shared the four partitions")


async def test_lookup_is_routed_to_the_owner_and_metrics_parse(deployment: Deployment) -> None:
    lines = list(generate(300, 90, seed=5, end=to_micros(parse_timestamp(END))))
    ref = compute_decisions(lines, Config(), until=to_micros(parse_timestamp(END)))
    w1, w2 = await two_ready_workers(deployment)
    await deployment.produce(lines, until=END)
    await deployment.wait_idle(timeout=300)

    # Who owns what, as each worker reports it.
    owner_of_partition: dict[int, WorkerProcess] = {}
    for w in (w1, w2):
        ready = await w.get_json("/health/ready")
        assert ready["ready"] is True
        for p in ready["partitions"]:
            owner_of_partition[p] = w
    partitioner = DefaultPartitioner()

    # Every customer asked through both workers: the same answer, from the owner.
    customers = sorted(ref.facts)[:24]
    routed = 0
    for cid in customers:
        partition = partitioner(cid.encode(), [0, 1, 2, 3], [0, 1, 2, 3])
        owner = owner_of_partition[partition]
        answers = [await w.get_json(f"/retention/customers/{cid}") for w in (w1, w2)]
        assert answers[0] == answers[1]
        got = answers[0]
        assert got["served_by"] == owner.address
        assert got["customer_id"] == cid
        assert got["state"]["partition"] == partition
        assert got["state"]["orders"] == ref.facts[cid].order_count
        assert "recent_event_ids" not in got["state"]
        assert {"event_ids", "order_ids", "pending"}.isdisjoint(got["state"])
        assert got["state"]["pending_events"] >= 0
        assert isinstance(got["pending"], list) and isinstance(got["recent_decisions"], list)
        assert isinstance(got["holdout"], bool)
        routed += 1  # one of the two requests went to the worker that does not own it
    assert routed == len(customers)
    assert {owner_of_partition[p] for p in range(4)} == {w1, w2}

    for w in (w1, w2):
        status, ctype, body = await w.get("/retention/customers/no-such-customer")
        assert status == 404 and ctype.startswith("application/json")
        assert orjson.loads(body)["error"] == "unknown customer"

    # /metrics parses with the Prometheus parser and adds up to what the topics hold.
    values = []
    for w in (w1, w2):
        status, ctype, body = await w.get("/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        values.append(metric_values(body.decode()))
    decisions = await deployment.read(deployment.config.topics.decisions)
    dead = await deployment.read(deployment.config.topics.dlq)
    assert sum(total(v, "retention_decisions_total") for v in values) == len(decisions)
    assert sum(total(v, "retention_dead_letters_total") for v in values) == len(dead)
    assert sum(total(v, "retention_dead_letters_total") for v in values) == sum(
        ref.dead_letters.values()
    )
    for v in values:
        assert v["retention_ready"] == 1.0
        assert v["retention_partitions_owned"] == 2.0
        assert "retention_tick_duration_seconds_count" in v
        assert "retention_due_index_size" in v
        assert total(v, "retention_consumer_lag") == 0
        assert "retention_read_model_lag" in v

    # The summary: each worker's share adds up to the whole.
    summaries = [await w.get_json("/retention/summary") for w in (w1, w2)]
    assert all(s["schema"] == "summary/1" for s in summaries)
    assert sorted(p for s in summaries for p in s["scope"]["partitions"]) == [0, 1, 2, 3]
    assert sum(s["counts"]["customers"] for s in summaries) == ref.customers
    assert sum(s["counts"]["decisions"] for s in summaries) == len(decisions)
    assert sum(sum(s["dead_letters"].values()) for s in summaries) == len(dead)
    assert sum(s["report"]["customers"] for s in summaries) == ref.customers
    for s in summaries:
        assert s["clock"]["mode"] == "stream" and s["clock"]["watermark"] is not None
        assert s["read_model"]["enabled"] is True
        assert s["scope"]["scope"] == "local" and s["freshness"]["age_seconds"] >= 0

    # The cluster summary, from either worker, is the whole; it says how old it is.
    for w in (w1, w2):
        status, _, body = await w.get("/retention/summary?scope=cluster")
        assert status == 200
        cluster = orjson.loads(body)
        assert cluster["scope"]["all_partitions"] is True
        assert cluster["counts"]["customers"] == ref.customers
        assert cluster["counts"]["decisions"] == len(decisions)
        assert cluster["report"]["customers"] == ref.customers
        assert {"age_seconds", "built_at", "refreshing"} <= set(cluster["freshness"])
    # What a worker hands the fan-out: its counters and clocks, report inputs on request.
    part = await w1.get_json("/retention/summary/part")
    assert sorted(int(p) for p in part["watermarks"]) == part["partitions"]
    assert "inputs" not in part
    part = await w1.get_json("/retention/summary/part?as_of=1800000000000000")
    assert part["inputs"]["schema"] == "report-inputs/1"
    assert part["inputs"]["customers"] == summaries[0]["counts"]["customers"]
    for path in ("/retention/summary?scope=everything", "/retention/summary/part?as_of=soon"):
        status, _, body = await w1.get(path)
        assert status == 400 and b"error" in body, path

    # Faust's own stats stay on; its table pages (raw customer rows) are off.
    assert (await w1.get("/"))[0] == 200
    assert (await w1.get("/table/customers/"))[0] == 404
    assert (await w1.get("/health/live"))[0] == 200


async def test_dashboard_files_and_no_directory_traversal(deployment: Deployment) -> None:
    w = deployment.start_worker()
    await w.wait_ready()
    status, ctype, body = await w.get("/retention/")
    assert status == 200 and ctype.startswith("text/html") and b"<html" in body.lower()
    status, ctype, _ = await w.get("/retention/static/dashboard.css")
    assert status == 200 and ctype.startswith("text/css")
    for path in (
        "/retention/static/..%2F..%2Fapp.py",
        "/retention/static/%2E%2E%2Fviews.py",
        "/retention/static/.hidden",
        "/retention/static/missing.js",
    ):
        status, _, body = await w.get(path)
        assert status == 404, (path, status)
        assert b"import" not in body


# --- ops artefacts (deploy/) and the AsyncAPI document, against a real worker ----------

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# Labels Prometheus itself attaches to every scraped series, and the histogram bucket label.
SCRAPE_LABELS = {"instance", "job", "le"}
# A replay that ends with `--until` produces no late events, and topics made by the
# worker have the right partition count; streams/worker/metrics.py labels both by topic.
LABELS_WITHOUT_SAMPLES = {
    "retention_late_events": {"topic"},
    "retention_partition_mismatch": {"topic"},
    # Only rules with a send window have series (docs/operations.md "Metrics").
    "retention_deferred_firings": {"rule"},
}


def artefact_expressions() -> dict[str, str]:
    """Every PromQL expression of the Grafana dashboard and the alert rules, by where it is."""
    exprs: dict[str, str] = {}
    dashboard = json.loads((DEPLOY / "grafana" / "retention-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            exprs[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            exprs[f"alert {rule['alert']}"] = rule["expr"]
    return exprs


async def test_dashboard_and_alerts_use_only_exported_metrics_and_asyncapi_is_served(
    deployment: Deployment,
) -> None:
    w = deployment.start_worker()
    await w.wait_ready()
    # A sample with duplicates, late and malformed messages, so every labelled family has samples.
    lines = list(generate(150, 60, seed=11, end=to_micros(parse_timestamp(END))))
    await deployment.produce(lines, until=END)
    await deployment.wait_idle(timeout=300)

    status, _, body = await w.get("/metrics")
    assert status == 200
    labels_of: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels_of.setdefault(sample.name, set()).update(sample.labels)
        if not family.samples and family.name in LABELS_WITHOUT_SAMPLES:
            # Declared on /metrics (HELP/TYPE) but no sample in this run: its code-side labels.
            suffix = "_total" if family.type == "counter" else ""
            labels_of[family.name + suffix] = LABELS_WITHOUT_SAMPLES[family.name]

    exprs = artefact_expressions()
    assert len(exprs) >= 20
    alerts = {where for where in exprs if where.startswith("alert ")}
    assert {
        "alert RetentionConsumerLagGrowing",
        "alert RetentionStreamClockStuck",
        "alert RetentionDeadLettersRising",
        "alert RetentionReadModelBehind",
        "alert RetentionWorkerNotReady",
        "alert RetentionWorkerDown",
        "alert RetentionPartitionMismatch",
        "alert RetentionReadModelErrors",
    } <= alerts
    used: set[str] = set()
    for where, expr in exprs.items():
        names = set(re.findall(r"\bretention_[a-z0-9_]+\b", expr))
        assert names or "up{" in expr, where
        for name in names:
            assert name in labels_of, f"{where}: {name} is not on a worker's /metrics"
        used |= names
        exported = set().union(*(labels_of[n] for n in names)) if names else set()
        grouped = {
            label.strip()
            for group in re.findall(r"\bby \(([^)]*)\)", expr)
            for label in group.split(",")
        }
        selected = set(re.findall(r"[{,]\s*([a-z_]+)\s*=~?", expr))
        for label in (grouped | selected) - SCRAPE_LABELS:
            assert label in exported, f"{where}: label {label!r} not on {sorted(names)}"
    # Panels and rules together cover every family the worker exports (the dashboard
    # alone: tests/unit/streams/worker/test_dashboard.py).
    exported_families = {re.sub(r"_(total|bucket|count|sum|created)$", "", n) for n in labels_of}
    assert {re.sub(r"_(total|bucket)$", "", n) for n in used} == {
        n for n in exported_families if n.startswith("retention_")
    }

    # The topic contract, with this deployment's effective (prefixed) topic names.
    served = await w.get_json("/retention/asyncapi")
    assert served == published(deployment.config.topics)
    assert served["asyncapi"] == "3.0.0"
    assert sorted(c["address"] for c in served["channels"].values()) == sorted(
        deployment.config.topics.all()
    )
