"""Per-customer state and its order-independent transitions.

:class:`CustomerState` holds two kinds of things:

* **facts** folded from events (orders, spend, activity, consent).  Every fold is
  commutative (min / max / sum / set), so the facts come out the same whatever the
  arrival order - the property tests in ``tests/unit/agents/core`` check it;
* **progress** of each rule's ladder and the events still *pending* because they
  are dated after the clock (see :mod:`agents.core.engine`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from schemas.records import (
    CONSENT_OPTED_OUT,
    KIND_CONSENT,
    KIND_PURCHASE,
    KIND_SESSION,
    Event,
)

STAGE_PROSPECT = "prospect"  # sessions but no order yet
STAGE_NEW = "new"
STAGE_REPEAT = "repeat"
STAGE_AT_RISK = "at_risk"
STAGE_LAPSED = "lapsed"
STAGE_REACTIVATED = "reactivated"
STAGES = (STAGE_PROSPECT, STAGE_NEW, STAGE_REPEAT, STAGE_AT_RISK, STAGE_LAPSED, STAGE_REACTIVATED)

# Order times kept for the cadence (median gap) of the overdue rule.
MAX_ORDER_TIMES = 32


@dataclass(slots=True)
class LadderProgress:
    """The last step fired for the anchor it was fired against."""

    anchor: int
    step: int


@dataclass(slots=True)
class CustomerState:
    customer_id: str
    partition: int | None = None
    version: int = 0
    # --- facts -------------------------------------------------------------------
    orders: int = 0
    first_order_at: int | None = None
    second_order_at: int | None = None
    last_order_at: int | None = None
    order_times: list[int] = field(default_factory=list)  # ascending, newest MAX_ORDER_TIMES
    spend: dict[str, str] = field(default_factory=dict)  # currency -> exact decimal string
    last_session_at: int | None = None
    last_activity_at: int | None = None
    first_seen_at: int | None = None
    consent_status: str | None = None
    consent_at: int | None = None
    # --- bookkeeping ---------------------------------------------------------------
    recent_event_ids: list[str] = field(default_factory=list)  # oldest first, bounded
    recent_order_ids: list[str] = field(default_factory=list)  # oldest first, bounded
    pending: list[dict[str, Any]] = field(default_factory=list)  # wire events, by time
    ladders: dict[str, LadderProgress] = field(default_factory=dict)
    stage: str = STAGE_PROSPECT
    recent_nudges: list[list[Any]] = field(default_factory=list)  # [due, rule, step, delivered]
    fired_total: int = 0

    # --- facts -------------------------------------------------------------------

    @property
    def opted_out(self) -> bool:
        return self.consent_status == CONSENT_OPTED_OUT

    def apply(self, event: Event) -> None:
        """Fold one (already deduplicated) event into the facts."""
        t = event.occurred_at
        self.first_seen_at = t if self.first_seen_at is None else min(self.first_seen_at, t)
        if event.kind == KIND_PURCHASE:
            self._apply_order(t, event.amount or "0", event.currency or "XXX")
        elif event.kind == KIND_SESSION:
            self.last_session_at = _max(self.last_session_at, t)
            self._touch(t)
        elif event.kind == KIND_CONSENT:
            # Latest by event time wins; at equal times opt-out wins, so the result
            # does not depend on which of the two arrived first.
            key = (t, event.status == CONSENT_OPTED_OUT)
            if self.consent_at is None or key > (self.consent_at, self.opted_out):
                self.consent_at = t
                self.consent_status = event.status

    def _apply_order(self, t: int, amount: str, currency: str) -> None:
        self.orders += 1
        first, second = self.first_order_at, self.second_order_at
        if first is None or t < first:
            self.first_order_at, self.second_order_at = t, first
        elif second is None or t < second:
            self.second_order_at = t
        self.last_order_at = _max(self.last_order_at, t)
        bisect.insort(self.order_times, t)
        if len(self.order_times) > MAX_ORDER_TIMES:
            del self.order_times[0]
        # Wide precision: sums of any amounts validation accepts stay exact, so the
        # total does not depend on the order they were added in.
        with localcontext(prec=80):
            total = Decimal(self.spend.get(currency, "0")) + Decimal(amount)
        self.spend[currency] = format(total, "f")
        self._touch(t)
        if self.stage == STAGE_PROSPECT:
            self.stage = STAGE_NEW
        if self.stage == STAGE_NEW and self.orders >= 2:
            self.stage = STAGE_REPEAT

    def _touch(self, t: int) -> None:
        """Activity: restarts the inactivity ladder, and lifts at-risk/lapsed stages."""
        if self.last_activity_at is not None and t <= self.last_activity_at:
            return
        self.last_activity_at = t
        if self.stage == STAGE_LAPSED:
            self.stage = STAGE_REACTIVATED
        elif self.stage == STAGE_AT_RISK:
            self.stage = STAGE_REPEAT if self.orders >= 2 else STAGE_NEW

    # --- dedup ---------------------------------------------------------------------

    def seen(self, event: Event) -> bool:
        """True if this event (or, for a purchase, its order) was already taken in."""
        if event.event_id in self.recent_event_ids:
            return True
        return event.kind == KIND_PURCHASE and event.order_id in self.recent_order_ids

    def remember(self, event: Event, max_event_ids: int, max_order_ids: int) -> None:
        self.recent_event_ids.append(event.event_id)
        if len(self.recent_event_ids) > max_event_ids:
            del self.recent_event_ids[: len(self.recent_event_ids) - max_event_ids]
        if event.kind == KIND_PURCHASE and event.order_id is not None:
            self.recent_order_ids.append(event.order_id)
            if len(self.recent_order_ids) > max_order_ids:
                del self.recent_order_ids[: len(self.recent_order_ids) - max_order_ids]

    # --- snapshots -----------------------------------------------------------------

    def facts(self) -> dict[str, Any]:
        """The order-independent part (what the permutation property compares)."""
        return {
            "orders": self.orders,
            "first_order_at": self.first_order_at,
            "second_order_at": self.second_order_at,
            "last_order_at": self.last_order_at,
            "order_times": list(self.order_times),
            "spend": dict(sorted(self.spend.items())),
            "last_session_at": self.last_session_at,
            "last_activity_at": self.last_activity_at,
            "first_seen_at": self.first_seen_at,
            "consent_status": self.consent_status,
            "consent_at": self.consent_at,
        }

    def to_dict(self) -> dict[str, Any]:
        d = self.facts()
        d.update(
            customer_id=self.customer_id,
            partition=self.partition,
            version=self.version,
            recent_event_ids=self.recent_event_ids,
            recent_order_ids=self.recent_order_ids,
            pending=self.pending,
            ladders={k: [v.anchor, v.step] for k, v in self.ladders.items()},
            stage=self.stage,
            recent_nudges=self.recent_nudges,
            fired_total=self.fired_total,
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CustomerState:
        return cls(
            customer_id=d["customer_id"],
            partition=d.get("partition"),
            version=d.get("version", 0),
            orders=d.get("orders", 0),
            first_order_at=d.get("first_order_at"),
            second_order_at=d.get("second_order_at"),
            last_order_at=d.get("last_order_at"),
            order_times=list(d.get("order_times", [])),
            spend=dict(d.get("spend", {})),
            last_session_at=d.get("last_session_at"),
            last_activity_at=d.get("last_activity_at"),
            first_seen_at=d.get("first_seen_at"),
            consent_status=d.get("consent_status"),
            consent_at=d.get("consent_at"),
            recent_event_ids=list(d.get("recent_event_ids", [])),
            recent_order_ids=list(d.get("recent_order_ids", [])),
            pending=list(d.get("pending", [])),
            ladders={k: LadderProgress(v[0], v[1]) for k, v in d.get("ladders", {}).items()},
            stage=d.get("stage", STAGE_PROSPECT),
            recent_nudges=list(d.get("recent_nudges", [])),
            fired_total=d.get("fired_total", 0),
        )


def _max(a: int | None, b: int) -> int:
    return b if a is None or b > a else a
