"""Every kind of every rule part honours its interface (docs/rules.md "Rules file"):
one contract over all anchors, steps, audience predicates and cancels, the way arroyo
tests every strategy against its abstract one.  Adding a kind means adding it here."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core.prediction import NbdParams, crossing_at
from agents.core.rules.abstract import Anchor, Cancel, KeyedAnchor, Predicate, Step
from agents.core.rules.anchors import (
    ANCHORS,
    KEYS_KEPT,
    Cart,
    FirstOrder,
    LastActivity,
    LastOrder,
    LastSession,
    LastView,
    Signup,
)
from agents.core.rules.audience import (
    PREDICATES,
    Consent,
    DaysSinceFirstOrder,
    Orders,
    Spend,
    Stage,
)
from agents.core.rules.cancel import EVENT_KINDS
from agents.core.rules.steps import Anniversary, Cadence, Fixed, OrderMilestone, PAliveBelow
from agents.core.settings import DAY
from agents.core.state import MAX_CARTS, CartEntry, CustomerState, OrderEntry
from agents.core.timeutil import EPOCH, MAX_DURATION
from schemas.records import Event, Item

ALL_ANCHORS: list[Anchor] = [
    FirstOrder(),
    LastOrder(),
    LastOrder(min_orders=3),
    LastActivity(),
    LastActivity(min_orders=0),
    LastSession(),
    LastSession(min_orders=1),
    Signup(),
    LastView(),
    Cart(),
    Cart("any_product"),
]
ALL_STEPS: list[Step] = [Fixed(DAY), Fixed(30 * DAY), Cadence(2.0, 7 * DAY), Cadence(1.0, 1)]
ALL_PREDICATES: list[Predicate] = [
    Orders(min=1, max=1),
    Orders(min=2),
    Stage(frozenset({"new", "repeat"})),
    Spend("EUR", min=Decimal("50")),
    Spend("EUR", max=Decimal("100.5")),
    Consent("not_opted_out"),
    Consent("opted_in"),
    DaysSinceFirstOrder(min=30),
    DaysSinceFirstOrder(max=10),
]

events = st.lists(
    st.tuples(
        st.sampled_from(["purchase", "session", "consent", "signup", "product_view", "cart"]),
        st.integers(0, 400 * DAY),
        st.sampled_from(["opted_in", "opted_out"]),
        st.sampled_from(["10.00", "99.99", "250"]),
    ),
    max_size=12,
)


def state_of(items: list[tuple[str, int, str, str]]) -> CustomerState:
    state = CustomerState(customer_id="c", partition=0)
    for n, (kind, t, status, amount) in enumerate(items):
        if kind not in ("purchase", "session", "consent"):
            continue
        state.apply(
            Event(
                kind,
                f"e{n}",
                "c",
                t,
                order_id=f"o{n}" if kind == "purchase" else None,
                amount=amount if kind == "purchase" else None,
                currency="EUR" if kind == "purchase" else None,
                status=status if kind == "consent" else None,
            )
        )
    return with_lifecycle_facts(state, items)


def with_lifecycle_facts(
    state: CustomerState, items: list[tuple[str, int, str, str]]
) -> CustomerState:
    """The lifecycle's facts of ``items``, set as the folds define them
    (docs/lifecycle.md "Facts"): each cart event is its own cart here, ``status``
    choosing its action and whether an order came after it."""
    kinds: dict[str, list[int]] = {}
    for kind, t, _, _ in items:
        kinds.setdefault(kind, []).append(t)
    state.signup_at = min(kinds.get("signup", []), default=None)
    state.first_session_at = min(kinds.get("session", []), default=None)
    views = kinds.get("product_view", [])
    state.first_view_at, state.last_view_at = min(views, default=None), max(views, default=None)
    state.views = [[t, f"p{t % 3}"] for t in sorted(views, reverse=True)[:1]]
    orders = sorted(kinds.get("purchase", []))
    state.order_log = [OrderEntry(t, f"{i:016x}", "10", "EUR") for i, t in enumerate(orders)]
    carts = []
    for n, (kind, t, status, amount) in enumerate(items):
        if kind != "cart":
            continue
        action = "updated" if status == "opted_in" else "checkout_started"
        emptied = amount == "250"
        later = [o for o in orders if o >= t]
        carts.append(
            CartEntry(
                f"cart{n}",
                t,
                "emptied" if emptied else action,
                () if emptied else (Item("p1", 2, "9.50", "EUR"),),
                ordered_at=max(later) if later and amount == "10.00" else None,
                matched_at=max(later) if later and amount == "99.99" else None,
            )
        )
    state.carts = sorted(carts, key=lambda c: (-c.at, c.cart_id))[:3]
    return state


def newest_fact(state: CustomerState) -> int | None:
    times = [
        state.last_activity_at,
        state.last_order_at,
        state.last_session_at,
        state.signup_at,
        state.last_view_at,
        *(c.at for c in state.carts),
    ]
    return max((t for t in times if t is not None), default=None)


def test_the_keyed_anchors_bound_is_the_carts_kept() -> None:
    assert KEYS_KEPT == MAX_CARTS


def test_every_kind_is_in_the_contract() -> None:
    assert {type(a) for a in ALL_ANCHORS} == set(ANCHORS.values())
    assert {type(p) for p in ALL_PREDICATES} == set(PREDICATES)
    assert {type(s) for s in ALL_STEPS} == {Fixed, Cadence}
    assert {type(s) for s in CHURN_STEPS} == {PAliveBelow}
    assert {type(s) for s in MILESTONE_STEPS} == {OrderMilestone, Anniversary}


@settings(max_examples=150, deadline=None)
@given(events)
def test_an_anchor_is_absent_or_no_later_than_the_newest_fact(items: list) -> None:
    state = state_of(items)
    for anchor in ALL_ANCHORS:
        at = anchor.at(state)
        if at is not None:
            newest = newest_fact(state)
            assert newest is not None and at <= newest, anchor
        if newest_fact(state) is None:
            assert at is None, anchor
        if isinstance(anchor, KeyedAnchor):
            # One ladder per open cart, anchored at its newest snapshot.
            opened = [anchor.entry_at(c) for c in state.carts]
            assert all(t is None or t == c.at for t, c in zip(opened, state.carts, strict=True))
            assert at == max((t for t in opened if t is not None), default=None)
            assert anchor.resolver(())(state) is None  # the engine runs the keys
        assert anchor.canonical()["kind"] == anchor.kind
        for kind in EVENT_KINDS:
            cancel = anchor.cancel(kind)
            assert isinstance(cancel, Cancel) and cancel.kind == kind


@settings(max_examples=150, deadline=None)
@given(events)
def test_an_anchor_with_its_own_kind_as_cancel_is_not_cancelled_by_it(items: list) -> None:
    """Cancelling on the anchor's own moving kind is harmless (docs/rules.md "Rules file")."""
    state = state_of(items)
    own = {LastOrder: "purchase", LastSession: "session"}
    for anchor in ALL_ANCHORS:
        kind = own.get(type(anchor))  # type: ignore[call-overload]
        at = anchor.at(state)
        if kind is not None and at is not None:
            assert not anchor.cancel(kind).cancels(state, at)
            resolve = anchor.resolver((anchor.cancel(kind),))
            assert resolve(state) == at


