"""What a customer's row keeps of its firings (docs/guardrails.md "Guardrails",
docs/budget.md "Byte budget"): after each firing, only those a guardrail, an
attribution or a lookup can still need; and the attribution of an order to them."""

from __future__ import annotations

from collections.abc import Mapping

from agents.core.budget import OTHER_CURRENCY, FiringMemory
from agents.core.emissions import Conversion, Emission
from agents.core.guardrails import ATTRIBUTED, OUTCOME_DELIVERED
from agents.core.state import CountKey, CustomerState, RecentFiring


def still_needed(
    recent: list[RecentFiring],
    now: int,
    mem: FiringMemory,
    *,
    guard_span: int,
    attribution_window: int,
    transactional: frozenset[str],
    caps: Mapping[str, int] | None = None,
) -> list[RecentFiring]:
    """The firings a guardrail, an attribution or a lookup can still need after a
    firing judged at ``now`` (docs/guardrails.md "Guardrails"), oldest first.

    Times are send times (the due time when the rule has no window,
    docs/send-windows.md "Deferred firings").  Later firings are sent at ``now`` or
    after, and later orders are dated after it, so: delivered nudges sent after
    now - max(gap, window), of which only the newest ``frequency_cap`` can matter;
    delivered or holdout firings not yet converted and sent at or after now -
    attribution window; and the newest few
    for lookups.  Each group is bounded by :func:`firing_memory`, which keeps
    the row in its byte budget; in time order the bounds never bite (only late
    events can push a group past its bound: its oldest entries go first).
    """
    keep = set(range(max(0, len(recent) - mem.lookup), len(recent)))
    guard_from = now - guard_span
    sent = [
        i
        for i, f in enumerate(recent)
        if f.outcome == OUTCOME_DELIVERED
        and f.send_time > guard_from
        and f.rule not in transactional
    ]
    keep.update(_newest(recent, sent, mem.guard))
    attribution_from = now - attribution_window
    open_ = [
        i
        for i, f in enumerate(recent)
        if f.converted_at is None and f.outcome in ATTRIBUTED and f.send_time >= attribution_from
    ]
    if caps:
        open_ = [i for i in open_ if recent[i].rule not in caps]
        # A capped rule's newest firings that can convert decide which older ones
        # no longer can: they are kept, converted or not (docs/lifecycle.md
        # "Attribution").
        for rule, cap in caps.items():
            own = [i for i, f in enumerate(recent) if f.rule == rule and f.outcome in ATTRIBUTED]
            open_.extend(_newest(recent, own, cap))
    keep.update(_newest(recent, open_, mem.attribution))
    return [f for i, f in enumerate(recent) if i in keep]


def _beyond_caps(recent: list[RecentFiring], caps: Mapping[str, int]) -> set[int]:
    """The positions of capped rules' firings with ``cap`` newer delivered or
    holdout firings of their rule (so they can no longer convert)."""
    out: set[int] = set()
    for rule, cap in caps.items():
        own = [i for i, f in enumerate(recent) if f.rule == rule and f.outcome in ATTRIBUTED]
        if len(own) > cap:
            newest = set(_newest(recent, own, cap))
            out.update(i for i in own if i not in newest)
    return out


def _newest(recent: list[RecentFiring], indexes: list[int], n: int) -> list[int]:
    """The ``n`` of ``indexes`` whose firings are sent last (by position among equals)."""
    if n <= 0:
        return []
    return sorted(indexes, key=lambda i: (recent[i].send_time, i))[-n:]


# The anchors of the abandonment rules, whose conversions' revenue the row keeps
# (row key "rr", docs/reports.md "Recovered revenue").
ABANDONMENT_ANCHORS = frozenset({"last_view", "cart"})


def attribute(
    state: CustomerState,
    t: int,
    order_id: str,
    window: int,
    out: list[Emission],
    caps: Mapping[str, int] | None = None,
    *,
    amount: str | None = None,
    currency: str | None = None,
    revenue_rules: frozenset[str] = frozenset(),
) -> None:
    """An order at ``t`` converts each remembered delivered or holdout firing not yet
    converted with ``send < t <= send + window``, ``send`` its send time (its due
    time without a window: docs/send-windows.md "Deferred firings").  Of a rule in
    ``caps``, only its newest ``cap`` delivered or holdout firings can (by send time,
    then decision order: docs/lifecycle.md "Attribution").  The order's ``amount``
    and ``currency`` ride on the conversion (outcome/1) and, for a rule of
    ``revenue_rules`` (anchored on an abandonment), add to its recovered revenue."""
    recent = state.recent_firings
    if caps:
        stale = _beyond_caps(recent, caps)
        if stale:
            recent = [f for i, f in enumerate(recent) if i not in stale]
    for f in recent:
        sent = f.sent_at
        start = f.due_at if sent is None else sent
        if f.outcome in ATTRIBUTED and f.converted_at is None and start < t <= start + window:
            f.converted_at = t
            key = CountKey(f.rule, f.step, f.outcome)
            state.conversion_counts[key] = state.conversion_counts.get(key, 0) + 1
            if f.rule in revenue_rules and amount is not None:
                state.add_recovered(f.rule, f.outcome, currency or OTHER_CURRENCY, amount)
            out.append(
                Conversion(
                    customer_id=state.customer_id,
                    rule=f.rule,
                    step=f.step,
                    anchor_at=f.anchor_at,
                    due_at=f.due_at,
                    group=f.outcome,
                    converted_at=t,
                    order_id=order_id,
                    send_at=sent,
                    key=f.key,
                    amount=amount,
                    currency=currency,
                )
            )
