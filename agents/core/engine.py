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
from dataclasses import replace

from agents.core.budget import (
    CODE_CUSTOMER_OVER_BUDGET,
    CODE_PENDING_OVERFLOW,
    MAX_ENTRY_BYTES,
    PENDING_BUDGET,
    FiringMemory,
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
    OUTCOME_SUPERSEDED,
    Guardrails,
    delivered_due_times,
)
from agents.core.pending import PendingLimits
from agents.core.rules.abstract import Facts, Predicate, Step
from agents.core.rules.history import RuleHistory, Version
from agents.core.rules.model import MAX_LADDER_STEPS, ON_CHANGE_PIN, Lifecycle, Rule
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
# What a rules switch does to a rule a customer is mid-ladder in (preview_switch).
ACTION_PIN = "pin"
ACTION_RESTART = "restart"
ACTION_UNCHANGED = "unchanged"
ACTION_STOPPED = "stopped"


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
        "on_change",
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
        self.on_change = rule.on_change
        # Whether this rule's step goes before a stage move due at the same instant.
        self.before_lifecycle = lifecycle is None or rule.priority < lifecycle.priority

    def placed_as(self, other: _Plan) -> _Plan:
        """This rule (of a pinned version) at ``other``'s place among the rules in
        force: a pinned ladder keeps its version's rule but goes in the order of the
        version in force (docs/rules.md "Changing rules")."""
        plan = object.__new__(_Plan)
        for name in _Plan.__slots__:
            setattr(plan, name, getattr(self, name))
        plan.index = other.index
        plan.before_lifecycle = other.before_lifecycle
        return plan

    def silenced(self) -> _Plan:
        """This rule with no step left to fire."""
        plan = self.placed_as(self)
        plan.size = 0
        return plan

    def threshold(self, step: int, state: CustomerState) -> int:
        fixed = self.fixed
        if fixed is not None:
            return fixed[step - 1]
        assert self.cadence is not None
        return self.cadence.threshold(state)


class _Rules:
    """One rules version as the engine runs it: its enabled rules as plans, by
    priority, and its guardrails (docs/rules.md "Changing rules")."""

    __slots__ = ("by_name", "guardrails", "id", "plans", "transactional")

    def __init__(self, version: Version, guardrails: Guardrails) -> None:
        rules = version.rules
        self.id = version.id
        self.plans = tuple(_Plan(i, r, rules.lifecycle) for i, r in enumerate(rules.active))
        self.by_name = {plan.name: plan for plan in self.plans}
        self.guardrails = guardrails
        # Rules whose deliveries are no marketing pressure: outside gap and cap.
        self.transactional = frozenset(r.name for r in rules.active if r.transactional)


