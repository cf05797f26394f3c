"""The retention engine: events and clock advances in, firings out.

Time semantics (docs/time.md "Time", docs/design.md).  Each customer record is advanced to a
*watermark* W supplied by the caller (wall clock, or the partition's stream
clock).  Events dated after W wait in ``state.pending``; advancing walks time
forward, applying pending events and firing ladder steps in time order.  A step
due at D fires before an event dated after D and after an event dated at or
before D, so a decision at D counts exactly the events with occurred_at <= D.
That makes the decisions a pure function of the events - which is what lets the
stream agree with the offline reference and with itself across worker counts,
restarts and crashes.
"""

from __future__ import annotations

from collections.abc import Callable

from agents.core.budget import (
    CODE_CUSTOMER_OVER_BUDGET,
    CODE_PENDING_OVERFLOW,
    MAX_ENTRY_BYTES,
    PENDING_BUDGET,
    entry_size,
    firing_memory,
    max_index_bytes,
    state_over_budget,
)
from agents.core.emissions import (
    Conversion,
    Due,
    Emission,
    Firing,
    Refused,
    context_snapshot,
)
from agents.core.guardrails import (
    ATTRIBUTED,
    OUTCOME_BACKFILL,
    OUTCOME_DELIVERED,
    OUTCOME_OPTED_OUT,
    Guardrails,
    delivered_due_times,
)
from agents.core.pending import PendingLimits
from agents.core.rules.abstract import Facts, Predicate, Step
from agents.core.rules.model import Lifecycle, Rule
from agents.core.rules.steps import Fixed, cadence_threshold
from agents.core.settings import CoreSettings, LadderSettings
from agents.core.stages import ACTIVE_STAGES, STAGE_AT_RISK, STAGE_LAPSED
from agents.core.state import (
    CountKey,
    CustomerState,
    LadderProgress,
    RecentFiring,
    pending_entry,
)
from schemas.records import KIND_PURCHASE, Event

# The index of the lifecycle's stage moves among a customer's timeline items.
LIFECYCLE = -1


class _Plan:
    """One enabled rule, precomputed for the hot path: no lookup of rule text while
    the engine runs (docs/rules.md "Rules file")."""

    __slots__ = (
        "arbitration",
        "audience",
        "before_lifecycle",
        "cadence",
        "channel",
        "fixed",
        "index",
        "name",
        "resolve",
        "size",
        "template",
        "transactional",
        "version",
    )

    def __init__(self, index: int, rule: Rule, lifecycle: Lifecycle | None) -> None:
        self.index = index
        self.name = rule.name
        cancels = tuple(rule.anchor.cancel(kind) for kind in rule.cancel_on)
        self.resolve: Callable[[Facts], int | None] = rule.anchor.resolver(cancels)
        fixed = all(isinstance(step, Fixed) for step in rule.steps)
        self.fixed: tuple[int, ...] | None = (
            tuple(step.least for step in rule.steps) if fixed else None
        )
        self.cadence: Step | None = None if fixed else rule.steps[0]
        self.size = len(rule.steps)
        self.audience: tuple[Predicate, ...] = rule.audience
        self.template = rule.template
        self.version = rule.version
        self.channel = rule.channel
        self.transactional = rule.transactional
        self.arbitration = rule.arbitration
        # Whether this rule's step goes before a stage move due at the same instant.
        self.before_lifecycle = lifecycle is None or rule.priority < lifecycle.priority

    def threshold(self, step: int, state: CustomerState) -> int:
        fixed = self.fixed
        if fixed is not None:
            return fixed[step - 1]
        assert self.cadence is not None
        return self.cadence.threshold(state)


