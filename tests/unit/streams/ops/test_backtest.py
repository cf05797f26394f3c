"""The backtest's engine: external sort, chunks of whole customers, tallies.

What a user relies on: whatever the sort runs, chunks and workers, the backtest
makes exactly the offline reference's decisions on the whole file, counts each in
the right rule, step and week, and bounds its window as documented
(docs/rules.md "Backtest").
"""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.core.guardrails import OUTCOMES
from agents.core.settings import DAY, HOUR, CoreSettings
from agents.core.timeutil import iso, to_micros
from agents.offline.reference import compute_decisions
from streams.config import Config
from streams.feed.sample import SampleOptions, generate
from streams.ops.backtest import RulesFile, backtest, load_rules_file
from streams.ops.backtest_html import render_html, week_span
from streams.ops.backtest_report import document, figures, render_table
from streams.ops.backtest_tally import Tally, diff_results, iso_week, send_keys
from streams.ops.extsort import InputBounds, customer_chunks, sort_history
from tests.unit.offline.strategies import rules_documents

T0 = to_micros(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))  # a Monday
NOW = T0 + 400 * DAY
# The configuration's rules (today's three), as the reference runs without a file.
RULES = RulesFile("default", None)
# Four rules: two that collide at the same instant (arbitration on one), a
# transactional one and an audience that turns false before a step.
SHOP_RULES = """
format = 1

[guardrails]
holdout_percent = 20.0
min_gap = "PT12H"

[[rule]]
name = "welcome_back"
priority = 5
anchor = "last_order"
cancel_on = ["purchase"]
steps = ["P10D"]
arbitration = true

[[rule]]
name = "second_purchase"
priority = 10
anchor = "first_order"
cancel_on = ["purchase"]
steps = ["P7D", "P14D", "P30D"]

[[rule]]
name = "receipt_followup"
priority = 20
anchor = "last_order"
steps = ["P10D"]
transactional = true

[[rule]]
name = "vip"
priority = 30
anchor = "last_activity"
steps = ["P10D", "P40D"]
arbitration = true

[rule.audience]
orders = { min = 2 }
days_since_first_order = { max = 60 }
"""
CONFIG = Config()


def event(schema: str, event_id: str, customer: str, t: int, **extra: Any) -> bytes:
    body = {"schema": schema, "event_id": event_id, "customer_id": customer, "occurred_at": iso(t)}
    return orjson.dumps({**body, **extra})


def order(event_id: str, customer: str, t: int, order_id: str) -> bytes:
    return event(
        "purchase/1", event_id, customer, t, order_id=order_id, amount="10.00", currency="EUR"
    )


