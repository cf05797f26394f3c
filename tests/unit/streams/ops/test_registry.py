"""The rules topic as a registry, the worker's start-up decision and what
``retention rules publish`` refuses (docs/operations.md "Changing rules live"), with
the topic and the stream clocks faked at the boundary."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from agents.core.rules import default_text, load_rules
from agents.core.rules.history import CONTROL_RULES, set_id
from agents.core.timeutil import MICROS_PER_SECOND, iso, parse_timestamp, to_micros
from streams.config import Config, load_config
from streams.ops.registry import (
    PublishRefused,
    Registry,
    RegistryError,
    StartRefused,
    marker_bytes,
    parse_record,
    plan_publish,
    published,
    record_bytes,
    record_key,
    startup,
)

SEED = default_text()
# The change a growth team makes: second_purchase's first step two days sooner.
SOONER = SEED.replace('steps = ["P7D", "P14D", "P30D"]', 'steps = ["P5D", "P14D", "P30D"]')
LATER = SEED.replace('steps = ["P7D", "P14D", "P30D"]', 'steps = ["P9D", "P14D", "P30D"]')
# The lifecycle is not per rule: no policy could say what a change does mid-way.
NEW_LIFECYCLE = SEED.replace('lapsed_after = "P60D"', 'lapsed_after = "P90D"')
NOW = to_micros(parse_timestamp("2026-12-07T06:00:00Z"))
T0 = to_micros(parse_timestamp("2026-06-01T00:00:00Z"))


def at(text: str) -> int:
    return to_micros(parse_timestamp(text))


def stream() -> Config:
    return load_config({"RETENTION_CLOCK": "stream"}, use_stack_file=False)


def wall(lead: str = "PT5M") -> Config:
    return load_config(
        {"RETENTION_CLOCK": "wall", "RETENTION_RULES_LEAD": lead}, use_stack_file=False
    )


def with_file(config: Config, text: str, path: str = "/etc/rules.toml") -> Config:
    rules = load_rules(text)
    return replace(config, rules_file=path, core=replace(config.core, rules=rules), rules_text=text)


def registry(*versions: tuple[str, int | None]) -> Registry:
    return Registry.of(published(text, eff, NOW) for text, eff in versions)


# --- the record ---------------------------------------------------------------------


def test_a_record_reads_back_as_the_version_it_was_written_as() -> None:
    p = published(SOONER, T0, NOW)
    doc = orjson.loads(record_bytes(p))
    assert doc == {
        "schema": CONTROL_RULES,
        "effective_at": iso(T0),
        "rules": SOONER,
        "version": set_id(load_rules(SOONER)),
        "published_at": iso(NOW),
    }
    assert parse_record(record_bytes(p)) == p
    seed = published(SEED, None, NOW)
    assert orjson.loads(record_bytes(seed))["effective_at"] is None
    # The marker on the input topics is the same record without published_at.
    assert orjson.loads(marker_bytes(p.version)) == {
        k: v for k, v in doc.items() if k != "published_at"
    }


def test_a_record_whose_version_is_not_its_text_is_refused() -> None:
    doc = orjson.loads(record_bytes(published(SOONER, T0, NOW)))
    doc["version"] = "0123456789ab"
    with pytest.raises(RegistryError, match="not the text's set id"):
        parse_record(orjson.dumps(doc))


def test_the_first_seed_written_wins_and_later_versions_go_by_effective_time() -> None:
    reg = registry((SEED, None), (LATER, T0 + 10), (SOONER, None), (SOONER, T0), (SOONER, T0))
    assert reg.seed is not None and reg.seed.id == set_id(load_rules(SEED))
    assert [p.effective_at for p in reg.later] == [T0, T0 + 10]
    newest = reg.newest
    assert newest is not None and newest.id == set_id(load_rules(LATER))


# --- the worker's start ---------------------------------------------------------------


def test_an_empty_topic_takes_the_workers_file_as_the_seed() -> None:
    start = startup(with_file(stream(), SOONER), Registry(), NOW)
    assert start.seed is not None
    assert start.seed.version.text == SOONER and start.seed.effective_at is None
    assert set_id(start.config.core.rule_set) == start.seed.id
    assert start.versions == ()


def test_without_a_file_the_seed_is_the_default_file() -> None:
    start = startup(stream(), Registry(), NOW)
    assert start.seed is not None and start.seed.version.text == default_text()


def test_a_worker_runs_the_published_seed_and_gets_the_later_versions() -> None:
    reg = registry((SEED, None), (SOONER, T0))
    for config in (stream(), with_file(stream(), SOONER)):
        start = startup(config, reg, NOW)
        assert start.seed is None
        assert set_id(start.config.core.rule_set) == set_id(load_rules(SEED))
        assert start.config.rules_text == SEED
        assert [(v.id, v.effective_at, v.applied_at) for v in start.versions] == [
            (set_id(load_rules(SOONER)), T0, T0)
        ]


def test_a_worker_with_a_file_other_than_the_newest_version_refuses_in_one_line() -> None:
    reg = registry((SEED, None), (SOONER, T0))
    with pytest.raises(StartRefused) as refused:
        startup(with_file(stream(), SEED), reg, NOW)
    line = str(refused.value)
    assert "\n" not in line
    assert line == (
        f"RETENTION_RULES_FILE=/etc/rules.toml is version {set_id(load_rules(SEED))}, but the "
        f"deployment runs version {set_id(load_rules(SOONER))} (effective {iso(T0)}); publish "
        "it with retention rules publish /etc/rules.toml, or unset RETENTION_RULES_FILE"
    )


def test_rules_from_the_deprecated_aliases_seed_nothing() -> None:
    config = load_config({"RETENTION_MIN_GAP": "PT1S"}, use_stack_file=False)
    start = startup(config, Registry(), NOW)
    assert start.seed is None and start.config is config


# --- publish refusals ---------------------------------------------------------------------


def refusals(
    config: Config, reg: Registry, text: str, effective: int | None, **clocks: int
) -> list[str]:
    with pytest.raises(PublishRefused) as refused:
        plan_publish(
            config,
            reg,
            text,
            effective=effective,
            clocks={int(p[1:]): c for p, c in clocks.items()},
            now=NOW,
        )
    return refused.value.lines


def test_stream_mode_publishes_after_every_partitions_clock() -> None:
    reg = registry((SEED, None))
    p = plan_publish(stream(), reg, SOONER, effective=T0 + 1, clocks={0: T0, 1: T0 - 5}, now=NOW)
    assert (p.version.effective_at, p.published_at) == (T0 + 1, NOW)
    assert p.id == set_id(load_rules(SOONER))


def test_stream_mode_refuses_a_time_some_partition_has_passed() -> None:
    lines = refusals(stream(), registry((SEED, None)), SOONER, T0, p0=T0 - 5, p3=T0)
    assert lines == [
        f"effective {iso(T0)} is not after the stream clock of customer partition 3 "
        f"({iso(T0)}; 1 partition past it): give a later time"
    ]


def test_stream_mode_needs_an_effective_time() -> None:
    lines = refusals(stream(), registry((SEED, None)), SOONER, None)
    assert lines == ["stream clock mode: give --effective T, a time of the stream"]


def test_a_version_takes_effect_after_the_newest_published_one() -> None:
    reg = registry((SEED, None), (LATER, T0 + 100))
    lines = refusals(stream(), reg, SOONER, T0 + 100)
    assert lines == [
        f"effective {iso(T0 + 100)} is not after version {set_id(load_rules(LATER))}'s "
        f"{iso(T0 + 100)}: versions take effect in the order published"
    ]


def test_the_newest_file_is_not_published_again_but_an_earlier_one_is_a_rollback() -> None:
    reg = registry((SEED, None), (SOONER, T0))
    (line,) = refusals(stream(), reg, SOONER, T0 + 10)
    assert line.startswith(f"version {set_id(load_rules(SOONER))} is the newest published (")
    back = plan_publish(stream(), reg, SEED, effective=T0 + 10, clocks={0: T0 + 5}, now=NOW + 1)
    assert (back.id, back.effective_at) == (set_id(load_rules(SEED)), T0 + 10)
    # Both records are kept: one per (id, effective time).
    again = Registry.of([*reg.versions, back])
    assert [(p.id, p.effective_at) for p in again.later] == [
        (set_id(load_rules(SOONER)), T0),
        (set_id(load_rules(SEED)), T0 + 10),
    ]
    assert record_key(back) == f"{back.id}@{iso(T0 + 10)}".encode()


def test_the_same_version_at_the_same_time_is_a_resend() -> None:
    reg = registry((SEED, None), (SOONER, T0))
    again = plan_publish(stream(), reg, SOONER, effective=T0, clocks={0: T0 + 5}, now=NOW + 1)
    assert again == reg.later[0]


def test_wall_mode_refuses_less_than_the_lead_and_defaults_to_it() -> None:
    reg = registry((SEED, None))
    lead = 300 * MICROS_PER_SECOND
    (line,) = refusals(wall(), reg, SOONER, NOW + lead - 1)
    assert line.startswith(
        f"effective {iso(NOW + lead - 1)} is less than RETENTION_RULES_LEAD (300 s)"
    )
    p = plan_publish(wall(), reg, SOONER, effective=None, clocks={0: NOW}, now=NOW)
    assert p.version.effective_at == NOW + lead
    assert plan_publish(
        wall("PT3S"), reg, SOONER, effective=NOW + 3 * MICROS_PER_SECOND, clocks={}, now=NOW
    )


def test_a_lifecycle_change_is_refused_with_the_reason() -> None:
    (line,) = refusals(stream(), registry((SEED, None)), NEW_LIFECYCLE, T0)
    assert (
        "lifecycle cannot change on a live deployment: every customer's stage would move at once"
        in line
    )


def test_a_record_over_the_message_limit_is_refused() -> None:
    big = SOONER + "#" + "x" * 70_000 + "\n"
    (line,) = refusals(stream(), registry((SEED, None)), big, T0)
    assert line.endswith(
        "over RETENTION_MAX_MESSAGE_BYTES (65,536): ingest would dead-letter the marker"
    )


def test_nothing_is_published_before_a_seed() -> None:
    (line,) = refusals(stream(), Registry(), SOONER, T0)
    assert line.startswith("nothing is published on retention.rules yet: start a worker first")
