"""Rules as the engine runs them: each enabled rule precomputed for the hot path,
each rules version's plans and guardrails, built once per version for every engine of
one configuration (docs/rules.md "Rules file", "Changing rules")."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from zoneinfo import ZoneInfo

from agents.core.budget import FiringMemory, firing_memory
from agents.core.emissions import (
    ContextOf,
    Due,
    cart_context,
    milestone_context,
    viewed_products,
)
from agents.core.guardrails import Guardrails
from agents.core.rules.abstract import Facts, KeyedAnchor, Predicate, Step
from agents.core.rules.anchors import Cart, LastView
from agents.core.rules.history import Version
from agents.core.rules.model import Lifecycle, Rule
from agents.core.rules.steps import Anniversary, Fixed, OrderMilestone, PAliveBelow
from agents.core.settings import CoreSettings
from agents.core.stages import ACTIVE_STAGES, STAGE_AT_RISK, STAGE_LAPSED
from agents.core.state import CartEntry, CustomerState, LadderProgress
from agents.core.windows import SendWindowSetting
from agents.core.zones import load_zone


class Plan:
    """One enabled rule, precomputed for the hot path: no lookup of rule text while
    the engine runs (docs/rules.md "Rules file")."""

    __slots__ = (
        "arbitration",
        "audience",
        "before_lifecycle",
        "channel",
        "churn",
        "context",
        "default_zone",
        "fixed",
        "index",
        "keyed",
        "name",
        "on_change",
        "resolve",
        "resolve_key",
        "size",
        "steps",
        "template",
        "transactional",
        "version",
        "window",
        "window_zone",
    )

    def __init__(self, index: int, rule: Rule, lifecycle: Lifecycle | None) -> None:
        self.index = index
        self.name = rule.name
        cancels = tuple(rule.anchor.cancel(kind) for kind in rule.cancel_on)
        self.resolve: Callable[[Facts], int | None] = rule.anchor.resolver(cancels)
        # A keyed anchor (a cart's: docs/lifecycle.md "Rules") runs one ladder per
        # kept cart; ``resolve`` then says None and the engine asks each cart.
        anchor = rule.anchor
        self.keyed = isinstance(anchor, KeyedAnchor)
        self.resolve_key: Callable[[Facts, CartEntry], int | None] | None = (
            anchor.key_resolver(cancels) if isinstance(anchor, KeyedAnchor) else None
        )
        fixed = all(isinstance(step, Fixed) for step in rule.steps)
        self.fixed: tuple[int, ...] | None = (
            tuple(step.least for step in rule.steps) if fixed else None
        )
        # Steps whose threshold is per customer (a cadence step, churn_risk steps):
        # asked only when ``fixed`` is None, so fixed ladders keep their path.
        self.steps: tuple[Step, ...] = rule.steps
        # churn_risk steps may say "crossed at the anchor" (threshold 0: decided
        # skipped) or "never" (None): docs/prediction.md "The churn_risk rule".
        self.churn = any(isinstance(step, PAliveBelow) for step in rule.steps)
        self.size = len(rule.steps)
        # What its decisions add to the context (lifecycle rules only).
        self.context: ContextOf | None = lifecycle_context(rule)
        self.audience: tuple[Predicate, ...] = rule.audience
        self.template = rule.template
        self.version = rule.version
        self.channel = rule.channel
        self.transactional = rule.transactional
        self.arbitration = rule.arbitration
        self.on_change = rule.on_change
        # Whether this rule's step goes before a stage move due at the same instant.
        self.before_lifecycle = lifecycle is None or rule.priority < lifecycle.priority
        # The send window (docs/send-windows.md "Deferred firings"): None costs the hot
        # path one attribute check.  Its fixed zone and default zone loaded once.
        self.window: SendWindowSetting | None = rule.send_window
        self.window_zone: ZoneInfo | None = None
        self.default_zone: ZoneInfo | None = None
        if rule.send_window is not None:
            if rule.send_window.zone is not None:
                self.window_zone = load_zone(rule.send_window.zone)
            self.default_zone = load_zone(rule.send_window.default_zone)

    def placed_as(self, other: Plan) -> Plan:
        """This rule (of a pinned version) at ``other``'s place among the rules in
        force: a pinned ladder keeps its version's rule but goes in the order of the
        version in force (docs/rules.md "Changing rules")."""
        plan = object.__new__(Plan)
        for name in Plan.__slots__:
            setattr(plan, name, getattr(self, name))
        plan.index = other.index
        plan.before_lifecycle = other.before_lifecycle
        return plan

    def silenced(self) -> Plan:
        """This rule with no step left to fire."""
        plan = self.placed_as(self)
        plan.size = 0
        return plan

    def threshold(self, step: int, state: CustomerState) -> int | None:
        """Step ``step``'s threshold for the customer (None: nothing due until its
        facts change)."""
        fixed = self.fixed
        if fixed is not None:
            return fixed[step - 1]
        return self.steps[step - 1].threshold(state)

    def anchor_of(self, state: CustomerState, key: str | None) -> int | None:
        """The anchor of the ladder of ``key`` (None: the rule's one ladder)."""
        if key is None or self.resolve_key is None:
            return self.resolve(state)
        cart = cart_of(state, key)
        return None if cart is None else self.resolve_key(state, cart)


def lifecycle_context(rule: Rule) -> ContextOf | None:
    """What a lifecycle rule's decisions add to the context (docs/lifecycle.md
    "Rules"): the viewed products, the cart, or the milestone; None for others."""
    anchor, steps = rule.anchor, rule.steps
    if isinstance(anchor, LastView):
        return viewed_products
    if isinstance(anchor, Cart):
        return cart_context
    orders = tuple(s.k for s in steps if isinstance(s, OrderMilestone))
    if orders:
        return milestone_context("orders", orders)
    years = tuple(s.n for s in steps if isinstance(s, Anniversary))
    if years:
        return milestone_context("years", years)
    return None


def cart_of(state: CustomerState, key: str) -> CartEntry | None:
    """The kept cart ``key``, if it still is."""
    for cart in state.carts:
        if cart.cart_id == key:
            return cart
    return None


def keyed_due(plan: Plan, state: CustomerState, floor: int | None = None) -> Due | None:
    """The next due step of a keyed rule: of each kept cart's ladder, the earliest,
    ties by cart id ascending (docs/lifecycle.md "Rules").  Progress lives in the
    cart (``progress[rule] = [anchor, step]``)."""
    resolve = plan.resolve_key
    assert resolve is not None
    best: Due | None = None
    name = plan.name
    for cart in state.carts:
        anchor = resolve(state, cart)
        if anchor is None:
            continue
        progress = cart.progress.get(name)
        step = progress[1] + 1 if progress is not None and progress[0] == anchor else 1
        if step > plan.size:
            continue
        threshold = plan.threshold(step, state)
        if threshold is None:
            continue
        due_at = anchor + threshold if floor is None else max(anchor + threshold, floor)
        if (
            best is None
            or due_at < best.due_at
            or (due_at == best.due_at and cart.cart_id < (best.key or ""))
        ):
            best = Due(
                due_at, plan.index, step, name, anchor, threshold, plan.version, cart.cart_id
            )
    return best


def keyed_done(state: CustomerState, due: Due) -> None:
    """A keyed ladder's progress moves to ``due``'s step (in its cart)."""
    assert due.key is not None
    cart = cart_of(state, due.key)
    if cart is not None:
        cart.progress[due.rule] = [due.anchor_at, due.step]


def pinned_plans(
    state: CustomerState, seg: VersionRules, by_id: Mapping[str, VersionRules]
) -> tuple[Plan, ...]:
    """``seg``'s plans, a pinned ladder's rule taken from its pinned version
    (docs/rules.md "Changing rules")."""
    ladders = state.ladders
    if not any(p.pin is not None for p in ladders.values()):
        return seg.plans
    out: list[Plan] = []
    for plan in seg.plans:
        progress = ladders.get(plan.name)
        if progress is not None and progress.pin is not None:
            pinned = by_id.get(progress.pin)
            own = pinned.by_name.get(plan.name) if pinned is not None else None
            # A pin to a version the bound dropped: silent until the customer's
            # next switch, which restarts it (docs/rules.md "Changing rules").
            out.append(plan.silenced() if own is None else own.placed_as(plan))
        else:
            out.append(plan)
    return tuple(out)


def outranked(busy: tuple[int, str] | None, at: int, rule: str) -> bool:
    """Whether a firing of ``rule`` judged at ``at`` follows one of another rule
    judged at that instant (its rule arbitrating: docs/guardrails.md "Guardrails")."""
    return busy is not None and busy[0] == at and busy[1] != rule


def busy_at(busy: tuple[int, str] | None, at: int, rule: str) -> tuple[int, str]:
    """The first firing judged at ``at``: a later one at the same instant keeps it."""
    return busy if busy is not None and busy[0] == at else (at, rule)


def holds(audience: tuple[Predicate, ...], state: CustomerState, due_at: int) -> bool:
    return all(p.holds(state, due_at) for p in audience)


def step_passed(state: CustomerState, due: Due) -> None:
    """``due``'s step is done without a decision (its audience did not hold)."""
    if due.key is not None:
        keyed_done(state, due)
    else:
        state.ladders[due.rule] = progress_after(state, due.rule, due)


def progress_after(state: CustomerState, name: str, due: Due) -> LadderProgress:
    """The progress after ``due``'s step: a pinned ladder stays pinned."""
    progress = state.ladders.get(name)
    pin = progress.pin if progress is not None else None
    return LadderProgress(due.anchor_at, due.step, pin)


def stage_move_at(lifecycle: Lifecycle | None, state: CustomerState) -> int | None:
    """When the lifecycle's next stage move is due (docs/rules.md "Rules file"): with
    >= 1 order, ``at_risk_after`` after the last activity from an active stage,
    ``lapsed_after`` from at_risk; None otherwise."""
    if lifecycle is None or state.orders < 1:
        return None
    stage = state.stage
    if stage in ACTIVE_STAGES:
        after = lifecycle.at_risk_after
    elif stage == STAGE_AT_RISK:
        after = lifecycle.lapsed_after
    else:
        return None
    assert state.last_activity_at is not None  # an order is activity
    return state.last_activity_at + after


def move_stage(state: CustomerState) -> None:
    """The lifecycle's move due now: new/repeat/reactivated -> at_risk -> lapsed."""
    state.stage = STAGE_AT_RISK if state.stage in ACTIVE_STAGES else STAGE_LAPSED


class VersionRules:
    """One rules version as the engine runs it: its enabled rules as plans, by
    priority, and its guardrails (docs/rules.md "Changing rules")."""

    __slots__ = ("by_name", "caps", "guardrails", "id", "plans", "transactional", "windowed")

    def __init__(self, version: Version, guardrails: Guardrails) -> None:
        rules = version.rules
        self.id = version.id
        self.plans = tuple(Plan(i, r, rules.lifecycle) for i, r in enumerate(rules.active))
        self.by_name = {plan.name: plan for plan in self.plans}
        # Whether any rule has a send window (docs/send-windows.md "Deferred firings").
        self.windowed = any(plan.window is not None for plan in self.plans)
        self.guardrails = guardrails
        # Rules whose deliveries are no marketing pressure: outside gap and cap.
        self.transactional = frozenset(r.name for r in rules.active if r.transactional)
        # Rules of which only the newest few firings can convert an order
        # (docs/lifecycle.md "Attribution"); empty for today's rules.
        self.caps: dict[str, int] = {}
        for r in rules.active:
            cap = r.anchor.attribution_cap(len(r.steps))
            if cap is not None:
                self.caps[r.name] = cap


class SharedPlans:
    """What every engine of one configuration shares: each version's plans, built
    once (Engine.with_history is called per partition and per change)."""

    __slots__ = ("memory", "rules")

    def __init__(self) -> None:
        self.rules: dict[str, VersionRules] = {}
        self.memory: dict[str, FiringMemory] = {}

    def rules_for(self, version: Version, settings: CoreSettings) -> VersionRules:
        """The version's plans and guardrails, built on first use."""
        found = self.rules.get(version.id)
        if found is None:
            found = VersionRules(version, Guardrails(version.rules.guardrails))
            self.rules[version.id] = found
            self.memory[version.id] = firing_memory(replace(settings, rules=version.rules))
        return found

    def memory_for(self, versions: Iterable[Version]) -> FiringMemory:
        """What a record remembers of its firings (docs/guardrails.md "Guardrails"):
        enough for every version it may run under (each built by :meth:`rules_for`)."""
        memories = [self.memory[v.id] for v in versions]
        return FiringMemory(
            max(m.lookup for m in memories),
            max(m.guard for m in memories),
            max(m.attribution for m in memories),
            max(m.entry_bytes for m in memories),
            max(m.reserve for m in memories),
        )
