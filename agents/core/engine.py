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
    state_over_budget,
)
from agents.core.deferred import (
    DEFERRED,
    at_due,
    at_send,
    at_switch,
    first_send,
    supersede_deferred,
)
from agents.core.emissions import (
    Due,
    Emission,
    Firing,
    Refused,
    firing_of,
)
from agents.core.guardrails import (
    OUTCOME_BACKFILL,
    OUTCOME_DELIVERED,
    OUTCOME_OPTED_OUT,
    OUTCOME_SKIPPED,
    Guardrails,
    delivered_due_times,
)
from agents.core.memory import ABANDONMENT_ANCHORS, attribute, still_needed
from agents.core.pending import pending_limits
from agents.core.plans import (
    Plan,
    SharedPlans,
    VersionRules,
    busy_at,
    holds,
    keyed_done,
    keyed_due,
    move_stage,
    outranked,
    pinned_plans,
    progress_after,
    stage_move_at,
    step_passed,
)
from agents.core.rules.history import RuleHistory, Version
from agents.core.rules.model import Rule
from agents.core.rules.steps import cadence_threshold
from agents.core.send_counts import count_send
from agents.core.settings import CoreSettings, LadderSettings
from agents.core.state import (
    CountKey,
    CustomerState,
    LadderProgress,
    RecentFiring,
    pending_entry,
)
from agents.core.switch import (
    ACTION_RESTART,
    end_pins,
    preview,
    retired_by,
    supersede,
    switch_actions,
)
from schemas.records import KIND_PURCHASE, Event

# The index of the lifecycle's stage moves among a customer's timeline items.
LIFECYCLE = -1


