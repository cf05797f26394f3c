"""The cluster summary's report: merging workers' report inputs gives exactly the
report over all their customers (what one worker owning everything would show,
and what the offline reference computes), however the customers are split."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core.prediction import GammaGammaParams, NbdParams, p_alive
from agents.core.report_merge import ReportInputs, merge_report
from agents.core.report_text import render_report
from agents.core.reports import CustomerRow, ReportSettings, build_report
from agents.core.scores import inputs_of
from agents.core.settings import DAY
from agents.core.state import STAGES, CustomerState
from agents.core.timeutil import TIME_MAX, TIME_MIN, month_start_at, parse_timestamp, to_micros
from tests.unit.streams.web.synthetic import END, customer_states, lifecycle_states

AS_OF_CHOICES = (END, END - 45 * DAY, END - 200 * DAY)


@pytest.fixture(scope="module")
def stored() -> list[dict[str, Any]]:
    """2,000 customers as the table stores them (JSON round trip)."""
    return [orjson.loads(orjson.dumps(s.to_dict())) for s in customer_states(2000, seed=7)]


def report_inputs(states: list[dict[str, Any]], as_of: int) -> dict[str, Any]:
    """One worker's part: its stored customer records reduced to report inputs."""
    acc = ReportInputs(as_of)
    for d in states:
        acc.add_state(d)
    return acc.finish().to_json()


def expected_report(records: list[dict[str, Any]], as_of: int, **kw: Any) -> dict[str, Any]:
    rows = [CustomerRow.from_state(CustomerState.from_dict(d)) for d in records]
    return build_report(rows, as_of=as_of, settings=ReportSettings(**kw))


def split(records: list[dict[str, Any]], parts: int, seed: int) -> list[list[dict[str, Any]]]:
    rng = random.Random(seed)
    out: list[list[dict[str, Any]]] = [[] for _ in range(parts)]
    for d in records:
        out[rng.randrange(parts)].append(d)
    return out


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
@pytest.mark.parametrize("as_of", AS_OF_CHOICES)
def test_merged_parts_equal_the_report_over_all_rows(
    stored: list[dict[str, Any]], parts: int, as_of: int
) -> None:
    expected = expected_report(stored, as_of)
    # A rich case: cohorts, CRR months, several currencies, lift rows.
    assert expected["ttsp"]["overall"]["repeaters"] > 300 and len(expected["crr"]) >= 6
    assert len(expected["clv"]) == 3 and expected["lift"]
    pieces = [orjson.loads(orjson.dumps(report_inputs(p, as_of))) for p in split(stored, parts, 1)]
    assert merge_report(pieces, as_of=as_of) == expected


def test_a_worker_with_no_customers_adds_nothing(stored: list[dict[str, Any]]) -> None:
    empty = report_inputs([], END)
    assert merge_report([empty], as_of=END) == expected_report([], END)
    assert merge_report([empty, report_inputs(stored, END)], as_of=END) == expected_report(
        stored, END
    )


def test_settings_carry_into_clv(stored: list[dict[str, Any]]) -> None:
    got = merge_report(
        [report_inputs(stored, END)], as_of=END, settings=ReportSettings(clv_lifetime_years=5.0)
    )
    assert got == expected_report(stored, END, clv_lifetime_years=5.0)
    assert {c["lifetime_years"] for c in got["clv"]} == {5.0}


def test_inputs_for_another_instant_are_refused(stored: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="as of"):
        merge_report([report_inputs(stored[:10], END - DAY)], as_of=END)


def test_the_wire_form_stays_small(stored: list[dict[str, Any]]) -> None:
    """Per customer, the inputs are a small fraction of the stored record."""
    body = orjson.dumps(report_inputs(stored, END))
    table = sum(len(orjson.dumps(d)) for d in stored)
    assert len(body) < table / 20
    repeaters = expected_report(stored, END)["ttsp"]["overall"]["repeaters"]
    assert len(body) < 2000 + 20 * repeaters


# --- edge cases the generator rarely hits: month boundaries, touching spans, odd stages


MONTH_STARTS = [to_micros(parse_timestamp(f"2026-{m:02d}-01T00:00:00Z")) for m in range(1, 13)]


@st.composite
def instants(draw: st.DrawFn) -> int:
    base = draw(st.sampled_from(MONTH_STARTS))
    return base + draw(st.sampled_from([-1, 0, 1, DAY, 15 * DAY, 30 * DAY - 1]))


