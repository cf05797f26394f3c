"""Send windows in the engine: a firing due outside its rule's window is dropped or
kept in the customer's row until its send time, then judged there
(docs/send-windows.md "Deferred firings").

The engine (agents/core/engine.py) calls these at three points of its walk in event
time: when a step of a rule with a window falls due (:func:`at_due`), when a kept
firing's send time comes (:func:`at_send`, a timeline item like a due step), and at a
rules switch (:func:`at_switch`).  A rule without a window never gets here: the
engine checks ``Plan.window`` (one attribute) and ``CustomerState.deferred`` (empty)
first, so the hot path without windows is today's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol
from zoneinfo import ZoneInfo

from agents.core.emissions import Due, Emission, Firing, firing_of
from agents.core.guardrails import (
    OUTCOME_CANCELLED,
    OUTCOME_OUTSIDE_WINDOW,
    OUTCOME_SUPERSEDED,
)
from agents.core.plans import Plan, VersionRules
from agents.core.send_counts import count_send
from agents.core.state import CountKey, CustomerState, DeferredFiring
from agents.core.switch import ACTION_PIN, ACTION_UNCHANGED
from agents.core.windows import SendWindowSetting, decide
from agents.core.zones import load_zone


class Judge(Protocol):
    """What these functions use of agents.core.engine.Engine (named by its shape:
    the engine imports this module)."""

    def _step_done(self, state: CustomerState, due: Due) -> None: ...

    def _judge(
        self,
        state: CustomerState,
        due: Due,
        plan: Plan,
        outranked: bool,
        seg: VersionRules,
        send_at: int | None = None,
        zone: str | None = None,
    ) -> Firing: ...


# Timeline codes of deferred firings (agents.core.engine._next_item): the firing at
# position i of ``state.deferred`` is ``DEFERRED - i``; rule steps are their rule's
# index (>= 0), the lifecycle's move -1.
DEFERRED = -2


def choose_zone(
    window: SendWindowSetting, plan: Plan, state: CustomerState
) -> tuple[str, ZoneInfo]:
    """The zone a window is read in at the due time (docs/send-windows.md "Which
    zone"): the setting's fixed zone, else the customer's zone in force now, else
    the file's default zone.  Chosen once, at the due time."""
    if window.zone is not None and plan.window_zone is not None:
        return window.zone, plan.window_zone
    if state.zone is not None:
        own = load_zone(state.zone)
        if own is not None:
            return state.zone, own
    if plan.default_zone is not None:
        return window.default_zone, plan.default_zone
    utc = load_zone("UTC")
    assert utc is not None
    return "UTC", utc


def at_due(
    engine: Judge,
    state: CustomerState,
    due: Due,
    plan: Plan,
    seg: VersionRules,
    outranked: bool,
    out: list[Emission],
) -> bool:
    """A step of a rule with a window falls due at D (past the audience check):
    inside the window it is judged now (send_at = D); outside, dropped with
    ``outside_window`` or kept until its send time.  True when it is a
    non-transactional firing judged by the guardrails at D (arbitration: a later
    firing sent at D may be outranked by it)."""
    window = plan.window
    assert window is not None
    name, zone = choose_zone(window, plan, state)
    send_at = decide(due.due_at, zone, window.windows, window.policy)
    engine._step_done(state, due)
    if send_at == due.due_at:
        out.append(engine._judge(state, due, plan, outranked, seg, send_at, name))
        return not plan.transactional
    if send_at is None:
        out.append(decided(state, due, plan, OUTCOME_OUTSIDE_WINDOW, None, name))
        return False
    state.deferred.append(
        DeferredFiring(
            due.rule,
            due.step,
            due.anchor_at,
            due.due_at,
            send_at,
            due.threshold,
            due.rule_version,
            name,
            due.key,
        )
    )
    return False


def supersede_deferred(
    state: CustomerState, plan: Plan, out: list[Emission], names: Iterable[str] | None = None
) -> None:
    """Decide the kept firing of ``plan``'s rule (of each rule in ``names``)
    ``superseded`` now: another step of the rule fell due before its send time, or a
    rules switch restarted or stopped the rule.  Its send time stays on the record."""
    wanted = {plan.name} if names is None else set(names)
    kept: list[DeferredFiring] = []
    for d in state.deferred:
        if d.rule in wanted:
            out.append(
                decided(state, _due_of(d, plan), plan, OUTCOME_SUPERSEDED, d.send_at, d.zone)
            )
        else:
            kept.append(d)
    state.deferred[:] = kept


def first_send(
    deferred: list[DeferredFiring], plans: tuple[Plan, ...], best: tuple[int, int] | None
) -> tuple[int, int] | None:
    """The earlier of ``best`` (a rule's step or the lifecycle's move, as
    ``Engine._next_item`` codes them) and the first kept firing's send time.  At one
    instant items go by their rule's priority, a kept firing before its own rule's
    due step, the lifecycle's move at its priority (docs/send-windows.md
    "Ordering at one instant")."""
    rank = -1 if best is None else _rank(best[1], plans)
    for i, d in enumerate(deferred):
        plan = _plan_named(plans, d.rule)
        # A rule missing from the plans cannot have a kept firing (a switch decides
        # it); were it so, it goes last at its instant and is cancelled.
        mine = 4 * (len(plans) if plan is None else plan.index)
        if best is None or d.send_at < best[0] or (d.send_at == best[0] and mine < rank):
            best, rank = (d.send_at, DEFERRED - i), mine
    return best


def at_send(
    engine: Judge,
    state: CustomerState,
    position: int,
    plans: tuple[Plan, ...],
    seg: VersionRules,
    busy: tuple[int, str] | None,
    out: list[Emission],
) -> str | None:
    """A kept firing's send time S has come (events dated <= S applied): the rule's
    anchor must still be the firing's and its audience hold at S, else
    ``cancelled``; then the guardrails at S, counting send times.  The rule's name
    when it is a non-transactional firing judged by the guardrails (for arbitration
    at S), else None."""
    d = state.deferred.pop(position)
    plan = _plan_named(plans, d.rule)
    at = d.send_at
    if (
        plan is None
        or plan.anchor_of(state, d.key) != d.anchor_at
        or (plan.audience and not all(p.holds(state, at) for p in plan.audience))
    ):
        shown = plan if plan is not None else _placeholder(plans)
        out.append(decided(state, _due_of(d, shown), shown, OUTCOME_CANCELLED, at, d.zone))
        return None
    # Outranked only by another rule's firing judged first at S.
    outranked = plan.arbitration and busy is not None and busy[0] == at and busy[1] != plan.name
    out.append(engine._judge(state, _due_of(d, plan), plan, outranked, seg, at, d.zone))
    return None if plan.transactional else plan.name


def at_switch(
    state: CustomerState,
    actions: Sequence[tuple[str, str, object, object]],
    plans: tuple[Plan, ...],
    out: list[Emission],
) -> None:
    """A rules switch with kept firings (docs/send-windows.md "Rules changes"): a rule
    unchanged or pinned keeps its firing until its send time; one restarted,
    stopped, removed or disabled has it decided ``superseded`` at the switch."""
    keeps = {name for name, action, _, _ in actions if action in (ACTION_UNCHANGED, ACTION_PIN)}
    gone = [d.rule for d in state.deferred if d.rule not in keeps]
    for name in gone:
        plan = _plan_named(plans, name) or _placeholder(plans)
        supersede_deferred(state, plan, out, (name,))


def decided(
    state: CustomerState,
    due: Due,
    plan: Plan,
    outcome: str,
    send_at: int | None,
    zone: str,
) -> Firing:
    """A decision that never reached the guardrails (outside_window, cancelled,
    superseded): counted for the reports, never sent, never remembered for gap, cap
    or attribution (like a switch's superseded steps)."""
    key = CountKey(due.rule, due.step, outcome)
    state.decision_counts[key] = state.decision_counts.get(key, 0) + 1
    # A cancelled or superseded firing that waited counts as a deferral (reports).
    count_send(
        state.send_counts,
        rule=due.rule,
        outcome=outcome,
        due_at=due.due_at,
        send_at=send_at,
        zone=zone,
    )
    return firing_of(
        state, due, plan, outcome, rule_version=due.rule_version, send_at=send_at, zone=zone
    )


def _due_of(d: DeferredFiring, plan: Plan) -> Due:
    return Due(
        d.due_at, plan.index, d.step, d.rule, d.anchor_at, d.threshold, d.rule_version, d.key
    )


def _plan_named(plans: tuple[Plan, ...], name: str) -> Plan | None:
    for plan in plans:
        if plan.name == name:
            return plan
    return None


def _placeholder(plans: tuple[Plan, ...]) -> Plan:
    """Any plan, for a template and channel when the rule itself is gone."""
    return plans[0]


def _rank(code: int, plans: tuple[Plan, ...]) -> int:
    """Where an item goes among those at one instant: the kept firing of the rule at
    index i at 4i, its due step at 4i + 1, the lifecycle's move at 4k - 1, k the
    first rule after it (rules are by priority, so those before it come first)."""
    if code >= 0:
        return 4 * code + 1
    after = next((p.index for p in plans if not p.before_lifecycle), len(plans))
    return 4 * after - 1
