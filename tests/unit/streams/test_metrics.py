"""/metrics text: the Prometheus parser reads it back with the counters' values."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from streams.app import RetentionApp
from streams.config import load_config


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_parse_and_carry_the_worker_counters() -> None:
    rapp = RetentionApp(load_config({"RETENTION_STORE": "memory://"}, use_stack_file=False))
    rapp.ingest.accepted = 12
    rapp.ingest.dead_letters.update({"invalid_json": 2, "missing_field": 1})
    rapp.processor.counters.update({"events": 10, "duplicates": 2})
    rapp.processor.decision_counts.update(
        {("inactivity", 1, "delivered"): 3, ("second_purchase", 2, "holdout"): 1}
    )
    rapp.readmodel.mark(0, "c-1", b"{}")
    rapp.metrics.tick_duration.observe(0.004)

    values = parse(rapp.metrics.render().decode())

    assert values[("retention_events_accepted_total", ())] == 12
    assert values[("retention_events_processed_total", (("result", "duplicate"),))] == 2
    assert values[("retention_dead_letters_total", (("code", "invalid_json"),))] == 2
    key = (("outcome", "holdout"), ("rule", "second_purchase"), ("step", "2"))
    assert values[("retention_decisions_total", key)] == 1
    assert values[("retention_read_model_lag", ())] == 1
    assert values[("retention_tick_duration_seconds_count", ())] == 1
    assert values[("retention_tick_duration_seconds_bucket", (("le", "0.005"),))] == 1
    assert values[("retention_due_index_size", ())] == 0
    assert values[("retention_ready", ())] == 0  # no table recovered: not started