@st.composite
def records(draw: st.DrawFn, i: int, when: st.SearchStrategy[int] | None = None) -> dict[str, Any]:
    orders = draw(st.integers(0, 4))
    d: dict[str, Any] = {"customer_id": f"c{i:04d}", "orders": orders}
    d["stage"] = draw(st.sampled_from([*STAGES, "custom_stage"]))
    if orders:
        first = draw(when if when is not None else instants())
        d["first_order_at"] = first
        if orders >= 2:
            d["second_order_at"] = first + draw(
                st.sampled_from([0, 1, 7 * DAY, 30 * DAY, 30 * DAY + 1, 60 * DAY, 400 * DAY])
            )
        cur = draw(st.sampled_from(["EUR", "USD"]))
        d["spend"] = {cur: draw(st.sampled_from(["0", "10.10", "99999999.999999", "0.01"]))}
        d["order_currencies"] = {cur: draw(st.sampled_from([0, orders]))}
        spans, t = [], first
        for _ in range(draw(st.integers(0, 3))):
            end = t + draw(st.sampled_from([1, 90 * DAY, 31 * DAY]))
            spans.append([t, end])
            t = end + draw(st.sampled_from([0, 1, 40 * DAY]))
        d["active_spans"] = spans
    d["decision_counts"] = draw(
        st.dictionaries(
            st.sampled_from(
                ["inactivity/1/delivered", "inactivity/1/holdout", "overdue/1/min_gap"]
            ),
            st.integers(0, 3),
        )
    )
    d["conversion_counts"] = draw(
        st.dictionaries(
            st.sampled_from(["inactivity/1/delivered", "inactivity/1/holdout"]), st.integers(0, 2)
        )
    )
    return d


@st.composite
def populations(
    draw: st.DrawFn, when: st.SearchStrategy[int] | None = None
) -> list[dict[str, Any]]:
    n = draw(st.integers(0, 25))
    return [draw(records(i, when)) for i in range(n)]


@settings(max_examples=300, deadline=None)
@given(populations(), instants(), st.integers(1, 4), st.integers(0, 10**6))
def test_any_split_of_any_rows_merges_exactly(
    rows: list[dict[str, Any]], as_of: int, parts: int, seed: int
) -> None:
    pieces = [report_inputs(p, as_of) for p in split(rows, parts, seed)]
    assert merge_report(pieces, as_of=as_of) == expected_report(rows, as_of)


# --- the ends of the datetime range (docs/time.md "Time") ---------------------------------------

# Month starts at both ends of the years 1..9999, and instants just past them: a
# row from before the earliest-event-time bound, a due time past 9999, a stream
# clock before year 1 (watermark - lateness) as the report's as-of.
EDGE_MONTHS = [month_start_at(k) for k in (12, 13, 14, 23, 24, 119_997, 119_998, 119_999)]


@st.composite
def extreme_instants(draw: st.DrawFn) -> int:
    base = draw(st.sampled_from([*EDGE_MONTHS, TIME_MIN, TIME_MAX, 0]))
    return base + draw(st.sampled_from([-DAY, -1, 0, 1, DAY, 15 * DAY, 40 * DAY]))


@settings(max_examples=50, deadline=None)
@given(populations(extreme_instants()), extreme_instants(), st.integers(1, 3), st.integers(0, 99))
def test_reports_at_the_ends_of_the_datetime_range_merge_exactly_and_never_raise(
    rows: list[dict[str, Any]], as_of: int, parts: int, seed: int
) -> None:
    pieces = [report_inputs(p, as_of) for p in split(rows, parts, seed)]
    report = merge_report(pieces, as_of=as_of)
    assert report == expected_report(rows, as_of)
    assert TIME_MIN <= to_micros(parse_timestamp(report["as_of"])) <= TIME_MAX


def test_a_report_as_of_the_last_instant_a_datetime_holds() -> None:
    # The month after December 9999 has no datetime; the report must not need one.
    first = month_start_at(119_999) + DAY  # 9999-12-02
    rows = [
        {
            "customer_id": "z",
            "orders": 1,
            "first_order_at": first,
            "active_spans": [[first, first + 90 * DAY]],
        }
    ]
    report = merge_report([report_inputs(rows, TIME_MAX)], as_of=TIME_MAX)
    assert report == expected_report(rows, TIME_MAX)
    assert [(p["period"], p["n"], p["e"], p["partial"]) for p in report["crr"]] == [
        ("9999-12", 1, 1, False)
    ]


# --- P(alive) (docs/reports.md "P(alive)") ---------------------------------------------------


class _Model:
    def __init__(self, version: str, kinds: tuple[str, ...] = ("mbgnbd", "bgnbd")) -> None:
        every = {
            "mbgnbd": NbdParams("mbgnbd", r=0.5248, alpha=6.183, a=0.8914, b=1.614),
            "bgnbd": NbdParams("bgnbd", r=0.2426, alpha=4.414, a=0.7929, b=2.426),
        }
        self.version = version
        self.time_unit = "week"
        self.kinds = {k: every[k] for k in kinds}
        self.gamma_gamma: dict[str, GammaGammaParams] = {}