def write(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def assert_same_as_reference(result: Any, lines: list[bytes], config: Config, **kw: Any) -> None:
    if result.rules.document is not None:
        kw["rules"] = result.rules.document
    ref = compute_decisions(lines, config, now=NOW, **kw)
    assert result.decisions == ref.decisions
    assert result.outcomes == ref.outcomes
    assert result.tally.dead_letters == ref.dead_letters
    assert (result.tally.lines, result.tally.events, result.tally.customers) == (
        ref.lines,
        ref.events,
        ref.customers,
    )
    assert (result.tally.duplicates, result.tally.order_retries) == (
        ref.duplicates,
        ref.order_retries,
    )
    assert sum(n for k, n in result.tally.counts.items() if ":" not in k[3]) == len(ref.decisions)


def test_decisions_equal_the_reference_on_a_realistic_history_whatever_the_runs_and_workers(
    tmp_path: Path,
) -> None:
    # Duplicates, retries, late and malformed lines, far duplicates and restamped
    # retries (whose winner depends on the order lines are read in).
    options = SampleOptions(far_duplicate_rate=0.05, restamped_retry_rate=0.05)
    lines = list(generate(300, 365, seed=11, end=T0 + 365 * DAY, options=options))
    path = write(tmp_path, lines)
    for workers, run_bytes, chunk_lines in ((1, 1 << 30, 1 << 30), (2, 40_000, 300)):
        result = backtest(
            str(path),
            CONFIG,
            RULES,
            now=NOW,
            workers=workers,
            run_bytes=run_bytes,
            chunk_lines=chunk_lines,
            keep_decisions=True,
        )
        assert len(result.decisions) > 500
        assert_same_as_reference(result, lines, CONFIG)
    assert result.runs > 5 and result.chunks > 5  # the small runs did spill and merge


def test_a_history_grouped_by_customer_gives_the_same_decisions(tmp_path: Path) -> None:
    options = SampleOptions(customer_order=True, beyond_lateness_rate=0.02)
    lines = list(generate(150, 200, seed=5, end=T0 + 200 * DAY, options=options))
    result = backtest(
        str(write(tmp_path, lines)),
        CONFIG,
        RULES,
        now=NOW,
        workers=1,
        run_bytes=10_000,
        chunk_lines=50,
        keep_decisions=True,
    )
    assert_same_as_reference(result, lines, CONFIG)


def test_a_shop_rules_file_gives_the_reference_decisions_for_that_file(tmp_path: Path) -> None:
    rules_path = tmp_path / "shop.toml"
    rules_path.write_text(SHOP_RULES)
    rules = load_rules_file(str(rules_path))
    lines = list(generate(200, 200, seed=9, end=T0 + 200 * DAY))
    result = backtest(
        str(write(tmp_path, lines)),
        CONFIG,
        rules,
        now=NOW,
        workers=2,
        run_bytes=20_000,
        chunk_lines=200,
        keep_decisions=True,
    )
    assert_same_as_reference(result, lines, CONFIG)
    fired = {d["rule"] for d in result.decisions}
    assert fired == {"welcome_back", "second_purchase", "receipt_followup", "vip"}
    assert any(d["outcome"] == "outranked" for d in result.decisions)
    assert list(result.known_steps) == [
        "welcome_back",
        "second_purchase",
        "receipt_followup",
        "vip",
    ]


CUSTOMERS = st.sampled_from(["a", "b", "c", "d"])
LINE = st.one_of(
    st.builds(
        lambda kind, i, c, day: (
            order(f"e{i}", c, T0 + day * DAY, f"o{i % 3}")
            if kind == "order"
            else event("session/1", f"e{i}", c, T0 + day * DAY, session_id="s")
            if kind == "session"
            else event("consent/1", f"e{i}", c, T0 + day * DAY, status="opted_out")
        ),
        st.sampled_from(["order", "order", "session", "consent"]),
        st.integers(0, 6),  # few ids: duplicates and order retries
        CUSTOMERS,
        st.integers(0, 90),
    ),
    st.sampled_from([b"{not json", b"[1]", b'{"customer_id": 5}', b"", b"   "]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINE, max_size=40), st.integers(1, 6))
def test_any_small_history_gives_the_reference_decisions(lines: list[bytes], chunk: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), lines)
        result = backtest(
            str(path),
            CONFIG,
            RULES,
            now=NOW,
            workers=1,
            run_bytes=600,
            chunk_lines=chunk,
            keep_decisions=True,
        )
    assert_same_as_reference(result, lines, CONFIG)


def test_the_sort_spills_to_disk_and_keeps_each_customer_whole_in_file_order(
    tmp_path: Path,
) -> None:
    lines = [order(f"e{i}", f"c{i % 7}", T0 + i * HOUR, f"o{i}") for i in range(200)]
    lines.insert(50, b"not json at all")
    # Later than every valid line, but not valid (no order_id): not the horizon.
    late = event("purchase/1", "x", "c1", T0 + 900 * HOUR, amount="1.00", currency="EUR")
    lines.insert(60, late)
    (tmp_path / "runs").mkdir()
    bounds = InputBounds.of(CONFIG, NOW)
    history = sort_history(
        io.BytesIO(b"\n".join(lines)), tmp_path / "runs", bounds, run_bytes=4_000
    )
    assert len(history.runs) > 3 and all(p.exists() for p in history.runs)
    assert history.lines == 202 and history.stray_lines == 1
    assert history.latest == T0 + 199 * HOUR
    chunks = list(customer_chunks(history, chunk_lines=20))
    assert chunks[-1] == [b"not json at all"]
    owners = [{orjson.loads(line)["customer_id"] for line in c} for c in chunks[:-1]]
    for i, a in enumerate(owners):  # no customer is split across chunks
        assert all(not (a & b) for b in owners[i + 1 :])
    for chunk in chunks[:-1]:
        for customer in {orjson.loads(line)["customer_id"] for line in chunk}:
            mine = [line for line in chunk if orjson.loads(line)["customer_id"] == customer]
            assert mine == [
                line for line in lines if b'"customer_id":"%s"' % customer.encode() in line
            ]


def test_since_is_backfill_and_until_is_exclusive(tmp_path: Path) -> None:
    # One first order: second_purchase steps at +7, +14, +30 days, inactivity at +14,
    # +30, +60 days.
    lines = [order("e1", "alice", T0, "o1"), order("e2", "zed", T0 + 60 * DAY, "o2")]
    path = write(tmp_path, lines)
    since, until = T0 + 10 * DAY, T0 + 30 * DAY  # step 3 is due exactly at `until`
    result = backtest(
        str(path), CONFIG, RULES, now=NOW, since=since, until=until, keep_decisions=True
    )
    alice = [(d["rule"], d["step"]) for d in result.decisions if d["customer_id"] == "alice"]
    # +7 is before --since (backfill); the two steps due at +30 are at --until (out).
    assert alice == [("second_purchase", 2), ("inactivity", 1)]
    backfilled = replace(CONFIG, core=replace(CONFIG.core, backfill_until=since))
    ref = compute_decisions(lines, backfilled, until=until - 1, now=NOW)
    assert result.decisions == ref.decisions
    doc = document(result, history=str(path))
    assert doc["window"] == {"since": iso(since), "until": iso(until), "last_due": iso(until - 1)}


