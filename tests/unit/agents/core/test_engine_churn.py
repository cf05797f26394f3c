"""The churn_risk rule as the engine runs it (docs/prediction.md "The churn_risk rule"):
when a shop's customer is nudged as their probability of still being active falls
below each threshold, what an order does, what a step already crossed becomes, and
what a new model does to customers mid-ladder."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core.emissions import Firing
from agents.core.engine import Engine
from agents.core.guardrails import OUTCOME_SKIPPED, OUTCOME_SUPERSEDED
from agents.core.prediction import MICROS_PER_MINUTE, UNIT_MICROS, NbdParams, crossing_at, p_alive
from agents.core.rules import load_rules
from agents.core.rules.abstract import Facts
from agents.core.rules.history import RuleHistory, Version, set_id
from agents.core.rules.model import RuleSet
from agents.core.rules.steps import PAliveBelow
from agents.core.settings import DAY, CoreSettings
from agents.core.state import CustomerState
from schemas.records import Event
from tests.unit.agents.factories import T0, at, feed_in_time_order, purchase

CID = "cus_churn"
# CDNOW-like parameters in weeks (docs/prediction.md "The models").
CDNOW = NbdParams("mbgnbd", 0.5248, 6.183, 0.8914, 1.614)
HEAD = (
    'format = 1\n[guardrails]\nholdout_percent = 0\nmin_gap = "PT1H"\nfrequency_cap = 50\n'
    "[lifecycle]\npriority = 1\n"
)


def model(params: NbdParams = CDNOW, version: str = "m1", bg: str = "") -> str:
    p = params
    return (
        f'[model]\nversion = "{version}"\ntime_unit = "week"\n'
        f"mbgnbd = {{ r = {p.r}, alpha = {p.alpha}, a = {p.a}, b = {p.b} }}\n{bg}"
    )


def churn(steps: str = "0.6, 0.4, 0.2", extra: str = "") -> str:
    thresholds = ", ".join(f"{{ p_alive_below = {s.strip()} }}" for s in steps.split(","))
    return (
        f'[[rule]]\nname = "churn_risk"\npriority = 25\nanchor = "last_order"\n'
        f"steps = [{thresholds}]\n{extra}\n"
    )


def rules(*parts: str) -> RuleSet:
    return load_rules(HEAD + "".join(parts))


def engine(*parts: str) -> Engine:
    return Engine(CoreSettings(rules=rules(*parts)))


def decisions(eng: Engine, events: list[Event], until: int = at(days=4000)) -> list[Firing]:
    state = CustomerState(customer_id=CID, partition=0)
    return [f for f in feed_in_time_order(eng, state, events, until) if isinstance(f, Firing)]


def weeks(micros: int) -> float:
    return micros / UNIT_MICROS["week"]


def test_step_one_falls_due_at_the_closed_form_instant_rounded_up_to_the_minute() -> None:
    first, last = T0, at(days=10)
    out = decisions(engine(model(), churn()), [purchase(CID, first), purchase(CID, last)])
    step1 = out[0]
    crossing = crossing_at(CDNOW, 1, first, last, 0.6, last)
    assert (step1.rule, step1.step, step1.outcome) == ("churn_risk", 1, "delivered")
    assert crossing.status == "at" and step1.due_at == crossing.at
    assert step1.due_at % MICROS_PER_MINUTE == 0 and step1.anchor_at == last
    # P(alive) is above 0.6 a minute before and at or below it when the nudge is due.
    t_x = weeks(last - first)
    before = p_alive(CDNOW, 1, t_x, weeks(step1.due_at - MICROS_PER_MINUTE - first))
    after = p_alive(CDNOW, 1, t_x, weeks(step1.due_at - first))
    assert before > 0.6 >= after
    assert [(f.step, f.outcome) for f in out] == [
        (1, "delivered"),
        (2, "delivered"),
        (3, "delivered"),
    ]
    assert out[0].due_at < out[1].due_at < out[2].due_at


def test_an_order_restarts_the_ladder_with_the_new_inputs() -> None:
    eng = engine(model(), churn())
    lone = decisions(eng, [purchase(CID, T0)])[0]
    # An order a day before step 1 was due: nothing fires then; the ladder restarts
    # from the new order with x = 1.
    second = lone.due_at - DAY
    out = decisions(eng, [purchase(CID, T0), purchase(CID, second)])
    assert out[0].due_at != lone.due_at and out[0].step == 1 and out[0].anchor_at == second
    assert out[0].due_at == crossing_at(CDNOW, 1, T0, second, 0.6, second).at


def test_a_threshold_crossed_at_the_anchor_is_skipped_and_the_next_step_still_fires() -> None:
    # MBG/NBD: a one-order customer is at 1/(1 + a/b) = 0.644 just after the order.
    assert p_alive(CDNOW, 0, 0, 0) < 0.7
    out = decisions(engine(model(), churn("0.7, 0.4")), [purchase(CID, T0)])
    assert [(f.step, f.due_at, f.outcome) for f in out] == [
        (1, T0, OUTCOME_SKIPPED),
        (2, crossing_at(CDNOW, 0, T0, T0, 0.4, T0).at, "delivered"),
    ]
    assert out[0].threshold == 0 and not out[0].holdout


def test_a_skipped_step_has_no_send_window_and_counts_for_no_gap() -> None:
    window = 'send_window = { windows = [{ days = "all", open = "09:00", close = "10:00" }] }'
    state = CustomerState(customer_id=CID, partition=0)
    out = feed_in_time_order(
        engine(model(), churn("0.7, 0.4", window)), state, [purchase(CID, T0)], at(days=4000)
    )
    skipped = [f for f in out if isinstance(f, Firing) and f.outcome == OUTCOME_SKIPPED]
    assert len(skipped) == 1 and skipped[0].send_at is None and skipped[0].zone is None
    assert all(f.outcome != OUTCOME_SKIPPED for f in state.recent_firings)


def test_a_bgnbd_one_time_buyer_never_falls_due_until_a_second_order() -> None:
    bg = "bgnbd = { r = 0.2426, alpha = 4.414, a = 0.7929, b = 2.426 }\n"
    eng = engine(model(bg=bg), churn(extra='model = "bgnbd"'))
    assert decisions(eng, [purchase(CID, T0)], until=at(days=36500)) == []
    assert eng.pending(CustomerState(customer_id=CID)) == []
    out = decisions(eng, [purchase(CID, T0), purchase(CID, at(days=30))])
    assert [f.step for f in out] == [1, 2, 3] and out[0].anchor_at == at(days=30)


def test_a_new_model_at_ti_supersedes_the_steps_it_has_crossed_no_mass_send() -> None:
    seed = rules(model(), churn())
    # A model in which customers decay far faster: under it, steps 1 and 2 of a
    # customer whose last order was 60 days ago are already due at Ti.
    fast = NbdParams("mbgnbd", 0.5248, 0.5, 0.8914, 1.614)
    new = rules(model(fast, version="m2"), churn())
    assert new.rules[0].version != seed.rules[0].version
    ti = at(days=70)
    history = RuleHistory.seed(seed).add(Version(set_id(new), new, "", ti, ti))
    eng = Engine(CoreSettings(rules=seed)).with_history(history)
    events = [purchase(CID, T0), purchase(CID, at(days=10))]
    out = decisions(eng, events)
    due_new = [crossing_at(fast, 1, T0, at(days=10), p, at(days=10)) for p in (0.6, 0.4, 0.2)]
    crossed = sum(1 for c in due_new if c.at is not None and c.at <= ti)
    assert crossed >= 1
    old = [f for f in out if f.rule_version == seed.rules[0].version]
    assert all(f.due_at < ti and f.outcome == "delivered" for f in old)
    # The steps the new model has crossed by Ti, but those already sent, are
    # superseded at Ti: recorded, never sent.
    superseded = [f for f in out if f.outcome == OUTCOME_SUPERSEDED]
    assert [f.step for f in superseded] == list(range(len(old) + 1, crossed + 1))
    assert superseded and all(f.rule_version == new.rules[0].version for f in superseded)
    # Nothing else is delivered until the new model's next crossing.
    later = [f for f in out if f.outcome == "delivered" and f not in old]
    assert [f.due_at for f in later] == [c.at for c in due_new[crossed:]]
    assert all(t > ti for t in [f.due_at for f in later])


def test_a_file_without_model_keeps_its_version() -> None:
    text = (
        'format = 1\n[[rule]]\nname = "w"\npriority = 10\nanchor = "last_order"\nsteps = ["P7D"]\n'
    )
    plain = load_rules(text)
    assert plain.model is None
    with_model = load_rules(text + model())
    assert plain.rules[0].version == with_model.rules[0].version
    assert set_id(plain) != set_id(with_model)


@settings(max_examples=40, deadline=None)
@given(
    days=st.lists(st.integers(0, 400), min_size=1, max_size=8),
    hours=st.lists(st.integers(0, 23), min_size=8, max_size=8),
    order=st.randoms(use_true_random=False),
)
def test_the_arrival_order_of_orders_changes_neither_order_days_nor_decisions(
    days: list[int], hours: list[int], order: object
) -> None:
    events = [purchase(CID, at(days=d, hours=h)) for d, h in zip(days, hours, strict=False)]
    eng = engine(model(), churn("0.7, 0.4, 0.2"))
    in_time = CustomerState(customer_id=CID, partition=0)
    expected = feed_in_time_order(eng, in_time, events, at(days=3000))
    shuffled = list(events)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    # Every order dated after the clock: each waits in pending, applied in time order.
    state = CustomerState(customer_id=CID, partition=0)
    got = []
    for e in shuffled:
        emitted = eng.ingest(state, e, T0 - 1)
        assert isinstance(emitted, list)
        got += emitted
    got += eng.advance(state, at(days=3000))
    distinct = len({e.occurred_at // DAY for e in events})
    assert state.order_days == in_time.order_days == distinct
    assert [(f.step, f.due_at, f.outcome) for f in got if isinstance(f, Firing)] == [
        (f.step, f.due_at, f.outcome) for f in expected if isinstance(f, Firing)
    ]


def test_a_crossing_too_far_to_compute_or_past_100_years_is_never_due() -> None:
    tiny = NbdParams("mbgnbd", 0.01, 6.183, 1e-6, 1.614)
    out = decisions(engine(model(tiny), churn("0.01")), [purchase(CID, T0)], at(days=36500))
    assert out == []
    far = crossing_at(CDNOW, 0, T0, T0, 0.001, T0).at
    assert far is not None and far - T0 > 100 * 366 * DAY
    eng = engine(model(), churn("0.001"))
    state = CustomerState(customer_id=CID, partition=0)
    feed_in_time_order(eng, state, [purchase(CID, T0)], T0)
    assert eng.pending(state) == [] and eng.wake_at(state) is not None  # the lifecycle's
    assert eng.next_due(state) is None


@settings(max_examples=200, deadline=None)
@given(
    facts=st.lists(
        st.tuples(
            st.sampled_from([None, at(days=0), at(days=3)]),
            # Two customers may share a last order and differ in their first.
            st.sampled_from([0, 3 * DAY, 37 * DAY, 40 * DAY]),
            st.integers(1, 4),
        ),
        max_size=20,
    ),
    p=st.sampled_from([0.9, 0.6, 0.2]),
)
def test_a_churn_step_remembers_its_last_threshold_only_for_the_same_facts(
    facts: list[tuple[int | None, int, int]], p: float
) -> None:
    """A churn_risk step keeps its last customer's threshold (docs/performance.md "The
    core fast paths"): for any run of customers' facts, repeated or not, the answer
    is what a step with nothing remembered computes, so no customer is due at
    another's crossing."""
    step = PAliveBelow(p, CDNOW)
    for first, gap, days in facts:
        last = None if first is None else first + gap
        customer = cast(
            Facts, SimpleNamespace(first_order_at=first, last_order_at=last, order_days=days)
        )
        assert step.threshold(customer) == PAliveBelow(p, CDNOW).threshold(customer)
