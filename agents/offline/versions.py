"""The offline reference across rule changes (docs/rules.md "Changing rules").

A history may change the rules file at event times T1 < T2 < ...: the seed is in
force from the beginning, version i from Ti (offline there is no lateness: the
applied time is the declared effective time).  This module is the reference's own
reading of what a change does to one customer's ladders, written from the design
without the engine's classes (tests/unit/test_import_graph.py):

* Order at one instant Ti: the events at Ti, then the switch, then the steps due
  at Ti under the new version.
* Which version governs rule R at t: the version R's ladder is pinned to, else
  the one in force (a rule absent or disabled there has nothing due).  Guardrails
  of a step due at D: the version in force at D.
* The switch, per rule R of the new version: an unchanged rule (same
  ``rule_version`` as under the governing version) goes on as it was; a changed
  rule with ``on_change = "pin"`` whose ladder is active at Ti (anchor under the
  governing version exists, is before Ti, not cancelled, steps left) stays on
  that version until its anchor moves or it is cancelled; otherwise it restarts:
  the progress k made for the new anchor is kept, and the new version's steps
  k+1... due at or before Ti are ``superseded`` (a decision that is no nudge),
  stopping at the first one due later - unless that ladder is cancelled as of Ti
  (then nothing is due to supersede).  A rule the new version lacks stops (its
  pin too).  A pin to a version the bound (:data:`MAX_VERSIONS`) has dropped
  restarts at the switch.
* A pinned ladder runs its version's rule R (steps, audience, cancel, reason,
  channel, transactional, arbitration, ``rule_version``) at the place of R's
  priority in the version in force.  The gap and the cap at D count the delivered
  nudges of the rules not transactional in the version in force at D (a pinned
  transactional rule's deliveries too, once that version makes it marketing).
  When it ends (its anchor under the pinned
  version moves, or it is cancelled) the rule follows the version in force; if
  that version's anchor is still the pinned one, that anchor's ladder counts as
  done (for good: no later version's steps for it either).

Progress is (anchor, steps done), as the stream keeps it: it changes only when a
step is processed (fired, skipped, superseded), pinned, or counted as done, and a
step count belongs to the anchor it was made for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents.offline.rulebook import (
    ON_CHANGE_PIN,
    GuardrailSettings,
    Rulebook,
    RuleSpec,
    read_rules,
)
from agents.offline.timeline import LadderItem, StageWalk, Timeline

# Versions a partition keeps (the one in force and the older ones ladders may be
# pinned to); the engine's bound, restated here (docs/rules.md "Changing rules").
MAX_VERSIONS = 8
# Progress of an anchor whose ladder counts as done: no rule has this many steps
# (docs/rules.md "Rules file": at most 10).
ALL_STEPS = 10

LIFECYCLE_CHANGE = (
    "lifecycle cannot change on a live deployment: every customer's stage would move "
    "at once; start a new deployment"
)
ATTRIBUTION_CHANGE = (
    "attribution_window cannot change on a live deployment: conversions already "
    "counted would be judged by another window; start a new deployment"
)


def compatible(seed: Rulebook, new: Rulebook) -> list[str]:
    """Why ``new`` cannot follow ``seed`` on a live deployment (empty: it can)."""
    problems = []
    if new.lifecycle != seed.lifecycle:
        problems.append(LIFECYCLE_CHANGE)
    if new.guardrails.attribution_window != seed.guardrails.attribution_window:
        problems.append(ATTRIBUTION_CHANGE)
    return problems


@dataclass(frozen=True, slots=True)
class BookVersion:
    index: int  # 0: the seed
    book: Rulebook
    applied_at: int | None  # None: the seed, in force from the beginning

    def rule(self, name: str) -> RuleSpec | None:
        """Rule ``name`` when enabled in this version."""
        return next((r for r in self.book.rules if r.name == name), None)


class Versions:
    """The seed and the rule changes of a history, by applied time."""

    def __init__(self, seed: Rulebook, changes: Sequence[tuple[int, Rulebook]] = ()) -> None:
        versions = [BookVersion(0, seed, None)]
        for i, (t, book) in enumerate(sorted(changes, key=lambda c: c[0]), start=1):
            previous = versions[-1].applied_at
            if previous is not None and t <= previous:
                raise ValueError(f"two rule changes take effect at the same instant ({t})")
            problems = compatible(seed, book)
            if problems:
                raise ValueError("; ".join(problems))
            versions.append(BookVersion(i, book, t))
        self.versions = tuple(versions)

    @classmethod
    def read(
        cls, seed: Rulebook, changes: Sequence[tuple[int, str | Mapping[str, Any]]]
    ) -> Versions:
        """From rule changes as (effective_at micros, rules file text or dict)."""
        return cls(seed, [(t, read_rules(doc)) for t, doc in changes])

    @property
    def seed(self) -> Rulebook:
        return self.versions[0].book

    @property
    def changed(self) -> bool:
        return len(self.versions) > 1

    def at(self, t: int) -> BookVersion:
        """The version in force at ``t`` (after a switch at ``t``)."""
        found = self.versions[0]
        for v in self.versions[1:]:
            assert v.applied_at is not None
            if v.applied_at > t:
                break
            found = v
        return found

    def guardrails_at(self, t: int) -> GuardrailSettings:
        return self.at(t).book.guardrails

    def transactional_at(self, t: int) -> frozenset[str]:
        """The rules whose deliveries are no marketing pressure at ``t``: those
        transactional in the version in force then (docs/rules.md "Changing rules")."""
        return frozenset(r.name for r in self.at(t).book.rules if r.transactional)

    def names(self) -> list[str]:
        """Every rule name enabled in some version: the seed's by priority, then new ones."""
        out: list[str] = []
        for v in self.versions:
            out += [r.name for r in v.book.rules if r.name not in out]
        return out