class Engine:
    """Stateless rule engine over :class:`CustomerState` records.

    It runs a :class:`RuleHistory`: ``Engine(settings)`` the settings' rules alone
    (the seed); :meth:`with_history` the versions one partition has switched to
    (docs/rules.md "Changing rules")."""

    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        rules = settings.rule_set
        self.history = RuleHistory.seed(rules)
        self.pending_limits = pending_limits(settings)
        self._shared = SharedPlans()
        seed = self.history.versions[0]
        self._shared.rules[seed.id] = VersionRules(seed, Guardrails(settings))
        self._shared.memory[seed.id] = firing_memory(settings)
        self._setup()

    def with_history(self, history: RuleHistory) -> Engine:
        """This engine running ``history`` (same settings otherwise); each version's
        plans are built once for all the engines of this configuration."""
        engine = object.__new__(Engine)
        engine.settings = self.settings
        engine.history = history
        engine.pending_limits = self.pending_limits
        engine._shared = self._shared
        engine._setup()
        return engine

    def _setup(self) -> None:
        versions = self.history.versions
        # Equal in every version of a history (rules.history.compatible): the
        # history's, not the settings', when a worker runs what was published.
        newest = versions[-1].rules
        self.lifecycle = newest.lifecycle
        self._attribution_window = newest.guardrails.attribution_window
        # Rules whose conversions' revenue the row keeps (docs/reports.md "Recovered
        # revenue"): those anchored on an abandonment, in any version of the history.
        self._revenue_rules = frozenset(
            rule.name
            for v in versions
            for rule in v.rules.rules
            if rule.anchor.kind in ABANDONMENT_ANCHORS
        )
        by_id = {v.id: self._version_rules(v) for v in versions}
        self._by_id = by_id
        # The customer's segment: the version applied at its ``rules_at`` (None: the
        # seed).  Once the bound has dropped it, the oldest version kept.
        self._applied = {v.applied_at: by_id[v.id] for v in versions}
        # Where each version stands in the history: a pin retires at the switch to
        # the MAX_VERSIONS-th version after its own (docs/rules.md "Changing rules").
        self._position = {v.applied_at: i for i, v in enumerate(versions)}
        self._positions: dict[str, list[int]] = {}
        for i, v in enumerate(versions):
            self._positions.setdefault(v.id, []).append(i)
        self._oldest = by_id[versions[0].id]
        self._switch_times = tuple(v.applied_at for v in versions if v.applied_at is not None)
        self._multi = len(versions) > 1 or versions[0].applied_at is not None
        first = self._oldest
        self._plans = first.plans
        self._transactional = first.transactional
        self.guardrails = first.guardrails
        current = by_id[versions[-1].id]
        rules = versions[-1].rules
        # The newest version's enabled rules, by priority (what reports, metrics and
        # lookups list).
        self.rules: tuple[Rule, ...] = rules.active
        self.ladders: tuple[LadderSettings, ...] = tuple(
            LadderSettings(rule.name, tuple(step.least for step in rule.steps))
            for rule in rules.active
        )
        self._current = current
        # What a record remembers of its firings (docs/guardrails.md "Guardrails"):
        # enough for every version it may run under.
        self.memory = self._shared.memory_for(versions)
        self._guard_span = max(
            max(v.rules.guardrails.min_gap, v.rules.guardrails.frequency_window) for v in versions
        )
        if not self._multi:
            self._guard_span = self.settings.guard_span()

    def _version_rules(self, version: Version) -> VersionRules:
        return self._shared.rules_for(version, self.settings)

    def in_holdout(self, customer_id: str) -> bool:
        """Whether the customer is in the control group (firings never delivered),
        under the newest version's guardrails."""
        return self._current.guardrails.in_holdout(customer_id)

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
        out.extend(self.advance(state, watermark, event.occurred_at))
        return out

    def advance(
        self, state: CustomerState, watermark: int, floor: int | None = None
    ) -> list[Emission]:
        """Move the customer to ``watermark``: apply pending events, fire due steps,
        switch rules versions.

        Items due at one instant go by priority (docs/rules.md "Rules file"): each
        rule's step (after its kept firing, if one is sent then: docs/send-windows.md
        "Ordering at one instant"), and the lifecycle's stage move at its own
        priority.  A rules switch at Ti goes after the events dated <= Ti and before
        the items due at Ti (docs/rules.md "Changing rules")."""
        out: list[Emission] = []
        # (time, rule) of the first firing of a non-transactional rule judged at an
        # instant of this walk: a later one of another rule at the same instant is
        # outranked, if its rule arbitrates - never a step of the same rule (one
        # priority: docs/guardrails.md "Guardrails").
        busy: tuple[int, str] | None = None
        multi = self._multi
        if multi:
            seg = self._segment(state)
            plans = self._plans_for(state, seg)
            switch_at = self._next_switch(state)
        else:
            seg = self._oldest
            plans = self._plans
            switch_at = None
        while True:
            # ``floor``: the newest event applied in this walk.  A step whose time
            # passed before the event that made it due (a cancellation bringing a
            # ladder back, an anchor moved into the past) is due at that event, on
            # the facts as of then (docs/lifecycle.md "Cancellations"), as the
            # offline reference reads it.
            due = self._next_item(state, plans, floor)
            ev_t = state.queue.first_time()
            if (
                switch_at is not None
                and switch_at <= watermark
                and (ev_t is None or switch_at < ev_t)
                and (due is None or switch_at <= due[0])
            ):
                self._switch(state, switch_at, out)
                seg = self._segment(state)
                plans = self._plans_for(state, seg)
                switch_at = self._next_switch(state)
            elif due is not None and due[0] <= watermark and (ev_t is None or due[0] < ev_t):
                index = due[1]
                if index < 0:
                    if index == LIFECYCLE:
                        move_stage(state)
                    else:
                        judged = at_send(self, state, DEFERRED - index, plans, seg, busy, out)
                        if judged is not None:
                            busy = busy_at(busy, due[0], judged)
                    continue
                plan = plans[index]
                step = self._due(plan, state, floor)
                assert step is not None
                if state.deferred:
                    # Another step of a rule with a kept firing fell due before its
                    # send time (docs/send-windows.md "Deferred firings").
                    supersede_deferred(state, plan, out)
                if plan.audience and not holds(plan.audience, state, step.due_at):
                    # Not for this customer now: the step is done, nothing is decided.
                    step_passed(state, step)
                    continue
                if plan.churn and step.threshold == 0:
                    # Crossed at the anchor: recorded, never fired, the ladder moves
                    # on (docs/prediction.md "The churn_risk rule").
                    self._step_done(state, step)
                    until = self.settings.backfill_until
                    out.append(supersede(state, step, plan, until, OUTCOME_SKIPPED))
                    continue
                lost = plan.arbitration and outranked(busy, step.due_at, plan.name)
                if plan.window is not None and not self._backfill(step.due_at):
                    if at_due(self, state, step, plan, seg, lost, out):
                        busy = busy_at(busy, step.due_at, plan.name)
                    continue
                self._step_done(state, step)
                out.append(self._judge(state, step, plan, lost, seg))
                if not plan.transactional:
                    busy = busy_at(busy, step.due_at, plan.name)
            elif ev_t is not None and ev_t <= watermark:
                event = state.pop_pending(self.pending_limits)
                self._apply(state, event, out)
                floor = event.occurred_at if floor is None else max(floor, event.occurred_at)
                if multi:
                    plans = self._plans_for(state, seg)
            else:
                return out

    def pending(self, state: CustomerState) -> list[Due]:
        """The next due step of each rule (at most one per rule), by due time."""
        plans = self._plans_for(state, self._segment(state)) if self._multi else self._plans
        dues = [d for d in (self._due(plan, state) for plan in plans) if d]
        return sorted(dues, key=lambda d: (d.due_at, d.rule_index))

    def next_due(self, state: CustomerState) -> Due | None:
        """The earliest rule step due next under the current facts, if any."""
        plans = self._plans_for(state, self._segment(state)) if self._multi else self._plans
        best = self._next_due_at(state, plans)
        if best is None:
            return None
        return self._due(plans[best[1]], state)

    def _next_due_at(
        self, state: CustomerState, plans: tuple[Plan, ...], floor: int | None = None
    ) -> tuple[int, int] | None:
        """(due_at, rule_index) of :meth:`next_due`, without building a :class:`Due`
        per rule: this runs on every step of :meth:`advance` and every ``wake_at``."""
        best: tuple[int, int] | None = None
        ladders = state.ladders
        for plan in plans:
            anchor = plan.resolve(state)
            if anchor is None:
                if plan.keyed and state.carts:
                    # One ladder per kept cart (docs/lifecycle.md "Rules").
                    due = keyed_due(plan, state, floor)
                    if due is not None and (best is None or due.due_at < best[0]):
                        best = (due.due_at, plan.index)
                continue
            progress = ladders.get(plan.name)
            step = progress.step + 1 if progress is not None and progress.anchor == anchor else 1
            if step > plan.size:
                continue
            fixed = plan.fixed
            if fixed is not None:
                due_at = anchor + fixed[step - 1]
            else:
                # Plan.threshold's per-customer branch, without its call.
                threshold = plan.steps[step - 1].threshold(state)
                if threshold is None:
                    continue  # a churn_risk step that never falls due
                due_at = anchor + threshold
            if floor is not None and due_at < floor:
                due_at = floor
            # Ties go to the lower priority, which comes first here.
            if best is None or due_at < best[0]:
                best = (due_at, plan.index)
        return best

    def _next_item(
        self, state: CustomerState, plans: tuple[Plan, ...], floor: int | None = None
    ) -> tuple[int, int] | None:
        """(time, rule index, LIFECYCLE or a kept firing's DEFERRED code) of the
        customer's next timeline item."""
        best = self._next_due_at(state, plans, floor)
        move_at = stage_move_at(self.lifecycle, state)
        if move_at is not None and (
            best is None
            or move_at < best[0]
            or (move_at == best[0] and not plans[best[1]].before_lifecycle)
        ):
            best = (move_at, LIFECYCLE)
        if state.deferred:
            # Kept firings' send times (docs/send-windows.md "Deferred firings").
            return first_send(state.deferred, plans, best)
        return best

    def wake_at(self, state: CustomerState) -> int | None:
        """When this customer next needs the clock: a due step, a stage move, a
        pending event or a rules switch it has not gone through."""
        if self._multi:
            due = self._next_item(state, self._plans_for(state, self._segment(state)))
            switch_at = self._next_switch(state)
            if switch_at is not None and (due is None or switch_at <= due[0]):
                due = (switch_at, LIFECYCLE)
        else:
            due = self._next_item(state, self._plans)
        t = state.queue.first_time()
        if t is not None:
            return t if due is None or t < due[0] else due[0]
        return None if due is None else due[0]

    # --- rules versions ------------------------------------------------------------

    def _segment(self, state: CustomerState) -> VersionRules:
        """The version the customer runs under: the one applied at its last switch
        (the oldest kept once the bound has dropped that one)."""
        return self._applied.get(state.rules_at) or self._oldest

    def _next_switch(self, state: CustomerState) -> int | None:
        """The applied time of the first switch the customer has not gone through."""
        done = state.rules_at
        for t in self._switch_times:
            if done is None or t > done:
                return t
        return None

    def _plans_for(self, state: CustomerState, seg: VersionRules) -> tuple[Plan, ...]:
        """The segment's plans, a pinned ladder's rule taken from its pinned version."""
        return pinned_plans(state, seg, self._by_id)

    def _switch(self, state: CustomerState, at: int, out: list[Emission]) -> None:
        """The switch to the version applied at ``at`` (docs/rules.md "Changing
        rules"): each rule of the new version, by priority, keeps going, is pinned
        or restarts, its steps already due recorded as superseded."""
        old = self._segment(state)
        new = self._applied[at]
        ladders = state.ladders
        actions = switch_actions(state, old, new, at, self._by_id, self._retired_at(at))
        if state.deferred:
            # Kept firings of rules restarted or stopped are superseded now
            # (docs/send-windows.md "Rules changes").
            at_switch(state, actions, self._plans_for(state, old), out)
        for name, action, progress, superseded in actions:
            if progress is not None:
                ladders[name] = progress
            if action == ACTION_RESTART:
                plan = new.by_name[name]
                for due in superseded:
                    if due.key is not None:
                        keyed_done(state, due)
                    else:
                        ladders[name] = LadderProgress(due.anchor_at, due.step)
                    out.append(supersede(state, due, plan, self.settings.backfill_until))
        state.rules_at = at

    def preview_switch(
        self, state: CustomerState, new: Version, at: int
    ) -> dict[str, tuple[str, int]]:
        """What switching to ``new`` at ``at`` would do to each rule ``state``'s
        customer is mid-ladder in: rule -> (``"pin"``, ``"restart"``, ``"unchanged"``
        or ``"stopped"``, the steps that would be superseded).  Pure: the row is not
        changed (``retention rules publish --dry-run`` counts these)."""
        return preview(
            state,
            self._segment(state),
            self._version_rules(new),
            at,
            self._by_id,
            retired_by(self._positions, len(self.history.versions)),
        )

    def _retired_at(self, at: int) -> Callable[[str], bool]:
        """Whether a pin is retired at the switch applied at ``at``."""
        return retired_by(self._positions, self._position[at])

    # --- internals ---------------------------------------------------------------------

    def _due(self, plan: Plan, state: CustomerState, floor: int | None = None) -> Due | None:
        anchor = plan.resolve(state)
        if anchor is None:
            return keyed_due(plan, state, floor) if plan.keyed else None
        progress = state.ladders.get(plan.name)
        step = progress.step + 1 if progress is not None and progress.anchor == anchor else 1
        if step > plan.size:
            return None  # silent until reset: the anchor has to move first
        threshold = plan.threshold(step, state)
        if threshold is None:
            return None
        due_at = anchor + threshold if floor is None else max(anchor + threshold, floor)
        return Due(due_at, plan.index, step, plan.name, anchor, threshold, plan.version)

    def _apply(self, state: CustomerState, event: Event, out: list[Emission]) -> None:
        """Fold an event in; an order may convert earlier firings (attribution)."""
        if event.kind == KIND_PURCHASE:
            caps = (self._segment(state) if self._multi else self._oldest).caps
            attribute(
                state,
                event.occurred_at,
                event.order_id or "",
                self._attribution_window,
                out,
                caps,
                amount=event.amount,
                currency=event.currency,
                revenue_rules=self._revenue_rules,
            )
        state.apply(event, self.settings.active_window)
        if self._multi:
            end_pins(state, self._by_id, self._segment(state))

    def _step_done(self, state: CustomerState, due: Due) -> None:
        """The ladder's progress moves to ``due``'s step."""
        if due.key is not None:
            keyed_done(state, due)
        elif self._multi:
            state.ladders[due.rule] = progress_after(state, due.rule, due)
        else:
            state.ladders[due.rule] = LadderProgress(due.anchor_at, due.step)

    def _backfill(self, due_at: int) -> bool:
        until = self.settings.backfill_until
        return until is not None and due_at < until

    def _judge(
        self,
        state: CustomerState,
        due: Due,
        plan: Plan,
        outranked: bool,
        seg: VersionRules,
        send_at: int | None = None,
        zone: str | None = None,
    ) -> Firing:
        """The guardrails' decision on a firing sent at ``send_at`` (None: no window,
        sent at its due time; docs/send-windows.md "Deferred firings")."""
        backfill = self._backfill(due.due_at)
        # A transactional firing is never held out (docs/guardrails.md "Guardrails").
        # The guardrails are those of the version in force at the send time.
        guardrails = seg.guardrails
        holdout = not plan.transactional and guardrails.in_holdout(state.customer_id)
        if backfill:
            # Never emitted, so it must not count toward any guardrail either.
            outcome = OUTCOME_BACKFILL
        else:
            if plan.transactional:
                outcome = OUTCOME_OPTED_OUT if state.opted_out else OUTCOME_DELIVERED
            else:
                outcome = guardrails.judge(
                    state.customer_id,
                    due.due_at if send_at is None else send_at,
                    state.opted_out,
                    delivered_due_times(state.recent_firings, seg.transactional),
                    outranked=outranked,
                )
            self._remember(state, due, outcome, send_at)
            if zone is not None:
                count_send(
                    state.send_counts,
                    rule=due.rule,
                    outcome=outcome,
                    due_at=due.due_at,
                    send_at=send_at,
                    zone=zone,
                )
        return firing_of(
            state,
            due,
            plan,
            outcome,
            rule_version=plan.version if send_at is None else due.rule_version,
            backfill=backfill,
            holdout=holdout,
            send_at=send_at,
            zone=zone,
        )

    def _remember(
        self, state: CustomerState, due: Due, outcome: str, sent_at: int | None = None
    ) -> None:
        key = CountKey(due.rule, due.step, outcome)
        state.decision_counts[key] = state.decision_counts.get(key, 0) + 1
        recent = state.recent_firings
        recent.append(
            RecentFiring(
                due.due_at, due.rule, due.step, due.anchor_at, outcome, None, sent_at, due.key
            )
        )
        if len(recent) > self.memory.lookup:
            seg = self._segment(state) if self._multi else self._oldest
            recent[:] = still_needed(
                recent,
                due.due_at if sent_at is None else sent_at,
                self.memory,
                guard_span=self._guard_span,
                attribution_window=self._attribution_window,
                transactional=seg.transactional,
                caps=seg.caps,
            )


# Today's name of the cadence step's threshold (docs/rules.md "Rules file").
overdue_threshold = cadence_threshold
