"""churn_risk in the offline reference (docs/prediction.md "The churn_risk rule", issue 23): the due
times are the crossings of P(alive) after the last order, a threshold already
crossed at the order is ``skipped`` there, an order restarts the ladder, and a new
``[model]`` is a new rule version that supersedes the steps due by its switch."""

from __future__ import annotations

from typing import Any

import pytest

from agents.core import prediction
from agents.core.settings import DAY, HOUR, CoreSettings
from agents.core.timeutil import iso
from agents.offline import churn
from agents.offline.reference import ReferenceResult, compute_decisions
from agents.offline.rulebook import read_rules
from agents.offline.versions import Versions, dropped
from tests.unit.offline import test_reference_vs_engine as parity
from tests.unit.offline.strategies import to_toml

A = parity.CUSTOMERS[0]
T0 = parity.T0  # 2026-03-02T10:00:00Z
CDNOW_MBG = {"r": 0.5248, "alpha": 6.183, "a": 0.8914, "b": 1.614}
CDNOW_BG = {"r": 0.2426, "alpha": 4.414, "a": 0.7929, "b": 2.426}
CHURN = {
    "name": "churn_risk",
    "priority": 25,
    "anchor": "last_order",
    # P(alive) of a one-time buyer just after the order is 1/(1 + a/b) = 0.644.
    "steps": [{"p_alive_below": 0.7}, {"p_alive_below": 0.5}, {"p_alive_below": 0.3}],
}


def model_toml(mbg: dict[str, float] | None = None, bg: dict[str, float] | None = None) -> str:
    lines = ["[model]", 'version = "m1"', 'time_unit = "week"']
    for kind, table in (("mbgnbd", mbg), ("bgnbd", bg)):
        if table is not None:
            lines.append(
                f"{kind} = {{ " + ", ".join(f"{k} = {v!r}" for k, v in table.items()) + " }"
            )
    return "\n".join(lines) + "\n"


def rules(*rule: dict[str, Any], model: str | None = None, **guard: Any) -> str:
    doc: dict[str, Any] = {
        "format": 1,
        "guardrails": {"holdout_percent": 0.0, "min_gap": "PT24H", **guard},
        "rule": list(rule),
    }
    text = to_toml(doc)
    return text if model is None else text + "\n" + model


def run(text: str, lines: list[bytes], until: int, **kw: Any) -> ReferenceResult:
    return compute_decisions(lines, CoreSettings(), rules=text, until=until, now=parity.NOW, **kw)


def got(result: ReferenceResult) -> list[tuple[int, str, str, str]]:
    return [(d["step"], d["outcome"], d["anchor_at"], d["due_at"]) for d in result.decisions]


def engine_crossing(p: float, x: int, first: int, last: int, kind: str = "mbgnbd") -> int:
    table = CDNOW_MBG if kind == "mbgnbd" else CDNOW_BG
    params = prediction.NbdParams(kind, unit="week", **table)  # type: ignore[arg-type]
    c = prediction.crossing_at(params, x, first, last, p, last)
    assert c.at is not None
    return c.at


def order(t: int, n: int) -> bytes:
    return parity.purchase(A, t, f"o{n}", f"p{n}")


def test_a_threshold_crossed_at_the_order_is_skipped_there_and_the_rest_fall_due() -> None:
    text = rules(CHURN, model=model_toml(CDNOW_MBG))
    result = run(text, [order(T0, 1)], T0 + 800 * DAY)
    assert got(result) == [
        (1, "skipped", iso(T0), iso(T0)),
        (2, "delivered", iso(T0), iso(engine_crossing(0.5, 0, T0, T0))),
        (3, "delivered", iso(T0), iso(engine_crossing(0.3, 0, T0, T0))),
    ]
    skipped = result.decisions[0]
    assert skipped["threshold_seconds"] == 0 and skipped["delivered"] is False
    # Whole minutes, some weeks apart.
    assert all(d["due_at"].endswith(":00Z") for d in result.decisions)
    assert result.rows[0].decision_counts == {
        k: 1
        for k in (
            ("churn_risk", 1, "skipped"),
            ("churn_risk", 2, "delivered"),
            ("churn_risk", 3, "delivered"),
        )
    }


def test_an_order_restarts_the_ladder_with_the_new_repeat_days() -> None:
    """The second order (another day, before step 2 falls due) moves the anchor: x = 1,
    and the new ladder's steps are the crossings from it; the old ones never come."""
    text = rules(CHURN, model=model_toml(CDNOW_MBG))
    second = T0 + 10 * DAY
    result = run(text, [order(T0, 1), order(second, 2)], T0 + 800 * DAY)
    # x = 1: c = a/(b+1) = 0.341, P(alive) at the order 0.746 - step 1 is no longer
    # crossed at the anchor.
    assert got(result) == [
        (1, "skipped", iso(T0), iso(T0)),
        (1, "delivered", iso(second), iso(engine_crossing(0.7, 1, T0, second))),
        (2, "delivered", iso(second), iso(engine_crossing(0.5, 1, T0, second))),
        (3, "delivered", iso(second), iso(engine_crossing(0.3, 1, T0, second))),
    ]


