"""Guardrails: what happens to a firing before anyone is messaged (docs/guardrails.md "Guardrails").

Applied to every firing in this order, the first that matches wins and is
recorded as the decision's outcome:

1. ``holdout`` - the customer is in the control group (a stable hash of the
   customer id and a salt); recorded, never delivered, not counted in caps;
2. ``opted_out`` - the latest consent event (by event time) says opted out;
3. ``outranked`` - the rule arbitrates and a firing of a rule with a lower priority
   number was due for the customer at the same instant;
4. ``min_gap`` - a nudge was sent less than ``min_gap`` before the send time;
5. ``frequency_cap`` - ``frequency_cap`` nudges were already sent with send
   times in (S - frequency_window, S].

A transactional rule's firing is judged by ``opted_out`` alone, and its deliveries
count toward no gap or cap (docs/guardrails.md "Guardrails").

Everything is measured in send times (event time), never in wall time, so a replay
gives the same verdicts as the live run.  A firing's send time is its due time
unless its rule has a send window and it was deferred (docs/send-windows.md
"Deferred firings"): then it is judged at its send time S, counting the send times
of the nudges delivered before.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from agents.core.ids import holdout_bucket
from agents.core.rules.model import GuardrailValues
from agents.core.settings import CoreSettings
from agents.core.state import RecentFiring

OUTCOME_DELIVERED = "delivered"
OUTCOME_HOLDOUT = "holdout"
OUTCOME_OPTED_OUT = "opted_out"
OUTCOME_OUTRANKED = "outranked"
OUTCOME_MIN_GAP = "min_gap"
OUTCOME_FREQUENCY_CAP = "frequency_cap"
# Firings due before the backfill cut-over: kept in state, never emitted or counted.
OUTCOME_BACKFILL = "backfill"
# A step of a restarted ladder already due when a new rules version took effect:
# recorded, never fired, never counted for gap, cap or attribution (docs/rules.md
# "Changing rules").
OUTCOME_SUPERSEDED = "superseded"
# A churn_risk step whose threshold P(alive) was already at or below at its anchor
# (a new order): recorded at the anchor, never fired, never counted for gap, cap or
# attribution; the ladder moves on (docs/prediction.md "The churn_risk rule").
OUTCOME_SKIPPED = "skipped"
# Send windows (docs/send-windows.md "Deferred firings"): a firing outside its
# rule's window under policy "drop" (or deferred beyond max_delay), and a deferred
# firing whose rule's condition or audience no longer holds at its send time.
OUTCOME_OUTSIDE_WINDOW = "outside_window"
OUTCOME_CANCELLED = "cancelled"
WINDOW_OUTCOMES = (OUTCOME_OUTSIDE_WINDOW, OUTCOME_CANCELLED)
OUTCOMES = (
    OUTCOME_DELIVERED,
    OUTCOME_HOLDOUT,
    OUTCOME_OPTED_OUT,
    OUTCOME_OUTRANKED,
    OUTCOME_MIN_GAP,
    OUTCOME_FREQUENCY_CAP,
)
SUPPRESSIONS = OUTCOMES[1:]
# Every outcome a decision may have: the guardrails', "superseded", which only a
# rules change produces, and "skipped", which only a churn_risk step produces
# (reports show them only when they happened).
DECISION_OUTCOMES = (*OUTCOMES, OUTCOME_SUPERSEDED, OUTCOME_SKIPPED)
# Groups for lift: a conversion is attributed to a delivered or a holdout firing.
ATTRIBUTED = (OUTCOME_DELIVERED, OUTCOME_HOLDOUT)


class Guardrails:
    """Judges firings for one configuration."""

    def __init__(self, settings: CoreSettings | GuardrailValues) -> None:
        # A rules version's own values after a change (docs/rules.md "Changing rules").
        self.holdout_percent = settings.holdout_percent
        self.holdout_salt = settings.holdout_salt
        self.min_gap = settings.min_gap
        self.cap = settings.frequency_cap
        self.window = settings.frequency_window
        # The last customer asked about and its answer: a decision asks twice (its
        # holdout flag, then its verdict) and a customer's decisions come together,
        # so one sha256 serves them (docs/performance.md "The core fast paths").
        self._last: tuple[str | None, bool] = (None, False)

    def _held(self, customer_id: str) -> bool:
        return holdout_bucket(customer_id, self.holdout_salt) < self.holdout_percent

    def in_holdout(self, customer_id: str) -> bool:
        last = self._last
        if last[0] == customer_id:
            return last[1]
        held = self._held(customer_id)
        self._last = (customer_id, held)
        return held

    def judge(
        self,
        customer_id: str,
        due_at: int,
        opted_out: bool,
        delivered: Sequence[int],
        *,
        outranked: bool = False,
    ) -> str:
        """The outcome of a firing sent at ``due_at`` (its send time).

        ``delivered`` holds the send times of the customer's earlier delivered
        nudges (any order); firings not delivered never count toward gap or cap.
        ``outranked``: the firing's rule arbitrates and lost to a simultaneous one.
        """
        if self.in_holdout(customer_id):
            return OUTCOME_HOLDOUT
        if opted_out:
            return OUTCOME_OPTED_OUT
        if outranked:
            return OUTCOME_OUTRANKED
        # One pass for both: a send within the gap decides at once; the others in
        # the window are counted for the cap.
        gap_from, window_from = due_at - self.min_gap, due_at - self.window
        sent = 0
        for t in delivered:
            if t <= due_at:
                if t > gap_from:
                    return OUTCOME_MIN_GAP
                if t > window_from:
                    sent += 1
        if sent >= self.cap:
            return OUTCOME_FREQUENCY_CAP
        return OUTCOME_DELIVERED


def delivered_due_times(
    recent_firings: Sequence[RecentFiring], transactional: Collection[str] = ()
) -> list[int]:
    """Send times of the delivered entries of ``CustomerState.recent_firings`` (the
    due time when the rule had no window), but those of ``transactional`` rules (no
    marketing pressure: outside gap and cap)."""
    if not transactional:
        return [f.send_time for f in recent_firings if f.outcome == OUTCOME_DELIVERED]
    return [
        f.send_time
        for f in recent_firings
        if f.outcome == OUTCOME_DELIVERED and f.rule not in transactional
    ]
