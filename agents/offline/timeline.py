"""One customer's sorted timeline, read by the offline reference (docs/rules.md).

Everything here is a function of the customer's counted events with
``occurred_at <= D`` ("the facts as of D"): the anchors, the cancelling events,
the audience predicates, the cadence and the lifecycle stage.  The facts change
only at event times, so a ladder is walked interval by interval: in
``[t_i, t_i+1)`` the facts are those as of ``t_i``, and a step due in that
interval is decided on them.  (An event at exactly a step's due time is part of
the facts that step sees.)

Written without the engine's rule classes (the reference is an oracle, not a
second copy): each anchor kind, step kind and predicate is a branch below.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from itertools import pairwise

from agents.core.budget import MAX_CURRENCIES, OTHER_CURRENCY
from agents.core.timeutil import MAX_DURATION, MICROS_PER_DAY
from agents.offline.churn import AT, CROSSED, crossing, repeat_days
from agents.offline.lifecycle import LOG_FIRST, LOG_NEWEST, History
from agents.offline.rulebook import (
    ANCHOR_CART,
    ANCHOR_FIRST_ORDER,
    ANCHOR_LAST_ACTIVITY,
    ANCHOR_LAST_ORDER,
    ANCHOR_LAST_SESSION,
    ANCHOR_LAST_VIEW,
    ANCHOR_SIGNUP,
    CONSENT_NOT_OPTED_OUT,
    CONSENT_OPTED_IN,
    EXIT_ANY_PRODUCT,
    Anniversary,
    Cadence,
    ChurnStep,
    Lifecycle,
    OrderStep,
    RuleSpec,
)
from schemas.records import CONSENT_OPTED_IN as STATUS_OPTED_IN
from schemas.records import CONSENT_OPTED_OUT as STATUS_OPTED_OUT

# Order times the stream keeps per customer for the cadence (see agents.core.state).
CADENCE_ORDERS = 32


@dataclass(frozen=True, slots=True)
class LadderItem:
    """A step of one rule that fell due: a firing, or a skip when the audience said no;
    or, at a rule change at ``superseded_at``, a step recorded as superseded
    (agents/offline/versions.py)."""

    rule: RuleSpec
    step: int
    threshold: int
    anchor: int
    due: int
    in_audience: bool
    superseded_at: int | None = None
    # A pinned ladder's place among simultaneous items: its rule's priority in the
    # version in force (None: the rule's own).
    placed: int | None = None
    # A churn_risk step already crossed at its anchor: a ``skipped`` decision at the
    # anchor, never sent (docs/prediction.md "The churn_risk rule").
    skipped: bool = False
    # The cart of a keyed (cart-anchored) ladder (docs/lifecycle.md "Rules").
    key: str | None = None

    @property
    def priority(self) -> int:
        return self.rule.priority if self.placed is None else self.placed


class Timeline:
    """One customer's counted events, sorted, with the facts as of any instant."""

    def __init__(
        self,
        order_times: tuple[int, ...],
        session_times: tuple[int, ...],
        consents: tuple[tuple[int, str], ...],
        order_spend: tuple[tuple[int, str, Decimal], ...],
        history: History | None = None,
    ) -> None:
        self.orders = order_times  # placed orders (activity), ascending
        self.sessions = session_times  # ascending
        self.consents = consents  # by time, ties in file order
        self.consent_times = [t for t, _ in consents]
        self.order_spend = order_spend  # (t, currency, amount), ascending
        # The lifecycle's facts (agents/offline/lifecycle.py); with a cancellation the
        # order facts are read from its net fold, else from the placed orders.
        self.history = history
        self.net = history is not None and history.has_cancels
        extra = history.times if history is not None else ()
        self.times = sorted({*order_times, *session_times, *self.consent_times, *extra})

    # --- facts as of t ---------------------------------------------------------------

    def order_times(self, t: int) -> tuple[int, ...]:
        """The order times kept as of t, ascending: every order without a
        cancellation, else the net log (the first 3 and the newest 32)."""
        if self.net:
            assert self.history is not None
            return self.history.orders(t).times
        return self.orders[: bisect_right(self.orders, t)]

    def order_count(self, t: int) -> int:
        if self.net:
            assert self.history is not None
            return self.history.orders(t).count
        return bisect_right(self.orders, t)

    def first_order(self, t: int) -> int | None:
        if self.net:
            assert self.history is not None
            return self.history.orders(t).first
        return self.orders[0] if self.order_count(t) else None

    def last_order(self, t: int) -> int | None:
        if self.net:
            assert self.history is not None
            return self.history.orders(t).last
        n = self.order_count(t)
        return self.orders[n - 1] if n else None

    def kth_order(self, k: int, t: int) -> int | None:
        """The k-th order's time as of t (net), None when fewer orders or not logged:
        every order logged, the log's k-th; else the first LOG_FIRST from the head
        and the newest LOG_NEWEST counted from the tail (docs/lifecycle.md "Rules")."""
        count = self.order_count(t)
        times = self.order_times(t)
        if k > count:
            return None
        if len(times) == count:
            return times[k - 1]
        if k <= LOG_FIRST and k <= len(times):
            return times[k - 1]
        back = count - k  # orders after the k-th
        i = len(times) - 1 - back
        if back < LOG_NEWEST and i >= LOG_FIRST:
            return times[i]
        return None

    def last_session(self, t: int) -> int | None:
        n = bisect_right(self.sessions, t)
        return self.sessions[n - 1] if n else None

    def last_consent(self, t: int) -> int | None:
        n = bisect_right(self.consent_times, t)
        return self.consent_times[n - 1] if n else None

    def consent_status(self, t: int) -> str | None:
        """The latest consent as of t; an opt-out wins a tie (docs/guardrails.md "Guardrails")."""
        n = bisect_right(self.consent_times, t)
        if not n:
            return None
        latest = self.consent_times[n - 1]
        same = [status for when, status in self.consents[:n] if when == latest]
        return STATUS_OPTED_OUT if STATUS_OPTED_OUT in same else same[-1]

    def spend(self, t: int, currency: str) -> Decimal:
        """The customer's spend in ``currency`` as of t, as the stream keeps it: the 16
        alphabetically smallest codes on their own, the rest summed under XXX."""
        totals: dict[str, Decimal] = {}
        with localcontext(prec=80):
            if self.net:
                assert self.history is not None
                totals = dict(self.history.orders(t).spend)
            else:
                for when, code, amount in self.order_spend:
                    if when <= t:
                        totals[code] = totals.get(code, Decimal(0)) + amount
            named = sorted(c for c in totals if c != OTHER_CURRENCY)[:MAX_CURRENCIES]
            if currency in named:
                return totals[currency]
            if currency == OTHER_CURRENCY:
                return sum((v for c, v in totals.items() if c not in named), Decimal(0))
        return Decimal(0)

    def cadence(self, t: int, step: Cadence) -> int:
        """max(floor, k x the median gap between consecutive orders among the newest 32
        as of t; the mean of the middle two, floored, for an even count), at most 100
        years; the floor alone without two orders."""
        kept = self.order_times(t)[-CADENCE_ORDERS:]
        gaps = sorted(b - a for a, b in pairwise(kept))
        if not gaps:
            return step.floor
        n = len(gaps)
        median = gaps[n // 2] if n % 2 else (gaps[n // 2 - 1] + gaps[n // 2]) // 2
        return min(max(step.floor, int(median * step.k)), MAX_DURATION)

    def step_due(self, rule: RuleSpec, k: int, anchor: int, t: int) -> tuple[int, bool] | None:
        """Step ``k`` (1-based) of ``rule`` after ``anchor`` on the facts as of t: its
        threshold (micros after the anchor) and whether it is a churn step already
        crossed at the anchor (threshold 0); None for a churn step that never falls
        due on these facts (BG/NBD without a repeat order day)."""
        step = rule.steps[k - 1]
        if isinstance(step, Cadence):
            return self.cadence(t, step), False
        if isinstance(step, OrderStep):
            at = self.kth_order(step.k, t)
            first = self.first_order(t)
            if at is None or first is None:
                return None
            return at - first, False
        if isinstance(step, Anniversary):
            first = self.first_order(t)
            if first is None:
                return None
            return years_later(first, step.years) - first, False
        if isinstance(step, ChurnStep):
            first, last = self.first_order(t), self.last_order(t)
            if first is None or last is None:
                return None
            # The repeat order days are activity: a cancellation keeps them.
            x = repeat_days(self.orders[: bisect_right(self.orders, t)])
            due = crossing(step.model, step.p, x, first, last, anchor)
            if due.status == CROSSED:
                return 0, True
            if due.status == AT:
                assert due.at is not None
                return due.at - anchor, False
            return None
        return step, False

    # --- a rule's view -----------------------------------------------------------------

    def anchor(self, rule: RuleSpec, t: int, key: str | None = None) -> int | None:
        """The rule's anchor as of t (of the cart ``key`` for a keyed rule), or None
        while it does not exist."""
        if rule.anchor in (ANCHOR_SIGNUP, ANCHOR_LAST_VIEW, ANCHOR_CART):
            return self._lifecycle_anchor(rule, t, key)
        if self.order_count(t) < rule.min_orders:
            return None
        if rule.anchor == ANCHOR_FIRST_ORDER:
            return self.first_order(t)
        if rule.anchor == ANCHOR_LAST_ORDER:
            return self.last_order(t)
        if rule.anchor == ANCHOR_LAST_SESSION:
            return self.last_session(t)
        assert rule.anchor == ANCHOR_LAST_ACTIVITY
        # Activity is not undone by a cancellation (docs/lifecycle.md "Cancellations"):
        # the newest placed order, cancelled or not.
        n = bisect_right(self.orders, t)
        placed = self.orders[n - 1] if n else None
        times = [x for x in (placed, self.last_session(t)) if x is not None]
        return max(times) if times else None

    def _lifecycle_anchor(self, rule: RuleSpec, t: int, key: str | None) -> int | None:
        h = self.history
        if h is None:
            return None
        if rule.anchor == ANCHOR_SIGNUP:
            # The welcome ladder ends with the first order (net: it comes back
            # when every order is cancelled, with the same anchor).
            if self.order_count(t):
                return None
            signup = h.signup_at(t)
            return signup if signup is not None else h.first_session_at(t)
        if rule.anchor == ANCHOR_LAST_VIEW:
            return h.last_view_at(t)
        assert rule.anchor == ANCHOR_CART and key is not None, "a cart ladder needs its cart"
        cart = h.cart(key, t)
        if cart is None or not cart.items or cart.action not in ("updated", "checkout_started"):
            return None
        if cart.ordered_at is not None:
            return None
        if rule.exit == EXIT_ANY_PRODUCT and cart.matched_at is not None:
            return None
        return cart.at

    def cancelled(self, rule: RuleSpec, anchor: int, due: int) -> bool:
        """Whether an event of a cancelling kind came after the anchor, by ``due``."""
        for kind in rule.cancel_on:
            if kind == "purchase" and rule.anchor == ANCHOR_FIRST_ORDER:
                # "A further order", even at the first order's instant.
                if self.order_count(due) >= 2:
                    return True
                continue
            latest = {
                "purchase": self.last_order,
                "session": self.last_session,
                "consent": self.last_consent,
            }[kind](due)
            if latest is not None and latest > anchor:
                return True
        return False

    def in_audience(self, rule: RuleSpec, due: int, stage: str) -> bool:
        """Every predicate of the rule's audience, on the facts as of ``due``."""
        a = rule.audience
        if a.orders is not None and not a.orders.holds(self.order_count(due)):
            return False
        if a.stage is not None and stage not in a.stage:
            return False
        if a.spend is not None:
            assert a.spend_currency is not None
            if not a.spend.holds(self.spend(due, a.spend_currency)):
                return False
        if a.consent == CONSENT_NOT_OPTED_OUT and self.consent_status(due) == STATUS_OPTED_OUT:
            return False
        if a.consent == CONSENT_OPTED_IN and self.consent_status(due) != STATUS_OPTED_IN:
            return False
        if a.days_since_first_order is not None:
            if not self.order_count(due):
                return False
            first = self.first_order(due)
            if first is None:
                return False
            days = (due - first) // MICROS_PER_DAY
            if not a.days_since_first_order.holds(days):
                return False
        return True

    def ladder(self, rule: RuleSpec, until: int, stages: StageWalk) -> list[LadderItem]:
        """Every step of ``rule`` due at or before ``until``, in time order.

        Progress is (anchor, last step done); when the anchor moves the ladder
        starts again at step 1.  A cancelling event ends the ladder until the anchor
        moves.  Step k of anchor A is due at the first instant D with
        D - A >= its threshold on the facts as of D: A + threshold, or, when the
        threshold or the anchor's existence changed with an event at t after
        A + threshold had passed, t itself.
        """
        if rule.keyed:
            # One ladder per cart, each with its own progress (docs/lifecycle.md "Rules").
            carts = self.history.cart_ids() if self.history is not None else []
            return [item for key in carts for item in self._walk(rule, until, stages, key)]
        return self._walk(rule, until, stages, None)

    def _walk(
        self, rule: RuleSpec, until: int, stages: StageWalk, key: str | None
    ) -> list[LadderItem]:
        items: list[LadderItem] = []
        anchor_done: int | None = None
        step_done = 0
        for i, start in enumerate(self.times):
            if start > until:
                break
            end = self.times[i + 1] if i + 1 < len(self.times) else None
            anchor = self.anchor(rule, start, key)
            if anchor is None:
                continue
            # Progress moves only with a step done: an anchor that comes back (a
            # cancelled order's) finds its ladder where it left it, as in the row.
            k = step_done if anchor == anchor_done else 0
            while k < len(rule.steps):
                got = self.step_due(rule, k + 1, anchor, start)
                if got is None:
                    break  # never due on these facts
                threshold, skipped = got
                due = max(anchor + threshold, start)
                if (end is not None and due >= end) or due > until:
                    break  # not due on these facts: the next event may change them
                if self.cancelled(rule, anchor, due):
                    break
                k += 1
                anchor_done, step_done = anchor, k
                stage = stages.at(due, rule.priority)
                ok = self.in_audience(rule, due, stage)
                items.append(
                    LadderItem(rule, k, threshold, anchor, due, ok, skipped=skipped, key=key)
                )
        return items


def years_later(t: int, years: int) -> int:
    """``t`` plus whole calendar years in UTC, 29 February becoming 28 February."""
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=t)
    try:
        later = when.replace(year=when.year + years)
    except ValueError:  # 29 February in a year without one
        later = when.replace(year=when.year + years, day=28)
    return (later - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


class StageWalk:
    """The lifecycle stage through time (docs/reports.md "Reports").

    prospect -> new (first order) -> repeat (second order); with >= 1 order, at
    last_activity + at_risk_after new/repeat/reactivated become at_risk, at
    last_activity + lapsed_after at_risk becomes lapsed; later activity brings
    the customer back (new/repeat from at_risk, reactivated from lapsed).  A
    stage change due at D comes after every event at D and, among the firings
    due at D, at the lifecycle's priority.
    """

    def __init__(self, timeline: Timeline, lifecycle: Lifecycle | None, until: int) -> None:
        self.lifecycle = lifecycle
        # (time, rank, stage after): rank 0 for an event, 1 for a stage change of its own.
        self.changes: list[tuple[int, int, str]] = []
        # Placed orders and sessions are activity; with a cancellation, a full one
        # takes an order away (docs/lifecycle.md "Cancellations": the stage goes back
        # to prospect at 0 orders, from repeat to new at 1), after the orders at its
        # instant and before the sessions.
        moves = (
            timeline.history.moves
            if timeline.net and timeline.history is not None
            else [(t, "order") for t in timeline.orders]
        )
        rank = {"order": 0, "cancel": 1, "session": 2}
        activity = sorted(
            [*moves, *((t, "session") for t in timeline.sessions)],
            key=lambda a: (a[0], rank[a[1]]),
        )
        stage, orders, last_activity = "prospect", 0, None
        i = 0
        while True:
            change = self._next_change(stage, orders, last_activity)
            t_event = activity[i][0] if i < len(activity) else None
            if (
                change is not None
                and change[0] <= until
                and (t_event is None or change[0] < t_event)
            ):
                stage = change[1]
                self.changes.append((change[0], 1, stage))
            elif t_event is not None and t_event <= until:
                kind = activity[i][1]
                i += 1
                if kind == "cancel":
                    orders -= 1
                    if orders == 0:
                        stage = "prospect"
                    elif orders == 1 and stage == "repeat":
                        stage = "new"
                    self.changes.append((t_event, 0, stage))
                    continue
                if kind == "order":
                    orders += 1
                    if stage == "prospect":
                        stage = "new"
                    if stage == "new" and orders >= 2:
                        stage = "repeat"
                if last_activity is None or t_event > last_activity:
                    last_activity = t_event
                    if stage == "lapsed":
                        stage = "reactivated"
                    elif stage == "at_risk":
                        stage = "repeat" if orders >= 2 else "new"
                self.changes.append((t_event, 0, stage))
            else:
                break
        self.keys = [(t, rank) for t, rank, _ in self.changes]

    def _next_change(
        self, stage: str, orders: int, last_activity: int | None
    ) -> tuple[int, str] | None:
        lc = self.lifecycle
        if lc is None or orders < 1 or last_activity is None:
            return None
        if stage in ("new", "repeat", "reactivated"):
            return last_activity + lc.at_risk_after, "at_risk"
        if stage == "at_risk":
            return last_activity + lc.lapsed_after, "lapsed"
        return None

    def at(self, t: int, priority: int | None = None) -> str:
        """The stage a firing due at t with ``priority`` sees (None: after everything at t)."""
        lc = self.lifecycle
        sees_change = priority is None or lc is None or lc.priority < priority
        n = bisect_right(self.keys, (t, 1 if sees_change else 0))
        return self.changes[n - 1][2] if n else "prospect"