def test_two_orders_on_one_utc_day_are_no_repeat_and_bgnbd_never_falls_due() -> None:
    """BG/NBD keeps a customer with no repeat order day alive for ever: two orders on
    2026-03-02 (10:00, 20:00) have nothing due; a third on the next day has."""
    rule = {**CHURN, "model": "bgnbd", "steps": [{"p_alive_below": 0.5}]}
    text = rules(rule, model=model_toml(CDNOW_MBG, CDNOW_BG))
    same_day = [order(T0, 1), order(T0 + 10 * HOUR, 2)]
    assert run(text, same_day, T0 + 3000 * DAY).decisions == []
    third = T0 + 15 * HOUR  # 01:00 on 2026-03-03
    result = run(text, [*same_day, order(third, 3)], T0 + 3000 * DAY)
    assert got(result) == [
        (1, "delivered", iso(third), iso(engine_crossing(0.5, 1, T0, third, "bgnbd")))
    ]


def test_a_skipped_step_is_no_nudge_for_the_min_gap() -> None:
    """A fixed rule due an hour after the order is delivered although churn_risk
    recorded a skipped step at the order (min_gap 24 hours)."""
    fixed = {"name": "welcome", "priority": 10, "anchor": "first_order", "steps": ["PT1H"]}
    text = rules(CHURN, fixed, model=model_toml(CDNOW_MBG))
    result = run(text, [order(T0, 1)], T0 + 2 * DAY)
    assert [(d["rule"], d["outcome"]) for d in result.decisions] == [
        ("churn_risk", "skipped"),
        ("welcome", "delivered"),
    ]


def test_a_skipped_step_has_no_send_window_and_a_due_one_waits_for_it() -> None:
    window = {"windows": [{"days": "all", "open": "09:00", "close": "09:30"}]}
    text = rules({**CHURN, "send_window": window}, model=model_toml(CDNOW_MBG))
    result = run(text, [order(T0, 1)], T0 + 800 * DAY)
    skipped, due = result.decisions[0], result.decisions[1]
    assert skipped["outcome"] == "skipped" and "send_at" not in skipped
    assert due["outcome"] == "delivered"
    assert due["send_at"] > due["due_at"] and due["send_at"][11:16] == "09:00"


def test_an_audience_that_says_no_decides_nothing_crossed_or_due() -> None:
    """Out of the audience a step is done without a decision, a crossed one too (as
    the engine does: the audience is asked first)."""
    rule = {**CHURN, "audience": {"orders": {"max": 1}}}
    text = rules(rule, model=model_toml(CDNOW_MBG))
    second = T0 + 10 * DAY
    result = run(text, [order(T0, 1), order(second, 2)], T0 + 800 * DAY)
    # One order: the crossed step 1 is recorded; two: nothing at all.
    assert got(result) == [(1, "skipped", iso(T0), iso(T0))]


def test_a_new_model_supersedes_the_steps_due_by_its_switch_and_moves_the_rest() -> None:
    seed = rules(CHURN, model=model_toml(CDNOW_MBG))
    faster = {**CDNOW_MBG, "alpha": 1.0}  # a smaller alpha: P(alive) falls sooner
    switch = T0 + 200 * DAY
    new = rules(CHURN, model=model_toml(faster))
    until = T0 + 2000 * DAY
    result = run(seed, [order(T0, 1)], until, changes=[(switch, new)])
    old_version = read_rules(seed).rules[0].version
    new_version = read_rules(new).rules[0].version
    assert old_version != new_version
    made = [(d["step"], d["outcome"], d["due_at"], d["rule_version"]) for d in result.decisions]
    step3_old = engine_crossing(0.3, 0, T0, T0)
    assert step3_old > switch  # it would have come after the switch under the seed
    params = prediction.NbdParams("mbgnbd", unit="week", **faster)
    step3_new = prediction.crossing_at(params, 0, T0, T0, 0.3, T0).at
    assert step3_new is not None and step3_new <= switch
    # The new model says step 3 was due before the switch: superseded there, never sent.
    assert made == [
        (1, "skipped", iso(T0), old_version),
        (2, "delivered", iso(engine_crossing(0.5, 0, T0, T0)), old_version),
        (3, "superseded", iso(step3_new), new_version),
    ]