@settings(max_examples=150, deadline=None)
@given(events)
def test_a_step_is_positive_and_at_least_its_least(items: list) -> None:
    state = state_of(items)
    for step in ALL_STEPS:
        threshold = step.threshold(state)
        assert threshold is not None and threshold >= step.least > 0
        assert step.label()
        assert step.canonical() is not None


CHURN_STEPS: list[Step] = [
    PAliveBelow(p, NbdParams(kind, 0.5248, 6.183, 0.8914, 1.614, unit))
    for p in (0.9, 0.5, 0.05)
    for kind in ("mbgnbd", "bgnbd")
    for unit in ("day", "week")
]


@settings(max_examples=150, deadline=None)
@given(events)
def test_a_churn_risk_step_is_none_without_an_order_else_a_crossing_in_whole_minutes(
    items: list,
) -> None:
    """0: crossed at the anchor (decided skipped); None: never (no order, or BG/NBD
    with one order day); else the crossing, a whole minute after the epoch
    (docs/prediction.md "The churn_risk rule")."""
    state = state_of(items)
    for step in CHURN_STEPS:
        threshold = step.threshold(state)
        if state.orders == 0:
            assert threshold is None
            continue
        assert state.last_order_at is not None
        if threshold is None:
            assert isinstance(step, PAliveBelow)
            crossing = crossing_at(
                step.params,
                state.order_days - 1,
                state.first_order_at or 0,
                state.last_order_at,
                step.p,
                state.last_order_at,
            )
            # never (BG/NBD, one order day), or more than 100 years on.
            assert crossing.at is None or crossing.at - state.last_order_at > MAX_DURATION
            assert crossing.status != "crossed"
        elif threshold > 0:
            assert (state.last_order_at + threshold) % 60_000_000 == 0
        assert step.least == 0 and step.label() and step.canonical()["p_alive_below"]


@settings(max_examples=150, deadline=None)
@given(events, st.integers(0, 500 * DAY))
def test_a_predicate_is_a_pure_function_of_the_facts_and_d(items: list, due_at: int) -> None:
    state = state_of(items)
    before = state.facts(), state.stage
    for predicate in ALL_PREDICATES:
        first = predicate.holds(state, due_at)
        assert isinstance(first, bool)
        # Same facts and D, same answer: also on a copy built from the same events.
        assert predicate.holds(state_of(items), due_at) is first
        assert predicate.canonical() is not None
    assert (state.facts(), state.stage) == before  # read, never changed


MILESTONE_STEPS: list[Step] = [OrderMilestone(1), OrderMilestone(3), Anniversary(1), Anniversary(3)]


@settings(max_examples=150, deadline=None)
@given(events)
def test_a_milestone_step_is_due_at_the_kth_order_or_on_the_first_orders_date(
    items: list,
) -> None:
    """An order step: the k-th order's time less the first's (None with fewer than k);
    an anniversary: the same month and day n years on, 29 Feb -> 28 Feb
    (docs/lifecycle.md "Rules")."""
    state = state_of(items)
    times = [e.at for e in state.order_log]
    for step in MILESTONE_STEPS:
        threshold = step.threshold(state)
        assert step.label() and step.canonical()
        if state.first_order_at is None:
            assert threshold is None
            continue
        if isinstance(step, OrderMilestone) and state.orders < step.k:
            assert threshold is None
            continue
        assert threshold is not None and threshold >= step.least >= 0
        if isinstance(step, OrderMilestone):
            assert state.first_order_at + threshold == times[step.k - 1]
        else:
            assert isinstance(step, Anniversary)
            first = EPOCH + timedelta(microseconds=state.first_order_at)
            then = EPOCH + timedelta(microseconds=state.first_order_at + threshold)
            assert then.year == first.year + step.n and then.time() == first.time()
            assert (then.month, then.day) == (first.month, first.day) or (
                (first.month, first.day, then.day) == (2, 29, 28)
            )