def test_counts_land_in_the_rule_step_and_iso_week_of_the_due_time(tmp_path: Path) -> None:
    core = CoreSettings(holdout_percent=0.0)
    config = Config(core=core)
    lines = [order("e1", "alice", T0, "o1"), order("e2", "alice", T0 + 8 * DAY, "o2")]
    result = backtest(str(write(tmp_path, lines)), config, RULES, now=NOW, until=T0 + 9 * DAY)
    # Step 1 due T0 + 7 days (a Monday: week 11 of 2026), delivered, converted by o2.
    week = iso_week(T0 + 7 * DAY)
    assert week == "2026-W11"
    assert result.tally.counts == {
        ("second_purchase", 1, week, "delivered"): 1,
        ("second_purchase", 1, week, "conversions:delivered"): 1,
    }
    doc = document(result, history="h")
    sp = doc["by_rule"][0]
    assert sp["rule"] == "second_purchase" and [s["step"] for s in sp["steps"]] == [1, 2, 3]
    assert sp["steps"][0]["weeks"][0]["week"] == week
    assert sp["steps"][1]["totals"]["firings"] == 0
    assert doc["totals"]["conversions"] == {"delivered": 1, "holdout": 0}
    # Every outcome code, each 0: the columns do not depend on what happened.
    assert doc["totals"]["suppressed"] == {c: 0 for c in OUTCOMES if c != "delivered"}
    assert {"holdout", "opted_out", "outranked", "min_gap", "frequency_cap"} <= set(OUTCOMES)


def test_figures_give_rates_and_lift_and_say_n_a_for_an_empty_group() -> None:
    codes = ["delivered", "holdout", "opted_out", "min_gap", "frequency_cap"]
    f = figures(
        {
            "delivered": 200,
            "holdout": 20,
            "min_gap": 5,
            "conversions:delivered": 30,
            "conversions:holdout": 2,
        },
        codes,
    )
    assert f["firings"] == 225 and f["holdout"] == 20
    assert f["conversion_rate"] == {"delivered": 0.15, "holdout": 0.1}
    assert f["lift"] == {"points": 5.0, "relative_percent": 50.0}
    empty = figures({"delivered": 3}, codes)
    assert empty["conversion_rate"]["holdout"] is None
    assert empty["lift"] == {"points": None, "relative_percent": None}


def test_tallies_of_chunks_add_up() -> None:
    a = Tally(counts={("r", 1, "2026-W01", "delivered"): 2}, lines=3, dead_letters={"x": 1})
    b = Tally(counts={("r", 1, "2026-W01", "delivered"): 1, ("r", 2, "2026-W02", "min_gap"): 4})
    b.lines, b.dead_letters = 5, {"x": 2, "y": 1}
    a.merge(b)
    assert a.counts == {("r", 1, "2026-W01", "delivered"): 3, ("r", 2, "2026-W02", "min_gap"): 4}
    assert a.lines == 8 and a.dead_letters == {"x": 3, "y": 1}


def test_the_baseline_diff_names_who_newly_gets_and_who_no_longer_gets_a_nudge() -> None:
    lines = [order(f"e{c}", c, T0, f"o{c}") for c in ("ann", "bob", "cy")]
    lines.append(event("consent/1", "x", "bob", T0, status="opted_out"))
    until = T0 + 8 * DAY  # only second_purchase step 1 is due
    everyone = compute_decisions(lines, CoreSettings(holdout_percent=0.0), until=until, now=NOW)
    nobody = compute_decisions(lines, CoreSettings(holdout_percent=100.0), until=until, now=NOW)
    diff = diff_results(everyone, nobody)["second_purchase"]
    # bob is opted out under both: no change for him.
    assert (diff.newly, diff.no_longer) == (2, 0)
    assert [e.customer_id for e in diff.newly_examples] == ["ann", "cy"]
    ann = diff.newly_examples[0]
    assert ann.file == [{"step": 1, "due_at": iso(T0 + 7 * DAY), "outcome": "delivered"}]
    assert ann.baseline == [{"step": 1, "due_at": iso(T0 + 7 * DAY), "outcome": "holdout"}]
    back = diff_results(nobody, everyone)["second_purchase"]
    assert (back.newly, back.no_longer) == (0, 2)


