"""Rules changes on a live deployment, as the engine runs them (docs/rules.md "Changing
rules"): what a growth team sees when it publishes a new version while customers are
mid-ladder - pin, restart with superseded steps, unchanged, removed and new rules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core.emissions import Firing
from agents.core.engine import Engine
from agents.core.rules import load_rules
from agents.core.rules.history import MAX_VERSIONS, RuleHistory, Version, compatible, set_id
from agents.core.rules.model import RuleSet
from agents.core.settings import CoreSettings
from agents.core.state import CustomerState, LadderProgress
from schemas.records import Event
from tests.unit.agents.factories import T0, at, purchase, session

CID = "cus_switch"
HEAD = 'format = 1\n[guardrails]\nholdout_percent = 0\nmin_gap = "PT1H"\nfrequency_cap = 50\n'


def rule(
    name: str = "winback",
    steps: str = '"P2D", "P4D", "P6D"',
    *,
    priority: int = 10,
    anchor: str = '"first_order"',
    extra: str = "",
) -> str:
    return (
        f'[[rule]]\nname = "{name}"\npriority = {priority}\nanchor = {anchor}\n'
        f"steps = [{steps}]\n{extra}\n"
    )


def rules(*parts: str, head: str = HEAD) -> RuleSet:
    return load_rules(head + "".join(parts))


def history(seed: RuleSet, *changes: tuple[int, RuleSet]) -> RuleHistory:
    h = RuleHistory.seed(seed)
    for t, rs in changes:
        h = h.add(Version(set_id(rs), rs, "", t, t))
    return h


def engine_of(seed: RuleSet, *changes: tuple[int, RuleSet]) -> Engine:
    return Engine(CoreSettings(rules=seed)).with_history(history(seed, *changes))


Seen = tuple[str, int, int, str, str | None]


def run(
    eng: Engine, events: list[Event], until: int = at(days=60), state: CustomerState | None = None
) -> list[Seen]:
    """Events taken in as the clock reaches them, then the clock to ``until``: the
    decisions as (rule, step, due_at in days from T0, outcome, rule_version)."""
    state = state or CustomerState(customer_id=CID, partition=0)
    out = []
    for e in sorted(events, key=lambda e: (e.occurred_at, e.event_id)):
        got = eng.ingest(state, e, e.occurred_at - 1)
        assert isinstance(got, list)
        out += got
    out += eng.advance(state, until)
    return [seen(f) for f in out if isinstance(f, Firing)]


def seen(f: Firing) -> Seen:
    return (f.rule, f.step, f.due_at, f.outcome, f.rule_version)


SEED = rules(rule())
V_SEED = SEED.rules[0].version


def test_a_pinned_ladder_finishes_under_its_version_and_new_customers_get_the_new_one() -> None:
    new = rules(rule(steps='"P1D", "P5D", "P10D"', extra='on_change = "pin"'))
    v_new = new.rules[0].version
    eng = engine_of(SEED, (at(days=3), new))
    # Mid-ladder at the switch (step 1 fired at day 2): steps 2 and 3 at days 4 and 6.
    assert run(eng, [purchase(CID, T0)]) == [
        ("winback", 1, at(days=2), "delivered", V_SEED),
        ("winback", 2, at(days=4), "delivered", V_SEED),
        ("winback", 3, at(days=6), "delivered", V_SEED),
    ]
    # First order after the switch: the new steps.
    assert run(eng, [purchase(CID, at(days=3.5))]) == [
        ("winback", 1, at(days=4.5), "delivered", v_new),
        ("winback", 2, at(days=8.5), "delivered", v_new),
        ("winback", 3, at(days=13.5), "delivered", v_new),
    ]


def test_a_restart_keeps_the_steps_fired_and_supersedes_those_already_due() -> None:
    new = rules(rule(steps='"P1D", "P2D", "P3D", "P8D"'))
    v_new = new.rules[0].version
    got = run(engine_of(SEED, (at(days=3.5), new)), [purchase(CID, T0)])
    # No burst at the switch: steps 2 and 3 of the new ladder were due at days 2 and
    # 3, before it took effect; step 4 fires when due.
    assert got == [
        ("winback", 1, at(days=2), "delivered", V_SEED),
        ("winback", 2, at(days=2), "superseded", v_new),
        ("winback", 3, at(days=3), "superseded", v_new),
        ("winback", 4, at(days=8), "delivered", v_new),
    ]


def test_superseded_decisions_are_counted_but_never_nudges_for_gap_cap_or_attribution() -> None:
    new = rules(rule(steps='"P1D", "P2D", "P3D", "P8D"'))
    eng = engine_of(SEED, (at(days=3.5), new))
    state = CustomerState(customer_id=CID, partition=0)
    run(eng, [purchase(CID, T0)], until=at(days=4), state=state)
    assert state.decision_counts[("winback", 2, "superseded")] == 1
    assert [(f.step, f.outcome) for f in state.recent_firings] == [(1, "delivered")]
    assert state.rules_at == at(days=3.5)


def test_an_unchanged_rule_keeps_going_across_a_switch() -> None:
    other = rule("welcome", '"P1D"', priority=5, anchor='"last_session"')
    seed = rules(rule(), other)
    new = rules(rule(), rule("welcome", '"P3D"', priority=5, anchor='"last_session"'))
    events = [purchase(CID, T0), session(CID, at(days=1.5))]
    alone = [s for s in run(engine_of(seed), events) if s[0] == "winback"]
    switched = [s for s in run(engine_of(seed, (at(days=3), new)), events) if s[0] == "winback"]
    assert (
        switched
        == alone
        == [
            ("winback", 1, at(days=2), "delivered", V_SEED),
            ("winback", 2, at(days=4), "delivered", V_SEED),
            ("winback", 3, at(days=6), "delivered", V_SEED),
        ]
    )


def test_a_removed_rule_stops_at_the_switch_pinned_or_not() -> None:
    keep = rule("welcome", '"P30D"', priority=5)
    pinned = rules(rule(extra='on_change = "pin"'), keep)
    removed = rules(keep)
    disabled = rules(rule(extra="enabled = false"), keep)
    for new in (removed, disabled):
        for seed in (SEED, pinned):
            got = run(engine_of(rules(rule(), keep), (at(days=1), seed), (at(days=3), new)), [])
            assert got == []
            got = run(
                engine_of(rules(rule(), keep), (at(days=1), seed), (at(days=3), new)),
                [purchase(CID, T0)],
            )
            assert [s[:2] for s in got] == [("winback", 1), ("welcome", 1)], got


def test_a_new_rule_supersedes_its_past_steps_instead_of_a_burst() -> None:
    new = rules(rule(), rule("nudge", '"P1D", "P5D"', priority=20))
    v_nudge = new.rule("nudge").version  # type: ignore[union-attr]
    got = run(engine_of(SEED, (at(days=3), new)), [purchase(CID, T0)])
    assert [s for s in got if s[0] == "nudge"] == [
        ("nudge", 1, at(days=1), "superseded", v_nudge),
        ("nudge", 2, at(days=5), "delivered", v_nudge),
    ]


def test_events_at_exactly_the_switch_go_first_and_a_step_due_then_is_superseded() -> None:
    pin = rules(rule(steps='"P1D"', extra='on_change = "pin"'))
    v_pin = pin.rules[0].version
    # The first order at exactly Ti is applied before the switch: its anchor is not
    # before Ti, so nothing is pinned; the new version runs it.
    got = run(engine_of(SEED, (at(days=3), pin)), [purchase(CID, at(days=3))])
    assert got == [("winback", 1, at(days=4), "delivered", v_pin)]
    # A step due at exactly Ti goes after the switch: under a restart it is due, at
    # Ti, under the new version - superseded, never fired under the old one.
    restart = rules(rule(steps='"P2D", "P9D"', extra='reason = "{rule} {step}"'))
    v_restart = restart.rules[0].version
    got = run(engine_of(SEED, (at(days=2), restart)), [purchase(CID, T0)])
    assert got == [
        ("winback", 1, at(days=2), "superseded", v_restart),
        ("winback", 2, at(days=9), "delivered", v_restart),
    ]


LAST_ORDER = '"last_order"'


def test_a_pin_ends_when_its_anchor_moves_and_the_new_anchor_runs_the_new_version() -> None:
    seed = rules(rule(anchor=LAST_ORDER))
    new = rules(rule(steps='"P1D", "P3D"', anchor=LAST_ORDER, extra='on_change = "pin"'))
    v_seed, v_new = seed.rules[0].version, new.rules[0].version
    got = run(engine_of(seed, (at(days=3), new)), [purchase(CID, T0), purchase(CID, at(days=5))])
    assert got == [
        ("winback", 1, at(days=2), "delivered", v_seed),
        ("winback", 2, at(days=4), "delivered", v_seed),
        ("winback", 1, at(days=6), "delivered", v_new),
        ("winback", 2, at(days=8), "delivered", v_new),
    ]


def test_a_late_event_ends_a_pin_when_it_arrives() -> None:
    seed = rules(rule(anchor=LAST_ORDER))
    new = rules(rule(steps='"P1D", "P3D"', anchor=LAST_ORDER, extra='on_change = "pin"'))
    eng = engine_of(seed, (at(days=3), new))
    state = CustomerState(customer_id=CID, partition=0)
    got = run(eng, [purchase(CID, T0)], until=at(days=5), state=state)
    assert state.ladders["winback"] == LadderProgress(T0, 2, set_id(seed))
    # An order dated day 4.5 arriving at day 5 (late): the anchor moves, the pin ends.
    late = eng.ingest(state, purchase(CID, at(days=4.5)), at(days=5))
    assert isinstance(late, list) and not [f for f in late if isinstance(f, Firing)]
    assert state.ladders["winback"].pin is None
    got = [seen(f) for f in eng.advance(state, at(days=30)) if isinstance(f, Firing)]
    assert got == [
        ("winback", 1, at(days=5.5), "delivered", new.rules[0].version),
        ("winback", 2, at(days=7.5), "delivered", new.rules[0].version),
    ]


def test_a_pin_ended_by_a_cancel_is_done_for_its_anchor_under_the_new_version() -> None:
    seed = rules(rule(extra='cancel_on = ["session"]'))
    new = rules(rule(steps='"P1D", "P5D", "P9D"', extra='on_change = "pin"'))
    # The session cancels the pinned ladder; the new version's anchor is the same
    # first order (it does not cancel on sessions): that anchor's ladder is done.
    got = run(engine_of(seed, (at(days=3), new)), [purchase(CID, T0), session(CID, at(days=3.5))])
    assert got == [("winback", 1, at(days=2), "delivered", seed.rules[0].version)]


def test_an_exhausted_pinned_ladder_is_silent_until_its_anchor_moves() -> None:
    seed = rules(rule(steps='"P1D"', anchor=LAST_ORDER))
    new = rules(rule(steps='"P1D", "P2D"', anchor=LAST_ORDER, extra='on_change = "pin"'))
    eng = engine_of(seed, (at(days=3), new))
    # Step 1 of 1 fired before the switch: not mid-ladder, so not pinned; the new
    # version's step 2 (due day 2) is superseded at the switch.
    got = run(eng, [purchase(CID, T0)])
    assert [s[1:4] for s in got] == [(1, at(days=1), "delivered"), (2, at(days=2), "superseded")]
    # Pinned mid-ladder (step 1 due day 4 under a 4-step seed), exhausted, then silent
    # until the next order, which starts the new version's ladder.
    seed4 = rules(rule(steps='"P4D", "P5D"', anchor=LAST_ORDER))
    eng = engine_of(seed4, (at(days=3), new))
    got = run(eng, [purchase(CID, T0), purchase(CID, at(days=20))])
    assert [s[1:4] for s in got] == [
        (1, at(days=4), "delivered"),
        (2, at(days=5), "delivered"),
        (1, at(days=21), "delivered"),
        (2, at(days=22), "delivered"),
    ]
    assert {s[4] for s in got[:2]} == {seed4.rules[0].version}


def test_the_guardrails_of_the_version_in_force_judge_each_step() -> None:
    held = rules(rule(), head=HEAD.replace("holdout_percent = 0", "holdout_percent = 100"))
    got = run(engine_of(SEED, (at(days=3), held)), [purchase(CID, T0)])
    assert [s[3] for s in got] == ["delivered", "holdout", "holdout"]


def test_a_pin_retires_at_the_switch_to_the_eighth_version_after_its_own() -> None:
    pin = rules(rule(steps='"P1D", "P3D", "P8D"', extra='on_change = "pin"'))
    eng = engine_of(SEED, (at(days=3), pin))
    state = CustomerState(customer_id=CID, partition=0)
    run(eng, [purchase(CID, T0)], until=at(days=3), state=state)
    assert state.ladders["winback"].pin == set_id(SEED)
    # The row goes to storage; meanwhile MAX_VERSIONS - 1 more versions arrive, one an
    # hour, each changing another rule only: the 8th after the seed comes at +7 h.
    state = CustomerState.from_dict(state.to_dict())
    h = history(SEED, (at(days=3), pin))
    for i in range(1, MAX_VERSIONS):
        extra = rules(rule(steps='"P1D", "P3D", "P8D"', extra='on_change = "pin"'), _other(i))
        h = h.add(Version(set_id(extra), extra, "", at(days=3, hours=i), at(days=3, hours=i)))
    assert len(h.versions) == MAX_VERSIONS + 1 and h.by_id(set_id(SEED)) is not None
    eng = Engine(CoreSettings(rules=SEED)).with_history(h)
    assert eng.advance(state, at(days=3, hours=6)) == []
    assert state.ladders["winback"].pin == set_id(SEED)  # still pinned after 6 switches
    got = [seen(f) for f in eng.advance(state, at(days=30)) if isinstance(f, Firing)]
    # At the 8th switch: restart under the version then in force, step 1 fired
    # (progress kept), step 2 (day 3) superseded; step 3 at day 8.
    v = pin.rules[0].version
    assert got == [
        ("winback", 2, at(days=3), "superseded", v),
        ("winback", 3, at(days=8), "delivered", v),
    ]
    assert state.ladders["winback"].pin is None


def _other(i: int) -> str:
    return rule("other", f'"P{i}D"', priority=30, anchor='"last_session"')


def test_a_row_keeps_its_last_switch_and_pins_and_old_rows_read_back_unchanged() -> None:
    state = CustomerState(customer_id=CID, partition=0)
    state.ladders = {"a": LadderProgress(5, 1), "b": LadderProgress(7, 2, "0123456789ab")}
    state.rules_at = at(days=3)
    row = state.to_dict()
    assert row["rv"] == at(days=3)
    assert row["ladders"] == {"a": [5, 1], "b": [7, 2, "0123456789ab"]}
    back = CustomerState.from_dict(row)
    assert back.ladders == state.ladders and back.rules_at == at(days=3)
    assert back.to_dict() == row
    plain = CustomerState(customer_id=CID, partition=0)
    plain.ladders = {"a": LadderProgress(5, 1)}
    assert "rv" not in plain.to_dict()
    assert CustomerState.from_dict(plain.to_dict()).to_dict() == plain.to_dict()


def test_the_switch_wakes_every_customer_at_its_applied_time() -> None:
    eng = engine_of(SEED, (at(days=30), rules(rule(steps='"P1D"'))))
    state = CustomerState(customer_id=CID, partition=0)
    assert eng.wake_at(state) == at(days=30)
    eng.advance(state, at(days=30))
    assert state.rules_at == at(days=30) and eng.wake_at(state) is None


def test_preview_says_what_a_version_would_do_to_each_ladder_in_progress() -> None:
    seed = rules(rule(), rule("welcome", '"P1D", "P10D"', priority=5, anchor='"last_session"'))
    eng = Engine(CoreSettings(rules=seed))
    state = CustomerState(customer_id=CID, partition=0)
    run(eng, [purchase(CID, T0), session(CID, at(days=1))], until=at(days=3), state=state)
    before = state.to_dict()
    new = rules(rule(steps='"P1D", "P2D", "P3D", "P8D"'))
    version = Version(set_id(new), new, "", at(days=3.5), at(days=3.5))
    assert eng.preview_switch(state, version, at(days=3.5)) == {
        "winback": ("restart", 2),
        "welcome": ("stopped", 0),
    }
    pin = rules(
        rule(steps='"P1D"', extra='on_change = "pin"'),
        rule("welcome", '"P1D", "P10D"', priority=5, anchor='"last_session"'),
    )
    version = Version(set_id(pin), pin, "", at(days=3.5), at(days=3.5))
    assert eng.preview_switch(state, version, at(days=3.5)) == {
        "winback": ("pin", 0),
        "welcome": ("unchanged", 0),
    }
    assert state.to_dict() == before


def test_a_live_change_must_keep_the_lifecycle_and_the_attribution_window() -> None:
    lifecycle = rules(rule(), head=HEAD + '[lifecycle]\nat_risk_after = "P20D"\n')
    window = rules(rule(), head=HEAD + 'attribution_window = "P2D"\n')
    assert compatible(SEED, rules(rule(steps='"P1D"'))) == []
    [problem] = compatible(SEED, lifecycle)
    assert problem.path == "lifecycle"
    assert "lifecycle cannot change on a live deployment" in problem.message
    assert [p.path for p in compatible(SEED, window)] == ["guardrails.attribution_window"]


# --- the engine's own determinism across switches -------------------------------------

VARIANTS = [
    rule(),
    rule(steps='"P1D", "P3D", "P8D"', extra='on_change = "pin"'),
    rule(steps='"P1D", "P2D", "P3D", "P8D"'),
    rule(steps='"PT12H", "P5D"', anchor=LAST_ORDER, extra='on_change = "pin"'),
    rule(anchor=LAST_ORDER, extra='cancel_on = ["session"]\non_change = "pin"'),
    rule(steps='"P2D"', anchor='"last_activity"'),
]
SECOND = [
    "",
    rule("welcome", '"P1D", "P4D"', priority=5, anchor='"last_session"'),
    rule("welcome", '"P2D"', priority=16, anchor='"last_order"', extra='on_change = "pin"'),
]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Engine, list[Event], list[int]]:
    def version() -> RuleSet:
        return rules(draw(st.sampled_from(VARIANTS)), draw(st.sampled_from(SECOND)))

    seed = version()
    times = sorted(set(draw(st.lists(st.integers(1, 20 * 24), min_size=1, max_size=3))))
    changes = [(at(hours=h), version()) for h in times]
    kept = [(t, rs) for i, (t, rs) in enumerate(changes) if i == 0 or rs != changes[i - 1][1]]
    hs = draw(st.lists(st.integers(0, 20 * 24), max_size=8))
    kinds = draw(st.lists(st.booleans(), min_size=len(hs), max_size=len(hs)))
    events = [
        purchase(CID, at(hours=h)) if buy else session(CID, at(hours=h))
        for h, buy in zip(hs, kinds, strict=True)
    ]
    cuts = sorted(draw(st.lists(st.integers(0, 40 * 24), max_size=10)))
    history_ = RuleHistory.seed(seed)
    for t, rs in kept:
        if set_id(rs) != history_.current.id:
            history_ = history_.add(Version(set_id(rs), rs, "", t, t))
    eng = Engine(CoreSettings(rules=seed)).with_history(history_)
    return eng, events, [at(hours=c) for c in cuts]


@given(scenarios())
@settings(max_examples=60, deadline=None)
def test_decisions_do_not_depend_on_how_the_clock_advances_across_switches(
    case: tuple[Engine, list[Event], list[int]],
) -> None:
    eng, events, cuts = case
    end = at(days=45)
    one = CustomerState(customer_id=CID, partition=0)
    for e in events:
        assert isinstance(eng.ingest(one, e, T0 - 1), list)
    big = [seen(f) for f in eng.advance(one, end) if isinstance(f, Firing)]
    many = CustomerState(customer_id=CID, partition=0)
    for e in events:
        eng.ingest(many, e, T0 - 1)
    small: list[Seen] = []
    for w in [*cuts, end]:
        small += [seen(f) for f in eng.advance(many, w) if isinstance(f, Firing)]
        # Stored and read back between advances, as the worker does.
        many = CustomerState.from_dict(many.to_dict())
    assert small == big
    assert many.to_dict() == one.to_dict()
    # Each event taken in just before the clock reaches it, the clock also stopping
    # at the cuts (a row's life in the worker).
    live = CustomerState(customer_id=CID, partition=0)
    steps: list[tuple[int, int, str, Event | None]] = [
        (e.occurred_at, 0, e.event_id, e) for e in events
    ]
    steps += [(w, 1, "", None) for w in cuts]
    stepped: list[Seen] = []
    for t, _, _, e in sorted(steps, key=lambda x: x[:3]):
        got = eng.advance(live, t) if e is None else eng.ingest(live, e, t - 1)
        assert isinstance(got, list)
        stepped += [seen(f) for f in got if isinstance(f, Firing)]
    stepped += [seen(f) for f in eng.advance(live, end) if isinstance(f, Firing)]
    assert stepped == big


def test_an_engine_runs_the_history_it_is_given_not_its_settings_file() -> None:
    # A worker without a rules file runs what was published: the default settings,
    # a published seed with its own lifecycle and attribution window.
    published = rules(
        rule(steps='"P1D"'),
        head=HEAD + 'attribution_window = "P2D"\n[lifecycle]\nat_risk_after = "P3D"\n',
    )
    eng = Engine(CoreSettings()).with_history(RuleHistory.seed(published))
    state = CustomerState(customer_id=CID, partition=0)
    got = run(eng, [purchase(CID, T0), purchase(CID, at(days=3.5))], state=state)
    assert got[0] == ("winback", 1, at(days=1), "delivered", published.rules[0].version)
    # Converted 2.5 days after the nudge: outside the published 2-day window.
    assert state.conversion_counts == {}
    assert eng.lifecycle == published.lifecycle and eng.rules == published.active