class _Shared:
    """What every engine of one configuration shares: each version's plans, built
    once (Engine.with_history is called per partition and per change)."""

    __slots__ = ("memory", "rules")

    def __init__(self) -> None:
        self.rules: dict[str, _Rules] = {}
        self.memory: dict[str, FiringMemory] = {}


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
        self._shared = _Shared()
        seed = self.history.versions[0]
        self._shared.rules[seed.id] = _Rules(seed, Guardrails(settings))
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
        by_id = {v.id: self._version_rules(v) for v in versions}
        self._by_id = by_id
        # The customer's segment: the version applied at its ``rules_at`` (None: the
        # seed).  Once the bound has dropped it, the oldest version kept.
        self._applied = {v.applied_at: by_id[v.id] for v in versions}
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
        memories = [self._shared.memory[v.id] for v in versions]
        self.memory = FiringMemory(
            max(m.lookup for m in memories),
            max(m.guard for m in memories),
            max(m.attribution for m in memories),
            max(m.entry_bytes for m in memories),
        )
        self._guard_span = max(
            max(v.rules.guardrails.min_gap, v.rules.guardrails.frequency_window) for v in versions
        )
        if not self._multi:
            self._guard_span = self.settings.guard_span()

    def _version_rules(self, version: Version) -> _Rules:
        shared = self._shared
        found = shared.rules.get(version.id)
        if found is None:
            found = _Rules(version, Guardrails(version.rules.guardrails))
            shared.rules[version.id] = found
            shared.memory[version.id] = firing_memory(replace(self.settings, rules=version.rules))
        return found

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
        out.extend(self.advance(state, watermark))
        return out

    def advance(self, state: CustomerState, watermark: int) -> list[Emission]:
        """Move the customer to ``watermark``: apply pending events, fire due steps,
        switch rules versions.

        Items due at one instant go by priority (docs/rules.md "Rules file"): each
        rule's step, and the lifecycle's stage move at its own priority.  A rules
        switch at Ti goes after the events dated <= Ti and before the items due at
        Ti (docs/rules.md "Changing rules")."""
        out: list[Emission] = []
        # The due time of the last firing of a non-transactional rule in this walk:
        # a later one at the same instant is outranked, if its rule arbitrates.
        busy_at: int | None = None
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
            due = self._next_item(state, plans)
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
                if index == LIFECYCLE:
                    _move_stage(state)
                    continue
                plan = plans[index]
                step = self._due(plan, state)
                assert step is not None
                if plan.audience and not _holds(plan.audience, state, step.due_at):
                    # Not for this customer now: the step is done, nothing is decided.
                    state.ladders[plan.name] = _progress(state, plan.name, step)
                    continue
                outranked = plan.arbitration and busy_at == step.due_at
                out.append(self._fire(state, step, plan, outranked, seg))
                if not plan.transactional:
                    busy_at = step.due_at
            elif ev_t is not None and ev_t <= watermark:
                self._apply(state, state.pop_pending(self.pending_limits), out)
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
        self, state: CustomerState, plans: tuple[_Plan, ...]
    ) -> tuple[int, int] | None:
        """(due_at, rule_index) of :meth:`next_due`, without building a :class:`Due`
        per rule: this runs on every step of :meth:`advance` and every ``wake_at``."""
        best: tuple[int, int] | None = None
        ladders = state.ladders
        for plan in plans:
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

    def _next_item(self, state: CustomerState, plans: tuple[_Plan, ...]) -> tuple[int, int] | None:
        """(due_at, rule index or LIFECYCLE) of the customer's next timeline item."""
        best = self._next_due_at(state, plans)
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
            or (move_at == best[0] and not plans[best[1]].before_lifecycle)
        ):
            return (move_at, LIFECYCLE)
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

    def _segment(self, state: CustomerState) -> _Rules:
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

    def _plans_for(self, state: CustomerState, seg: _Rules) -> tuple[_Plan, ...]:
        """The segment's plans, a pinned ladder's rule taken from its pinned version."""
        ladders = state.ladders
        if not any(p.pin is not None for p in ladders.values()):
            return seg.plans
        out: list[_Plan] = []
        for plan in seg.plans:
            progress = ladders.get(plan.name)
            if progress is not None and progress.pin is not None:
                pinned = self._by_id.get(progress.pin)
                own = pinned.by_name.get(plan.name) if pinned is not None else None
                # A pin to a version the bound dropped: silent until the customer's
                # next switch, which restarts it (docs/rules.md "Changing rules").
                out.append(plan.silenced() if own is None else own.placed_as(plan))
            else:
                out.append(plan)
        return tuple(out)

    def _end_pins(self, state: CustomerState) -> None:
        """A pinned ladder ends when its anchor (under its version) moves or is
        cancelled: the rule follows the version in force again, and if that
        version's anchor is the pinned one, that anchor's ladder is done
        (docs/rules.md "Changing rules")."""
        ladders = state.ladders
        for name, progress in list(ladders.items()):
            if progress.pin is None:
                continue
            pinned = self._by_id.get(progress.pin)
            own = pinned.by_name.get(name) if pinned is not None else None
            if own is None or own.resolve(state) == progress.anchor:
                continue
            now = self._segment(state).by_name.get(name)
            anchor = now.resolve(state) if now is not None else None
            step = MAX_LADDER_STEPS if anchor == progress.anchor else progress.step
            ladders[name] = LadderProgress(progress.anchor, step)

    def _switch(self, state: CustomerState, at: int, out: list[Emission]) -> None:
        """The switch to the version applied at ``at`` (docs/rules.md "Changing
        rules"): each rule of the new version, by priority, keeps going, is pinned
        or restarts, its steps already due recorded as superseded."""
        old = self._segment(state)
        new = self._applied[at]
        ladders = state.ladders
        for name, action, progress, superseded in self._switch_actions(state, old, new, at):
            if progress is not None:
                ladders[name] = progress
            if action == ACTION_RESTART:
                plan = new.by_name[name]
                for due in superseded:
                    ladders[name] = LadderProgress(due.anchor_at, due.step)
                    out.append(self._supersede(state, due, plan))
        state.rules_at = at

    def _switch_actions(
        self, state: CustomerState, old: _Rules, new: _Rules, at: int
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
            governing = old if pin is None else self._by_id.get(pin)
            before = governing.by_name.get(name) if governing is not None else None
            if before is not None and before.version == plan.version:
                actions.append((name, ACTION_UNCHANGED, None, []))
                continue
            if (
                plan.on_change == ON_CHANGE_PIN
                and before is not None
                and governing is not None
                and _active(before, progress, state, at)
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
                    if anchor + threshold > at:
                        break
                    superseded.append(
                        Due(anchor + threshold, plan.index, j, name, anchor, threshold)
                    )
            actions.append((name, ACTION_RESTART, dropped, superseded))
        return actions

    def _supersede(self, state: CustomerState, due: Due, plan: _Plan) -> Firing:
        """A decision for a step already due at a switch: recorded, never sent, never
        a nudge for gap, cap or attribution (so not in recent_firings)."""
        s = self.settings
        backfill = s.backfill_until is not None and due.due_at < s.backfill_until
        outcome = OUTCOME_BACKFILL if backfill else OUTCOME_SUPERSEDED
        if not backfill:
            key = CountKey(due.rule, due.step, outcome)
            state.decision_counts[key] = state.decision_counts.get(key, 0) + 1
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
            holdout=False,
            template=plan.template,
            rule_version=plan.version,
            channel=plan.channel,
        )

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
            window = self._attribution_window
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
        if self._multi:
            self._end_pins(state)

    def _fire(
        self, state: CustomerState, due: Due, plan: _Plan, outranked: bool, seg: _Rules
    ) -> Firing:
        if self._multi:
            state.ladders[due.rule] = _progress(state, due.rule, due)
        else:
            state.ladders[due.rule] = LadderProgress(due.anchor_at, due.step)
        backfill = (
            self.settings.backfill_until is not None and due.due_at < self.settings.backfill_until
        )
        # A transactional firing is never held out (docs/guardrails.md "Guardrails").
        # The guardrails are those of the version in force at the due time.
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
                    due.due_at,
                    state.opted_out,
                    delivered_due_times(state.recent_firings, seg.transactional),
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
            seg = self._segment(state) if self._multi else self._oldest
            recent[:] = self._still_needed(recent, due.due_at, seg.transactional)

    def _still_needed(
        self, recent: list[RecentFiring], now: int, transactional: frozenset[str]
    ) -> list[RecentFiring]:
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
        sent = [
            i
            for i, f in enumerate(recent)
            if f.outcome == OUTCOME_DELIVERED
            and f.due_at > guard_from
            and f.rule not in transactional
        ]
        keep.update(_newest(recent, sent, mem.guard))
        attribution_from = now - self._attribution_window
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


def preview_switch(
    engine: Engine, state: CustomerState, new: Version, at: int
) -> dict[str, tuple[str, int]]:
    """What switching to ``new`` at ``at`` would do to each rule ``state``'s customer
    is mid-ladder in (its ladder active at ``at`` under the version governing it):
    rule -> (``"pin"``, ``"restart"``, ``"unchanged"`` or ``"stopped"``, the steps
    that would be superseded).  Pure: the row is not changed (docs/rules.md "Changing
    rules"; ``retention rules publish --dry-run`` counts these)."""
    old = engine._segment(state)
    target = engine._version_rules(new)
    actions = {
        name: (action, len(superseded))
        for name, action, _, superseded in engine._switch_actions(state, old, target, at)
    }
    out: dict[str, tuple[str, int]] = {}
    ladders = state.ladders
    names = [*old.by_name, *(n for n, p in ladders.items() if p.pin and n not in old.by_name)]
    for name in names:
        progress = ladders.get(name)
        governing = old
        if progress is not None and progress.pin is not None:
            governing = engine._by_id.get(progress.pin) or old
        plan = governing.by_name.get(name)
        if plan is None or not _active(plan, progress, state, at):
            continue
        # A rule the new version lacks (or disables) stops.
        out[name] = actions.get(name, (ACTION_STOPPED, 0))
    return out


def _active(plan: _Plan, progress: LadderProgress | None, state: CustomerState, at: int) -> bool:
    """Whether the customer is mid-ladder in ``plan`` at ``at``: its anchor exists, is
    not cancelled, is before ``at``, and not every step fired for it."""
    anchor = plan.resolve(state)
    if anchor is None or anchor >= at:
        return False
    k = progress.step if progress is not None and progress.anchor == anchor else 0
    return k < plan.size


def _progress(state: CustomerState, name: str, due: Due) -> LadderProgress:
    """The progress after ``due``'s step: a pinned ladder stays pinned."""
    progress = state.ladders.get(name)
    pin = progress.pin if progress is not None else None
    return LadderProgress(due.anchor_at, due.step, pin)


def _holds(audience: tuple[Predicate, ...], state: CustomerState, due_at: int) -> bool:
    return all(p.holds(state, due_at) for p in audience)


def _move_stage(state: CustomerState) -> None:
    """The lifecycle's move due now: new/repeat/reactivated -> at_risk -> lapsed."""
    state.stage = STAGE_AT_RISK if state.stage in ACTIVE_STAGES else STAGE_LAPSED
