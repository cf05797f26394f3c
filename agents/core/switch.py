"""What a rules switch does to one customer (docs/rules.md "Changing rules"): per rule
of the new version, keep going (unchanged), pin the ladder to the version it entered
under, or restart it with the steps already due recorded as superseded; and when a
pinned ladder ends.  Pure functions of the customer's state and the two versions; the
engine applies them (``Engine._switch``), ``retention rules publish --dry-run`` counts
them (:func:`preview`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from agents.core.emissions import Due, Firing, firing_of
from agents.core.guardrails import OUTCOME_BACKFILL, OUTCOME_SUPERSEDED
from agents.core.plans import Plan, VersionRules
from agents.core.rules.history import MAX_VERSIONS
from agents.core.rules.model import MAX_LADDER_STEPS, ON_CHANGE_PIN
from agents.core.state import CartEntry, CountKey, CustomerState, LadderProgress

# What a rules switch does to a rule a customer is mid-ladder in.
ACTION_PIN = "pin"
ACTION_RESTART = "restart"
ACTION_UNCHANGED = "unchanged"
ACTION_STOPPED = "stopped"


def switch_actions(
    state: CustomerState,
    old: VersionRules,
    new: VersionRules,
    at: int,
    by_id: Mapping[str, VersionRules],
    retired: Callable[[str], bool],
) -> list[tuple[str, str, LadderProgress | None, list[Due]]]:
    """What the switch from ``old`` to ``new`` at ``at`` does to each rule: (rule,
    action, its progress after (None: unchanged), the steps superseded), pure."""
    ladders = state.ladders
    actions: list[tuple[str, str, LadderProgress | None, list[Due]]] = []
    # A rule gone from the new version stops, pinned or not: a removal is a
    # removal (its progress stays, harmless; the pin goes).
    for name, had in ladders.items():
        if name not in new.by_name and had.pin is not None:
            actions.append((name, ACTION_STOPPED, LadderProgress(had.anchor, had.step), []))
    for plan in new.plans:
        name = plan.name
        progress = ladders.get(name)
        pin = progress.pin if progress is not None else None
        governing = old if pin is None else None if retired(pin) else by_id.get(pin)
        before = governing.by_name.get(name) if governing is not None else None
        if before is not None and before.version == plan.version:
            actions.append((name, ACTION_UNCHANGED, None, []))
            continue
        if plan.keyed:
            # Never pinned (rules check): each cart's ladder restarts.
            actions.append((name, ACTION_RESTART, None, keyed_superseded(plan, state, at)))
            continue
        if (
            plan.on_change == ON_CHANGE_PIN
            and before is not None
            and governing is not None
            and active(before, progress, state, at)
        ):
            anchor = before.resolve(state)
            assert anchor is not None
            k = progress.step if progress is not None and progress.anchor == anchor else 0
            actions.append((name, ACTION_PIN, LadderProgress(anchor, k, governing.id), []))
            continue
        # Restart: keep the steps fired for the anchor, supersede those due by now.
        dropped = None
        if progress is not None and pin is not None:
            dropped = LadderProgress(progress.anchor, progress.step)
        anchor = plan.resolve(state)
        superseded: list[Due] = []
        if anchor is not None:
            k = progress.step if progress is not None and progress.anchor == anchor else 0
            for j in range(k + 1, plan.size + 1):
                threshold = plan.threshold(j, state)
                # None: a churn_risk step that never falls due (nothing to supersede).
                if threshold is None or anchor + threshold > at:
                    break
                superseded.append(
                    Due(anchor + threshold, plan.index, j, name, anchor, threshold, plan.version)
                )
        actions.append((name, ACTION_RESTART, dropped, superseded))
    return actions


def keyed_superseded(plan: Plan, state: CustomerState, at: int) -> list[Due]:
    """A keyed rule restarted at ``at``: per kept cart, its ladder's steps due by then
    and not fired for its anchor, cart by cart in the carts' order (docs/lifecycle.md
    "Rules")."""
    resolve = plan.resolve_key
    assert resolve is not None
    out: list[Due] = []
    for cart in sorted(state.carts, key=lambda c: c.cart_id):
        anchor = resolve(state, cart)
        if anchor is None:
            continue
        progress = cart.progress.get(plan.name)
        k = progress[1] if progress is not None and progress[0] == anchor else 0
        for j in range(k + 1, plan.size + 1):
            threshold = plan.threshold(j, state)
            if threshold is None or anchor + threshold > at:
                break
            due_at = anchor + threshold
            out.append(
                Due(due_at, plan.index, j, plan.name, anchor, threshold, plan.version, cart.cart_id)
            )
    return out


def end_pins(state: CustomerState, by_id: Mapping[str, VersionRules], seg: VersionRules) -> None:
    """A pinned ladder ends when its anchor (under its version) moves or is
    cancelled: the rule follows the version in force again, and if that
    version's anchor is the pinned one, that anchor's ladder is done
    (docs/rules.md "Changing rules")."""
    ladders = state.ladders
    for name, progress in list(ladders.items()):
        if progress.pin is None:
            continue
        pinned = by_id.get(progress.pin)
        own = pinned.by_name.get(name) if pinned is not None else None
        if own is None or own.resolve(state) == progress.anchor:
            continue
        now = seg.by_name.get(name)
        anchor = now.resolve(state) if now is not None else None
        step = MAX_LADDER_STEPS if anchor == progress.anchor else progress.step
        ladders[name] = LadderProgress(progress.anchor, step)


def preview(
    state: CustomerState,
    old: VersionRules,
    target: VersionRules,
    at: int,
    by_id: Mapping[str, VersionRules],
    retired: Callable[[str], bool],
) -> dict[str, tuple[str, int]]:
    """What switching to ``target`` at ``at`` would do to each rule ``state``'s customer
    is mid-ladder in (its ladder active at ``at`` under the version governing it):
    rule -> (``"pin"``, ``"restart"``, ``"unchanged"`` or ``"stopped"``, the steps
    that would be superseded).  Pure: the row is not changed (docs/rules.md "Changing
    rules"; ``retention rules publish --dry-run`` counts these)."""
    actions = {
        name: (action, len(superseded))
        for name, action, _, superseded in switch_actions(state, old, target, at, by_id, retired)
    }
    out: dict[str, tuple[str, int]] = {}
    ladders = state.ladders
    names = [*old.by_name, *(n for n, p in ladders.items() if p.pin and n not in old.by_name)]
    for name in names:
        progress = ladders.get(name)
        governing = old
        if progress is not None and progress.pin is not None:
            governing = by_id.get(progress.pin) or old
        plan = governing.by_name.get(name)
        if plan is None or not active(plan, progress, state, at):
            continue
        # A rule the new version lacks (or disables) stops.
        out[name] = actions.get(name, (ACTION_STOPPED, 0))
    return out


def active(plan: Plan, progress: LadderProgress | None, state: CustomerState, at: int) -> bool:
    """Whether the customer is mid-ladder in ``plan`` at ``at``: its anchor exists, is
    not cancelled, is before ``at``, and not every step fired for it (a keyed rule:
    for one of its carts)."""
    if plan.keyed:
        return any(_cart_active(plan, cart, state, at) for cart in state.carts)
    anchor = plan.resolve(state)
    if anchor is None or anchor >= at:
        return False
    k = progress.step if progress is not None and progress.anchor == anchor else 0
    return k < plan.size


def _cart_active(plan: Plan, cart: CartEntry, state: CustomerState, at: int) -> bool:
    assert plan.resolve_key is not None
    anchor = plan.resolve_key(state, cart)
    if anchor is None or anchor >= at:
        return False
    progress = cart.progress.get(plan.name)
    k = progress[1] if progress is not None and progress[0] == anchor else 0
    return k < plan.size


def supersede(
    state: CustomerState,
    due: Due,
    plan: Plan,
    backfill_until: int | None,
    outcome: str = OUTCOME_SUPERSEDED,
) -> Firing:
    """A decision for a step already due at a switch (or, ``outcome`` skipped, a
    churn_risk step crossed at its anchor: docs/prediction.md "The churn_risk
    rule"): recorded, never sent, never a nudge for gap, cap or attribution (so not
    in recent_firings)."""
    backfill = backfill_until is not None and due.due_at < backfill_until
    outcome = OUTCOME_BACKFILL if backfill else outcome
    if not backfill:
        key = CountKey(due.rule, due.step, outcome)
        state.decision_counts[key] = state.decision_counts.get(key, 0) + 1
    return firing_of(state, due, plan, outcome, rule_version=plan.version, backfill=backfill)


def retired_by(positions: Mapping[str, list[int]], position: int) -> Callable[[str], bool]:
    """Whether a pin (a version id) is retired at the switch to the version at
    ``position`` of the history: at the MAX_VERSIONS-th version after the latest one
    with the pinned id before it (a file published again, e.g. a rollback, counts
    from its newest switch), or when the history no longer holds it (docs/rules.md
    "Changing rules")."""

    def retired(pin: str) -> bool:
        own = max((p for p in positions.get(pin, ()) if p < position), default=None)
        return own is None or own <= position - MAX_VERSIONS

    return retired