def dropped(versions: Versions, pinned: BookVersion, switch: BookVersion) -> bool:
    """Whether a pin to ``pinned`` retires at ``switch``: the 8th version after the
    latest one before it with the same rules (a file published again counts from its
    newest switch)."""
    same = _identity(pinned.book)
    own = max(
        (v.index for v in versions.versions[: switch.index] if _identity(v.book) == same),
        default=pinned.index,
    )
    return own <= switch.index - MAX_VERSIONS


def _identity(book: Rulebook) -> tuple[Any, ...]:
    """What makes two rules files the same version here: each enabled rule's version
    (its name included), the guardrails, the lifecycle and the [model] (not
    descriptions)."""
    return (tuple(r.version for r in book.rules), book.guardrails, book.lifecycle, book.model)


def live_anchor(timeline: Timeline, rule: RuleSpec, t: int, key: str | None = None) -> int | None:
    """The rule's anchor as of ``t`` (of the cart ``key`` for a keyed rule) when its
    ladder is not cancelled by then (a cancelled ladder has nothing due, nothing to
    pin, nothing to supersede)."""
    anchor = timeline.anchor(rule, t, key)
    if anchor is None or timeline.cancelled(rule, anchor, t):
        return None
    return anchor


def versioned_ladder(
    timeline: Timeline,
    name: str,
    versions: Versions,
    until: int,
    stages: StageWalk,
    kept: list[tuple[int, bool]] | None = None,
    key: str | None = None,
) -> list[LadderItem]:
    """Every step of rule ``name`` due at or before ``until`` across the versions,
    with the superseded ones at each switch (module doc), in time order.

    ``kept`` (when given) gets (Ti, whether the rule goes on) for each switch: true
    when it is unchanged or its ladder is pinned, false when it restarts or stops
    (what a deferred firing of it becomes: docs/send-windows.md "Deferred firings")."""
    switches = {v.applied_at: v for v in versions.versions[1:] if v.applied_at is not None}
    points = sorted(
        {*(t for t in timeline.times if t <= until), *(t for t in switches if t <= until)}
    )
    items: list[LadderItem] = []
    cur = versions.versions[0]  # the version in force as the walk goes
    anchor_done: int | None = None  # progress: the anchor ...
    step_done = 0  # ... and the steps processed for it
    pin: BookVersion | None = None

    for i, start in enumerate(points):
        end = points[i + 1] if i + 1 < len(points) else None
        # 1. The events at ``start`` (already in the facts as of start) may end a pin.
        if pin is not None:
            g = pin.rule(name)
            assert g is not None and anchor_done is not None
            if live_anchor(timeline, g, start, key) != anchor_done:
                pin = None
                now = cur.rule(name)
                if now is not None and live_anchor(timeline, now, start, key) == anchor_done:
                    step_done = ALL_STEPS  # that anchor's ladder counts as done
        # 2. The switch at ``start``.
        new = switches.get(start)
        if new is not None:
            old, cur = cur, new
            rule = new.rule(name)
            goes_on = False
            if rule is None:
                pin = None  # a removal is a removal, pins included
            else:
                g_version: BookVersion | None = pin if pin is not None else old
                if pin is not None and dropped(versions, pin, new):
                    g_version = None
                g = g_version.rule(name) if g_version is not None else None
                if g is not None and g.version == rule.version:
                    goes_on = True  # unchanged: it keeps going (a pin on it stays)
                elif rule.on_change == ON_CHANGE_PIN and g is not None and g_version is not None:
                    a = live_anchor(timeline, g, start, key)
                    k = step_done if a is not None and a == anchor_done else 0
                    if a is not None and a < start and k < len(g.steps):
                        pin, anchor_done, step_done = g_version, a, k
                        goes_on = True
                    else:
                        pin = None
                        anchor_done, step_done = _restart(
                            timeline, rule, start, anchor_done, step_done, items, key
                        )
                else:
                    pin = None
                    anchor_done, step_done = _restart(
                        timeline, rule, start, anchor_done, step_done, items, key
                    )
            if kept is not None:
                kept.append((start, goes_on))
        # 3. The steps due in [start, end) under the governing version.
        governing = pin if pin is not None else cur
        rule = governing.rule(name)
        if rule is None:
            continue
        in_force = cur.rule(name)
        placed = in_force.priority if pin is not None and in_force is not None else None
        anchor = timeline.anchor(rule, start, key)
        if anchor is None:
            continue
        k = step_done if anchor == anchor_done else 0
        while k < len(rule.steps):
            got = timeline.step_due(rule, k + 1, anchor, start)
            if got is None:
                # Never due on these facts (a churn step: docs/prediction.md "The churn_risk rule").
                break
            threshold, skipped = got
            due = max(anchor + threshold, start)
            if (end is not None and due >= end) or due > until:
                break  # not due on these facts: the next event or switch may change them
            if timeline.cancelled(rule, anchor, due):
                break
            k += 1
            anchor_done, step_done = anchor, k
            priority = rule.priority if placed is None else placed
            ok = timeline.in_audience(rule, due, stages.at(due, priority))
            items.append(
                LadderItem(
                    rule, k, threshold, anchor, due, ok, placed=placed, skipped=skipped, key=key
                )
            )
    return items


def _restart(
    timeline: Timeline,
    rule: RuleSpec,
    at: int,
    anchor_done: int | None,
    step_done: int,
    items: list[LadderItem],
    key: str | None = None,
) -> tuple[int | None, int]:
    """The restart at the switch ``at``: the progress kept for the new version's
    anchor, its steps due at or before ``at`` superseded (audience not asked)."""
    anchor = live_anchor(timeline, rule, at, key)
    if anchor is None:
        return anchor_done, step_done
    k = step_done if anchor == anchor_done else 0
    while k < len(rule.steps):
        got = timeline.step_due(rule, k + 1, anchor, at)
        if got is None:
            break
        threshold = got[0]
        due = anchor + threshold
        if due > at:
            break
        k += 1
        anchor_done, step_done = anchor, k
        items.append(LadderItem(rule, k, threshold, anchor, due, False, superseded_at=at, key=key))
    return anchor_done, step_done