SAMPLE = list(generate(60, 150, seed=21, end=T0 + 150 * DAY))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules_documents(), st.integers(20, 400))
def test_any_rules_file_gives_the_reference_decisions_for_it(text: str, chunk: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rules.toml"
        path.write_text(text)
        rules = load_rules_file(str(path))
        result = backtest(
            str(write(Path(folder), SAMPLE)),
            CONFIG,
            rules,
            now=NOW,
            workers=1,
            run_bytes=8_000,
            chunk_lines=chunk,
            keep_decisions=True,
        )
    assert_same_as_reference(result, SAMPLE, CONFIG)


def test_the_page_s_time_axis_keeps_quiet_weeks_and_iso_week_53() -> None:
    # 2026 has an ISO week 53 (it starts on a Thursday).
    assert week_span(["2027-W01", "2026-W52"]) == ["2026-W52", "2026-W53", "2027-W01"]
    assert week_span(["2026-W10", "2026-W13"]) == [f"2026-W{n}" for n in range(10, 14)]
    assert week_span([]) == []


def test_a_rule_with_a_send_window_shows_waits_drops_and_local_send_hours(
    tmp_path: Path,
) -> None:
    """docs/send-windows.md "Outputs": the reference's decision records carry send_at
    and send_local; the tally counts the waits and the local hours, the document
    and the table show them per rule - and nothing when no rule has a window."""
    core = CoreSettings(holdout_percent=0.0)
    lines = [order("e1", "alice", T0, "o1")]
    result = backtest(str(write(tmp_path, lines)), Config(core=core), RULES, now=NOW)
    plain = document(result, history="h")
    assert "send_windows" not in plain
    assert "Send windows" not in render_table(plain)

    due = "2026-03-14T22:30:00Z"
    waited = {
        "due_at": due,
        "outcome": "delivered",
        "send_at": "2026-03-16T08:00:00Z",
        "send_zone": "Europe/Berlin",
        "send_local": "2026-03-16T09:00:00+01:00",
    }
    inside = {
        "due_at": due,
        "outcome": "delivered",
        "send_at": due,
        "send_zone": "Asia/Kathmandu",
        "send_local": "2026-03-15T04:15:00+05:45",
    }
    assert send_keys(waited) == ["send:deferred", "send:h09"]
    assert send_keys(inside) == ["send:h04"]
    assert send_keys(waited | {"outcome": "cancelled"}) == ["send:deferred"]
    assert send_keys({"due_at": due, "outcome": "delivered"}) == []  # no window

    week = iso_week(T0 + 7 * DAY)
    tally = Tally(counts=dict(result.tally.counts))
    for what, n in (("send:deferred", 3), ("send:h09", 2), ("outside_window", 4), ("cancelled", 1)):
        tally.add(("second_purchase", 1, week, what), n)
    doc = document(replace(result, tally=tally), history="h")
    hours = [0] * 24
    hours[9] = 2
    assert doc["send_windows"] == [
        {
            "rule": "second_purchase",
            "deferred": 3,
            "outside_window": 4,
            "cancelled": 1,
            "delivered_by_local_hour": hours,
        }
    ]
    # Waits and hours are no outcomes: the firings count only the decisions.
    assert doc["totals"]["firings"] == plain["totals"]["firings"] + 5
    assert "send:deferred" not in doc["outcomes"]
    text = render_table(doc)
    assert "Send windows" in text and "09h 2" in text
    page = render_html(doc)
    assert "<h2>Send windows</h2>" in page and "<title>09h: 2</title>" in page
    assert "Send windows" not in render_html(plain)


def test_superseded_and_skipped_steps_are_listed_but_never_counted_as_firings(
    tmp_path: Path,
) -> None:
    """docs/rules.md "Backtest": a step superseded by a rules change or skipped by a
    churn_risk ladder never fired; its count shows by code, not among the firings."""
    core = CoreSettings(holdout_percent=0.0)
    lines = [order("e1", "alice", T0, "o1")]
    result = backtest(str(write(tmp_path, lines)), Config(core=core), RULES, now=NOW)
    plain = document(result, history="h")
    week = iso_week(T0 + 7 * DAY)
    tally = Tally(counts=dict(result.tally.counts))
    tally.add(("second_purchase", 1, week, "skipped"), 4)
    tally.add(("second_purchase", 2, week, "superseded"), 3)
    tally.add(("second_purchase", 2, week, "min_gap"), 2)
    doc = document(replace(result, tally=tally), history="h")
    assert doc["totals"]["firings"] == plain["totals"]["firings"] + 2
    assert doc["totals"]["suppressed"]["skipped"] == 4
    assert doc["totals"]["suppressed"]["superseded"] == 3