@pytest.mark.parametrize("parts", [1, 3])
def test_the_p_alive_distribution_merges_to_the_report_over_all_rows(
    stored: list[dict[str, Any]], parts: int
) -> None:
    model = _Model("3f2a9c1b7d4e")
    states = [CustomerState.from_dict(d) for d in stored]
    rows = [CustomerRow.from_state(s) for s in states]
    inputs = {s.customer_id: i for s in states if (i := inputs_of(s)) is not None}
    expected = build_report(rows, as_of=END, model=model, score_inputs=inputs)
    pieces = []
    for chunk in split(stored, parts, seed=3):
        acc = ReportInputs(END, scoring=True)
        for d in chunk:
            acc.add_state(d, model)
        pieces.append(acc.finish().to_json())
    assert merge_report(pieces, as_of=END) == expected
    mbg, bg = sorted(expected["p_alive"], key=lambda x: x["kind"] != "mbgnbd")
    assert (mbg["model_version"], mbg["kind"]) == ("3f2a9c1b7d4e", "mbgnbd")
    # Every buyer the report counts is scored under each kind, in one of ten bins.
    assert mbg["customers"] == bg["customers"] == len(inputs) == expected["buyers"]
    assert len(mbg["deciles"]) == 10 and sum(mbg["deciles"]) == mbg["customers"]
    # BG/NBD keeps one-time buyers at 1.0: its top tenth holds at least all of them.
    one_timers = sum(1 for i in inputs.values() if i.x == 0)
    assert bg["deciles"][-1] >= one_timers > 0
    # Each customer's bin is where its P(alive) at the report time falls.
    by_hand = [0] * 10
    for i in inputs.values():
        T = (END - i.first_order_at) / (7 * DAY)
        t_x = (i.last_order_at - i.first_order_at) / (7 * DAY) if i.x else 0.0
        by_hand[min(int(p_alive(model.kinds["mbgnbd"], i.x, t_x, T) * 10), 9)] += 1
    assert mbg["deciles"] == by_hand
    # Parts under two model versions (partitions switched apart) are listed apart.
    older = ReportInputs(END, scoring=True)
    for d in stored[:50]:
        older.add_state(d, _Model("000000000001", ("mbgnbd",)))
    both = merge_report([*pieces, older.finish().to_json()], as_of=END)
    assert [(x["model_version"], x["kind"]) for x in both["p_alive"]] == [
        ("000000000001", "mbgnbd"),
        ("3f2a9c1b7d4e", "bgnbd"),
        ("3f2a9c1b7d4e", "mbgnbd"),
    ]


def test_without_a_model_the_report_and_its_parts_are_unchanged(
    stored: list[dict[str, Any]],
) -> None:
    part = report_inputs(stored, END)
    assert "p_alive" not in part and "p_alive" not in merge_report([part], as_of=END)
    assert "P(alive)" not in render_report(expected_report(stored, END))
    # With a model and no buyer yet: the block is there, empty.
    empty = ReportInputs(END, scoring=True).finish().to_json()
    assert merge_report([empty], as_of=END)["p_alive"] == []


def test_the_text_report_shows_the_p_alive_distribution(stored: list[dict[str, Any]]) -> None:
    model = _Model("3f2a9c1b7d4e", ("mbgnbd",))
    acc = ReportInputs(END, scoring=True)
    for d in stored:
        acc.add_state(d, model)
    report = merge_report([acc.finish().to_json()], as_of=END)
    text = render_report(report)
    assert "P(alive) at the report time" in text
    (block,) = report["p_alive"]
    line = next(x for x in text.splitlines() if x.strip().startswith("3f2a9c1b7d4e"))
    assert line.split()[1:] == ["mbgnbd", str(block["customers"])] + [
        str(n) for n in block["deciles"]
    ]


# --- the lifecycle's blocks: funnel, recovered revenue, cancellations --------------------


@pytest.fixture(scope="module")
def lifecycle_stored() -> list[dict[str, Any]]:
    """600 customers of a lifecycle.toml shop as the table stores them."""
    return [orjson.loads(orjson.dumps(s.to_dict())) for s in lifecycle_states(600, seed=3)]


@pytest.mark.parametrize("parts", [1, 3])
def test_merged_lifecycle_blocks_equal_the_report_over_all_rows(
    lifecycle_stored: list[dict[str, Any]], parts: int
) -> None:
    expected = expected_report(lifecycle_stored, END)
    funnel = expected["funnel"]
    assert len(funnel) >= 6 and all(c["customers"] >= c["carts"] >= 1 for c in funnel)
    assert {r["rule"] for r in expected["recovered_revenue"]} >= {"cart_abandonment"}
    cart = next(r for r in expected["recovered_revenue"] if r["rule"] == "cart_abandonment")
    assert cart["delivered"]["customers"] > 0 and cart["holdout"]["customers"] > 0
    assert cart["delivered"]["revenue"]
    cancels = expected["cancellations"]
    assert cancels["full"] > 0 and cancels["partial"] > 0 and cancels["refunded"]
    pieces = [
        orjson.loads(orjson.dumps(report_inputs(p, END))) for p in split(lifecycle_stored, parts, 2)
    ]
    assert merge_report(pieces, as_of=END) == expected
    text = render_report(expected)
    assert "Funnel by first-view month" in text and "Recovered revenue" in text
    assert "Cancellations" in text


def test_a_shop_without_lifecycle_inputs_has_no_lifecycle_blocks(
    stored: list[dict[str, Any]],
) -> None:
    expected = expected_report(stored, END)
    assert not {"funnel", "recovered_revenue", "cancellations"} & set(expected)
    assert not {"funnel", "recovered", "cancellations"} & set(report_inputs(stored, END))
    assert "Funnel" not in render_report(expected)
