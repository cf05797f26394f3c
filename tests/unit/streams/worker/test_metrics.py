"""/metrics text from a worker snapshot: the Prometheus parser reads it back with the
counters' values (no Faust app: streams.worker.metrics reads only streams.worker.observe)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from agents.core.guardrails import OUTCOMES, WINDOW_OUTCOMES
from agents.core.timeutil import iso
from streams.worker.metrics import METRICS, Metrics, decision_series
from streams.worker.observe import (
    PartitionClock,
    PartitionRules,
    ReadModelStatus,
    RulesVersion,
    Snapshot,
)
from tests.fixtures.windows import windowed

NOW = 1_772_000_000_000_000


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def snapshot(**kw: object) -> Snapshot:
    base: dict[str, object] = {
        "at": NOW,
        "worker": "127.0.0.1:6066",
        "url": "http://127.0.0.1:6066",
        "clock_mode": "stream",
    }
    return Snapshot(**{**base, **kw})  # type: ignore[arg-type]


def test_metrics_parse_and_carry_the_worker_counters() -> None:
    snap = snapshot(
        accepted=12,
        ingest_dead_letters={"invalid_json": 2, "missing_field": 1},
        events=10,
        duplicates=2,
        decisions={("inactivity", 1, "delivered"): 3, ("second_purchase", 2, "holdout"): 1},
        read_model=ReadModelStatus(lag=1),
    )
    metrics = Metrics(lambda: snap)
    metrics.tick_duration.observe(0.004)

    values = parse(metrics.render().decode())

    assert values[("retention_events_accepted_total", ())] == 12
    assert values[("retention_events_processed_total", (("result", "duplicate"),))] == 2
    assert values[("retention_events_processed_total", (("result", "applied"),))] == 10
    assert values[("retention_dead_letters_total", (("code", "invalid_json"),))] == 2
    key = (("outcome", "holdout"), ("rule", "second_purchase"), ("step", "2"))
    assert values[("retention_decisions_total", key)] == 1
    assert values[("retention_read_model_lag", ())] == 1
    assert values[("retention_tick_duration_seconds_count", ())] == 1
    assert values[("retention_tick_duration_seconds_bucket", (("le", "0.005"),))] == 1
    assert values[("retention_due_index_size", ())] == 0
    assert values[("retention_ready", ())] == 0  # no table recovered: not started


def test_clocks_partitions_lag_and_read_model_come_from_the_snapshot() -> None:
    snap = snapshot(
        ready=True,
        owned=(0, 2),
        clocks=(
            PartitionClock(
                0,
                watermark=NOW - 60_000_000,
                advanced_at=NOW - 30_000_000,
                due=4,
                since=NOW - 30_000_000,
            ),
            PartitionClock(2, watermark=0, advanced_at=0, due=1),  # never moved: no clock
        ),
        lag={"retention.purchases": 7},
        late={"retention.sessions": 2},
        ingest_dead_letters={"invalid_json": 2},
        customer_dead_letters={"invalid_json": 1, "invalid_internal_message": 4},
        read_model=ReadModelStatus(redis_up=True, resync_partitions=1, written=5, skipped=2),
    )
    values = parse(Metrics(lambda: snap).render().decode())

    assert values[("retention_ready", ())] == 1
    assert values[("retention_partitions_owned", ())] == 2
    assert values[("retention_due_index_size", ())] == 5
    assert (
        values[("retention_stream_clock_seconds", (("partition", "0"),))]
        == (NOW - 60_000_000) / 1e6
    )
    assert values[("retention_stream_clock_stalled_seconds", (("partition", "0"),))] == 30
    assert ("retention_stream_clock_seconds", (("partition", "2"),)) not in values
    assert values[("retention_stream_clock_stuck_seconds", (("partition", "0"),))] == 0
    assert values[("retention_consumer_lag", (("topic", "retention.purchases"),))] == 7
    assert values[("retention_late_events_total", (("topic", "retention.sessions"),))] == 2
    # Ingest's and the customer processor's dead letters add up by code.
    assert values[("retention_dead_letters_total", (("code", "invalid_json"),))] == 3
    key = (("code", "invalid_internal_message"),)
    assert values[("retention_dead_letters_total", key)] == 4
    assert values[("retention_read_model_redis_up", ())] == 1
    assert values[("retention_read_model_resync_partitions", ())] == 1
    assert values[("retention_read_model_writes_total", (("result", "skipped"),))] == 2


def test_rules_versions_in_force_scheduled_and_late_are_on_metrics() -> None:
    # docs/rules.md "Changing rules": partition 0 runs the seed with a change scheduled;
    # partition 1 learned of an older change late and runs it.
    seed = RulesVersion("aaaaaaaaaaaa", None, None, True, False)
    old = RulesVersion("bbbbbbbbbbbb", NOW - 7_200_000_000, NOW - 3_600_000_000, True, False)
    ahead = RulesVersion("cccccccccccc", NOW + 3_600_000_000, NOW + 3_600_000_000, False, True)
    kept = RulesVersion("aaaaaaaaaaaa", None, None, False, False)
    snap = snapshot(
        rules=(PartitionRules(0, (seed, ahead)), PartitionRules(1, (kept, old))),
        rules_late=1,
    )
    text = Metrics(lambda: snap).render().decode()
    values = parse(text)
    assert values[("retention_rules_late_total", ())] == 1
    info = {k[1]: v for k, v in values.items() if k[0] == "retention_rules_version_info"}
    assert info == {
        (("effective_at", ""), ("version", "aaaaaaaaaaaa")): 1,
        (("effective_at", iso(NOW - 7_200_000_000)), ("version", "bbbbbbbbbbbb")): 1,
        (("effective_at", iso(NOW + 3_600_000_000)), ("version", "cccccccccccc")): 0,
    }
    assert values[("retention_rules_versions", ())] == 3


def test_each_scrape_takes_a_new_snapshot() -> None:
    taken: list[int] = []

    def source() -> Snapshot:
        taken.append(1)
        return snapshot(accepted=len(taken))

    metrics = Metrics(source)
    first = parse(metrics.render().decode())
    second = parse(metrics.render().decode())
    assert first[("retention_events_accepted_total", ())] == 1
    assert second[("retention_events_accepted_total", ())] == 2


def test_a_clock_that_never_started_shows_from_its_first_event_on() -> None:
    # docs/time.md "Time", "A stuck clock": producers keyed by customer_id leave input
    # partitions silent; the clock has no value, yet it is seen stuck.
    never = PartitionClock(
        3, watermark=-(2**62), advanced_at=0, due=7, since=NOW - 600_000_000, stuck=600_000_000
    )
    values = parse(Metrics(lambda: snapshot(clocks=(never,))).render().decode())
    assert values[("retention_stream_clock_stalled_seconds", (("partition", "3"),))] == 600
    assert values[("retention_stream_clock_stuck_seconds", (("partition", "3"),))] == 600
    assert ("retention_stream_clock_seconds", (("partition", "3"),)) not in values


def test_lenient_timestamps_are_exported_by_form_from_zero() -> None:
    # Both forms have a series before the first one arrives, so an alert or a panel
    # on rate() sees 0, not "no data" (README "Inputs").
    idle = parse(Metrics(lambda: snapshot()).render().decode())
    busy = parse(
        Metrics(lambda: snapshot(lenient_timestamps={"space_separator": 4})).render().decode()
    )
    name = "retention_lenient_timestamps_total"
    assert idle[(name, (("form", "space_separator"),))] == 0
    assert idle[(name, (("form", "leap_second"),))] == 0
    assert busy[(name, (("form", "space_separator"),))] == 4


def test_decisions_are_exported_from_zero_for_every_rule_step_and_outcome() -> None:
    # The "no decisions" alert takes increase() over a day: a series born with the
    # first decisions would hide them (docs/operations.md, deploy/prometheus).
    series = (("second_purchase", 1, "delivered"), ("overdue", 1, "min_gap"))
    values = parse(
        Metrics(
            lambda: snapshot(
                decision_series=series, decisions={("second_purchase", 1, "delivered"): 3}
            )
        )
        .render()
        .decode()
    )
    name = "retention_decisions_total"
    labels = (("outcome", "delivered"), ("rule", "second_purchase"), ("step", "1"))
    assert values[(name, labels)] == 3
    assert values[(name, (("outcome", "min_gap"), ("rule", "overdue"), ("step", "1")))] == 0


def test_every_family_on_metrics_is_the_one_declared_in_the_table() -> None:
    """Name, type, help and labels of what /metrics renders come from METRICS alone."""
    clocks = (PartitionClock(0, NOW, NOW, 1, since=NOW),)
    snap = snapshot(
        ingest_dead_letters={"x": 1},
        late={"t": 1},
        lag={"t": 1},
        clocks=clocks,
        decision_series=(("r", 1, "delivered"),),
        windowed_rules=("r",),
        partition_warnings={"t": "w"},
        rules=(PartitionRules(0, (RulesVersion("0123456789ab", None, None, True, False),)),),
    )
    metrics = Metrics(lambda: snap)
    metrics.tick_duration.observe(0.004)
    rendered = {
        f.name: (f.type, f.documentation, {k for x in f.samples for k in x.labels} - {"le"})
        for f in metrics.registry.collect()
    }
    declared = {m.name: (m.kind, m.help, set(m.labels)) for m in METRICS}
    assert rendered == declared
    # The exposition is what the Prometheus parser reads back, one family each.
    parsed = text_string_to_metric_families(metrics.render().decode())
    assert {f.name for f in parsed} - {"retention_tick_duration_seconds_created"} == set(declared)


def test_a_rule_with_a_send_window_exports_its_drops_cancellations_and_deferrals() -> None:
    # Only such a rule can decide outside_window or cancelled: its series start at 0
    # with the others, and those of a rule without a window are not there at all
    # (docs/send-windows.md "Outputs").
    rules = windowed("second_purchase")
    series = decision_series(rules, OUTCOMES, WINDOW_OUTCOMES)
    snap = snapshot(
        decision_series=series,
        decisions={("second_purchase", 1, "outside_window"): 2},
        windowed_rules=tuple(r.name for r in rules if r.send_window is not None),
        deferred={"second_purchase": 5},
    )
    values = parse(Metrics(lambda: snap).render().decode())
    name = "retention_decisions_total"
    for outcome, n in (("outside_window", 2), ("cancelled", 0), ("delivered", 0)):
        assert (
            values[(name, (("outcome", outcome), ("rule", "second_purchase"), ("step", "1")))] == n
        )
    assert (name, (("outcome", "cancelled"), ("rule", "loud"), ("step", "1"))) not in values
    assert values[("retention_deferred_firings_total", (("rule", "second_purchase"),))] == 5
    assert ("retention_deferred_firings_total", (("rule", "inactivity"),)) not in values