class Engine:
    """Stateless rule engine over :class:`CustomerState` records."""

    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        rules = settings.rule_set
        self.rules: tuple[Rule, ...] = rules.active
        # The enabled rules as ladders, by priority (what reports and metrics list).
        self.ladders: tuple[LadderSettings, ...] = settings.ladders()
        self.lifecycle = rules.lifecycle
        self._plans = tuple(_Plan(i, r, rules.lifecycle) for i, r in enumerate(rules.active))
        # Rules whose deliveries are no marketing pressure: outside gap and cap.
        self._transactional = frozenset(r.name for r in rules.active if r.transactional)
        self.guardrails = Guardrails(settings)
        # What a record remembers of its firings (docs/guardrails.md "Guardrails").
        self.memory = firing_memory(settings)
        self._guard_span = settings.guard_span()
        self.pending_limits = pending_limits(settings)

    def in_holdout(self, customer_id: str) -> bool:
        """Whether the customer is in the control group (firings never delivered)."""
        return self.guardrails.in_holdout(customer_id)

    # --- public API ------------------------------------------------------------------

    def ingest(
        self, state: CustomerState, event: Event, watermark: int
    ) -> list[Emission] | Refused | None:
        """Take one event in; returns the firings it caused, None for a duplicate,
        or :class:`Refused` when the event cannot be kept (nothing of it is kept,
        its ids included, so a re-send is taken in like a new event).

        An event dated after the watermark waits in ``pending`` (the row's share,
        then overflow rows: agents.core.pending).  One dated at or before it (late
        beyond the allowed lateness, or any event under the wall clock) is applied
        now, after firing whatever fell due before it.  Only when the customer's
        waiting events would pass the hostile-input cap (``max_pending_bytes``) is
        a future-dated event refused with ``pending_overflow`` - never applied
        ahead of its time.
        """
        if state.seen(event):
            return None
        s = self.settings
        if state_over_budget(state):
            return Refused(
                CODE_CUSTOMER_OVER_BUDGET,
                f"customer {state.customer_id[:64]!r} holds {state.pending_bytes()} bytes of "
                f"pending events, over the budget of {PENDING_BUDGET}; "
                "events are refused until they are applied",
            )
        if event.occurred_at > watermark:
            # What falls due up to the watermark goes first (the event is later), so
            # every entry still waiting afterwards is dated after it: the cap counts
            # exactly the events ahead of the clock, as the offline reference does.
            out = self.advance(state, watermark)
            entry = pending_entry(event)
            if (
                # Below this count even the widest entries fit: no need to measure.
                (state.pending_count() + 1) * MAX_ENTRY_BYTES > s.max_pending_bytes
                and state.pending_total_bytes() + entry_size(entry) > s.max_pending_bytes
            ):
                return Refused(
                    CODE_PENDING_OVERFLOW,
                    f"customer {state.customer_id[:64]!r} already has "
                    f"{state.pending_count()} events ({state.pending_total_bytes()} bytes) "
                    f"dated after the clock (cap: {s.max_pending_bytes} bytes); "
                    "is an input partition silent?",
                    tuple(out),
                )
            state.remember(event, s.max_recent_event_ids)
            state.push_pending(entry, self.pending_limits)
            return out
        state.remember(event, s.max_recent_event_ids)
        out = self.advance(state, min(event.occurred_at - 1, watermark))
        self._apply(state, event, out)
        out.extend(self.advance(state, watermark))
        return out

    def advance(self, state: CustomerState, watermark: int) -> list[Emission]:
        """Move the customer to ``watermark``: apply pending events, fire due steps.

        Items due at one instant go by priority (docs/rules.md "Rules file"): each
        rule's step, and the lifecycle's stage move at its own priority."""
        out: list[Emission] = []
        # The due time of the last firing of a non-transactional rule in this walk:
        # a later one at the same instant is outranked, if its rule arbitrates.
        busy_at: int | None = None
        while True:
            due = self._next_item(state)
            ev_t = state.queue.first_time()
            if due is not None and due[0] <= watermark and (ev_t is None or due[0] < ev_t):
                index = due[1]
                if index == LIFECYCLE:
                    _move_stage(state)
                    continue
                plan = self._plans[index]
                step = self._due(plan, state)
                assert step is not None
                if plan.audience and not _holds(plan.audience, state, step.due_at):
                    # Not for this customer now: the step is done, nothing is decided.
                    state.ladders[plan.name] = LadderProgress(step.anchor_at, step.step)
                    continue
                outranked = plan.arbitration and busy_at == step.due_at
                out.append(self._fire(state, step, plan, outranked))
                if not plan.transactional:
                    busy_at = step.due_at
            elif ev_t is not None and ev_t <= watermark:
                self._apply(state, state.pop_pending(self.pending_limits), out)
            else:
                return out

    def pending(self, state: CustomerState) -> list[Due]:
        """The next due step of each rule (at most one per rule), by due time."""
        dues = [d for d in (self._due(plan, state) for plan in self._plans) if d]
        return sorted(dues, key=lambda d: (d.due_at, d.rule_index))

    def next_due(self, state: CustomerState) -> Due | None:
        """The earliest rule step due next under the current facts, if any."""
        best = self._next_due_at(state)
        if best is None:
            return None
        return self._due(self._plans[best[1]], state)

    def _next_due_at(self, state: CustomerState) -> tuple[int, int] | None:
        """(due_at, rule_index) of :meth:`next_due`, without building a :class:`Due`
        per rule: this runs on every step of :meth:`advance` and every ``wake_at``."""
        best: tuple[int, int] | None = None
        ladders = state.ladders
        for plan in self._plans:
            anchor = plan.resolve(state)
            if anchor is None:
                continue
            progress = ladders.get(plan.name)
            step = progress.step + 1 if progress is not None and progress.anchor == anchor else 1
            if step > plan.size:
                continue
            fixed = plan.fixed
            due_at = anchor + (
                fixed[step - 1] if fixed is not None else plan.threshold(step, state)
            )
            # Ties go to the lower priority, which comes first here.
            if best is None or due_at < best[0]:
                best = (due_at, plan.index)
        return best

    def _next_item(self, state: CustomerState) -> tuple[int, int] | None:
        """(due_at, rule index or LIFECYCLE) of the customer's next timeline item."""
        best = self._next_due_at(state)
        lifecycle = self.lifecycle
        if lifecycle is None or state.orders < 1:
            return best
        stage = state.stage
        if stage in ACTIVE_STAGES:
            after = lifecycle.at_risk_after
        elif stage == STAGE_AT_RISK:
            after = lifecycle.lapsed_after
        else:
            return best
        assert state.last_activity_at is not None  # an order is activity
        move_at = state.last_activity_at + after
        if (
            best is None
            or move_at < best[0]
            or (move_at == best[0] and not self._plans[best[1]].before_lifecycle)
        ):
            return (move_at, LIFECYCLE)
        return best

    def wake_at(self, state: CustomerState) -> int | None:
        """When this customer next needs the clock: a due step, a stage move or a
        pending event."""
        due = self._next_item(state)
        t = state.queue.first_time()
        if t is not None:
            return t if due is None or t < due[0] else due[0]
        return None if due is None else due[0]

    # --- internals ---------------------------------------------------------------------

    def _due(self, plan: _Plan, state: CustomerState) -> Due | None:
        anchor = plan.resolve(state)
        if anchor is None:
            return None
        progress = state.ladders.get(plan.name)
        step = progress.step + 1 if progress is not None and progress.anchor == anchor else 1
        if step > plan.size:
            return None  # silent until reset: the anchor has to move first
        threshold = plan.threshold(step, state)
        return Due(anchor + threshold, plan.index, step, plan.name, anchor, threshold)

    def _apply(self, state: CustomerState, event: Event, out: list[Emission]) -> None:
        """Fold an event in; an order may convert earlier firings (attribution)."""
        if event.kind == KIND_PURCHASE:
            t = event.occurred_at
            window = self.settings.attribution_window
            for f in state.recent_firings:
                due = f.due_at
                if f.outcome in ATTRIBUTED and f.converted_at is None and due < t <= due + window:
                    f.converted_at = t
                    key = CountKey(f.rule, f.step, f.outcome)
                    state.conversion_counts[key] = state.conversion_counts.get(key, 0) + 1
                    out.append(
                        Conversion(
                            customer_id=state.customer_id,
                            rule=f.rule,
                            step=f.step,
                            anchor_at=f.anchor_at,
                            due_at=due,
                            group=f.outcome,
                            converted_at=t,
                            order_id=event.order_id or "",
                        )
                    )
        state.apply(event, self.settings.active_window)

    def _fire(self, state: CustomerState, due: Due, plan: _Plan, outranked: bool) -> Firing:
        state.ladders[due.rule] = LadderProgress(due.anchor_at, due.step)
        backfill = (
            self.settings.backfill_until is not None and due.due_at < self.settings.backfill_until
        )
        # A transactional firing is never held out (docs/guardrails.md "Guardrails").
        holdout = not plan.transactional and self.guardrails.in_holdout(state.customer_id)
        if backfill:
            # Never emitted, so it must not count toward any guardrail either.
            outcome = OUTCOME_BACKFILL
        else:
            if plan.transactional:
                outcome = OUTCOME_OPTED_OUT if state.opted_out else OUTCOME_DELIVERED
            else:
                outcome = self.guardrails.judge(
                    state.customer_id,
                    due.due_at,
                    state.opted_out,
                    delivered_due_times(state.recent_firings, self._transactional),
                    outranked=outranked,
                )
            self._remember(state, due, outcome)
        return Firing(
            customer_id=state.customer_id,
            rule=due.rule,
            rule_index=due.rule_index,
            step=due.step,
            threshold=due.threshold,
            anchor_at=due.anchor_at,
            due_at=due.due_at,
            backfill=backfill,
            context=context_snapshot(state),
            outcome=outcome,
            holdout=holdout,
            template=plan.template,
            rule_version=plan.version,
            channel=plan.channel,
        )

    def _remember(self, state: CustomerState, due: Due, outcome: str) -> None:
        key = CountKey(due.rule, due.step, outcome)
        state.decision_counts[key] = state.decision_counts.get(key, 0) + 1
        recent = state.recent_firings
        recent.append(RecentFiring(due.due_at, due.rule, due.step, due.anchor_at, outcome))
        if len(recent) > self.memory.lookup:
            recent[:] = self._still_needed(recent, due.due_at)

    def _still_needed(self, recent: list[RecentFiring], now: int) -> list[RecentFiring]:
        """The firings a guardrail, an attribution or a lookup can still need after a
        firing due at ``now`` (docs/guardrails.md "Guardrails"), oldest first.

        Later firings are due at ``now`` or after, and later orders are dated after
        it, so: delivered nudges due after now - max(gap, window), of which only the
        newest ``frequency_cap`` can matter; delivered or holdout firings not yet
        converted and due at or after now - attribution window; and the newest few
        for lookups.  Each group is bounded by :func:`firing_memory`, which keeps
        the row in its byte budget; in time order the bounds never bite (only late
        events can push a group past its bound: its oldest entries go first).
        """
        mem = self.memory
        keep = set(range(max(0, len(recent) - mem.lookup), len(recent)))
        guard_from = now - self._guard_span
        transactional = self._transactional
        sent = [
            i
            for i, f in enumerate(recent)
            if f.outcome == OUTCOME_DELIVERED
            and f.due_at > guard_from
            and f.rule not in transactional
        ]
        keep.update(_newest(recent, sent, mem.guard))
        attribution_from = now - self.settings.attribution_window
        open_ = [
            i
            for i, f in enumerate(recent)
            if f.converted_at is None and f.outcome in ATTRIBUTED and f.due_at >= attribution_from
        ]
        keep.update(_newest(recent, open_, mem.attribution))
        return [f for i, f in enumerate(recent) if i in keep]