def test_a_model_change_of_another_kind_keeps_the_version_and_the_ladder() -> None:
    seed = rules(CHURN, model=model_toml(CDNOW_MBG, CDNOW_BG))
    new = rules(CHURN, model=model_toml(CDNOW_MBG, {**CDNOW_BG, "r": 0.3}))
    assert read_rules(seed).rules[0].version == read_rules(new).rules[0].version
    lines = [order(T0, 1)]
    until = T0 + 800 * DAY
    changed = run(seed, lines, until, changes=[(T0 + 20 * DAY, new)])
    assert changed.decisions == run(seed, lines, until).decisions


def test_pin_finishes_the_ladder_on_the_old_model() -> None:
    pinned = {**CHURN, "on_change": "pin"}
    seed = rules(pinned, model=model_toml(CDNOW_MBG))
    new = rules(pinned, model=model_toml({**CDNOW_MBG, "alpha": 1.0}))
    result = run(seed, [order(T0, 1)], T0 + 2000 * DAY, changes=[(T0 + 200 * DAY, new)])
    assert [(d["step"], d["outcome"], d["due_at"]) for d in result.decisions] == [
        (1, "skipped", iso(T0)),
        (2, "delivered", iso(engine_crossing(0.5, 0, T0, T0))),
        (3, "delivered", iso(engine_crossing(0.3, 0, T0, T0))),
    ]


def test_a_model_without_a_churn_rule_changes_no_version() -> None:
    fixed = {"name": "welcome", "priority": 10, "anchor": "first_order", "steps": ["PT1H"]}
    plain = read_rules(rules(fixed))
    with_model = read_rules(rules(fixed, model=model_toml(CDNOW_MBG, CDNOW_BG)))
    assert [r.version for r in plain.rules] == [r.version for r in with_model.rules]


@pytest.mark.parametrize(
    ("rule", "model", "message"),
    [
        (CHURN, None, "no [model] table for 'mbgnbd'"),
        ({**CHURN, "model": "bgnbd"}, model_toml(CDNOW_MBG), "no [model] table for 'bgnbd'"),
        ({**CHURN, "anchor": "first_order"}, model_toml(CDNOW_MBG), "needs last_order"),
        (CHURN, model_toml({**CDNOW_MBG, "r": 0.0}), "positive number"),
        (CHURN, model_toml(CDNOW_MBG).replace("week", "month"), "time_unit"),
    ],
)
def test_the_reference_refuses_a_churn_rule_it_cannot_read(
    rule: dict[str, Any], model: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_rules(rules(rule, model=model))


def test_a_new_model_is_a_new_file_version_even_when_no_rule_reads_it() -> None:
    """A pin retires at the 8th version after its own (docs/rules.md "Changing rules");
    a file whose only change is the [model] table no rule reads is still another
    version (the engine's set_id hashes [model]), so eight of them retire a pin."""
    a = rules(CHURN, model=model_toml(CDNOW_MBG, CDNOW_BG))
    b = rules(CHURN, model=model_toml(CDNOW_MBG, {**CDNOW_BG, "r": 0.3}))
    same_rules = [r.version for r in read_rules(a).rules] == [
        r.version for r in read_rules(b).rules
    ]
    assert same_rules
    versions = Versions.read(read_rules(a), [(T0 + i * DAY, b) for i in range(1, 9)])
    assert dropped(versions, versions.versions[0], versions.versions[8])
    # fitted_at is informational: not another version.
    c = a.replace('time_unit = "week"', 'time_unit = "week"\nfitted_at = "1997-09-30T00:00:00Z"')
    assert read_rules(c).model == read_rules(a).model


@pytest.mark.parametrize(
    ("r", "alpha", "a", "b", "p"),
    [(1.0, 1.0, 1.0, 1.0, 1 / 3), (0.5, 2.0, 1.0, 1.0, 0.2), (1.0, 3.0, 2.0, 2.0, 0.25)],
)
def test_a_root_on_a_round_instant_gives_the_offline_references_minute(
    r: float, alpha: float, a: float, b: float, p: float
) -> None:
    # Round parameters put the root on a whole day, where exp/log (the engine) and
    # pow (the reference) land a few microseconds apart: both read it to the
    # millisecond before rounding up, so they name the same minute (one minute apart
    # before that reading).
    first = T0  # on a whole minute
    engine = prediction.crossing_at(
        prediction.NbdParams("mbgnbd", r, alpha, a, b, "day"), 0, first, first, p, first
    )
    reference = churn.crossing(
        churn.Model("mbgnbd", r, alpha, a, b, "day"), p, 0, first, first, first
    )
    assert engine.status == reference.status == "at"
    assert engine.at == reference.at