def _newest(recent: list[RecentFiring], indexes: list[int], n: int) -> list[int]:
    """The ``n`` of ``indexes`` whose firings are due last (by position among equals)."""
    if n <= 0:
        return []
    return sorted(indexes, key=lambda i: (recent[i].due_at, i))[-n:]


def pending_limits(settings: CoreSettings) -> PendingLimits:
    """The row's share of the pending queue and the size of an overflow row, checked
    against the byte budget (docs/budget.md "Byte budget"): however the hostile-input cap
    is filled, the overflow index stays within half the row's pending budget."""
    index = max_index_bytes(settings.max_pending_bytes, settings.pending_chunk_bytes)
    if index > PENDING_BUDGET // 2 or settings.pending_chunk_bytes > PENDING_BUDGET:
        raise ValueError(
            f"max_pending_bytes {settings.max_pending_bytes} with overflow rows of "
            f"{settings.pending_chunk_bytes} bytes could need a {index}-byte index: "
            f"over half of {PENDING_BUDGET}"
        )
    return PendingLimits(settings.max_pending_events, PENDING_BUDGET, settings.pending_chunk_bytes)


# Today's name of the cadence step's threshold (docs/rules.md "Rules file").
overdue_threshold = cadence_threshold


def _holds(audience: tuple[Predicate, ...], state: CustomerState, due_at: int) -> bool:
    return all(p.holds(state, due_at) for p in audience)


def _move_stage(state: CustomerState) -> None:
    """The lifecycle's move due now: new/repeat/reactivated -> at_risk -> lapsed."""
    state.stage = STAGE_AT_RISK if state.stage in ACTIVE_STAGES else STAGE_LAPSED
