"""The backtest's tally (docs/rules.md "Backtest"): each chunk's decisions as counts
per rule, step, ISO week of the due time and outcome, conversions per group, the
input counters and (with a baseline) the customers whose nudges differ - counts
that add up across chunks, whichever way the history was cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.offline.reference import ReferenceResult

EXAMPLES = 5
# Decisions of one rule shown for an example customer, per file.
EXAMPLE_DECISIONS = 6

# (rule, step, ISO week of the due time, what) -> count; ``what`` is an outcome code,
# "conversions:<group>", or for a rule with a send window "send:deferred" (the
# firing waited for its window) and "send:hNN" (delivered at local hour NN).
CountKey = tuple[str, int, str, str]
SEND = "send:"
SEND_DEFERRED = SEND + "deferred"


def send_keys(decision: dict[str, Any]) -> list[str]:
    """The send-window counts of one decision record (docs/send-windows.md
    "Outputs"): none without a window."""
    send_at = decision.get("send_at")
    if send_at is None:
        return []
    out = [SEND_DEFERRED] if send_at != decision["due_at"] else []
    local = decision.get("send_local")
    if decision["outcome"] == "delivered" and local is not None:
        out.append(f"{SEND}h{local[11:13]}")
    return out


def iso_week(micros: int) -> str:
    """The ISO 8601 week of an instant (UTC), e.g. ``2026-W10``."""
    day = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(slots=True)
class Example:
    """One customer whose nudges from a rule differ between the file and the baseline."""

    customer_id: str
    file: list[dict[str, Any]]  # their decisions of that rule under the file
    baseline: list[dict[str, Any]]  # ... and under the baseline


@dataclass(slots=True)
class RuleDiff:
    """Customers who would newly get / no longer get a delivered nudge from one rule."""

    newly: int = 0
    no_longer: int = 0
    newly_examples: list[Example] = field(default_factory=list)
    no_longer_examples: list[Example] = field(default_factory=list)

    def merge(self, other: RuleDiff) -> None:
        self.newly += other.newly
        self.no_longer += other.no_longer
        self.newly_examples = _smallest(self.newly_examples + other.newly_examples)
        self.no_longer_examples = _smallest(self.no_longer_examples + other.no_longer_examples)


def _smallest(examples: list[Example]) -> list[Example]:
    # The smallest customer ids: the same examples however the history was chunked.
    return sorted(examples, key=lambda e: e.customer_id)[:EXAMPLES]


@dataclass(slots=True)
class Tally:
    """What one rules file did to a set of customers: counts that add up across chunks."""

    counts: dict[CountKey, int] = field(default_factory=dict)
    lines: int = 0
    events: int = 0
    duplicates: int = 0
    order_retries: int = 0
    customers: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)

    def add(self, key: CountKey, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def merge(self, other: Tally) -> None:
        for key, n in other.counts.items():
            self.add(key, n)
        self.lines += other.lines
        self.events += other.events
        self.duplicates += other.duplicates
        self.order_retries += other.order_retries
        self.customers += other.customers
        for code, n in other.dead_letters.items():
            self.dead_letters[code] = self.dead_letters.get(code, 0) + n

    @classmethod
    def of(cls, result: ReferenceResult) -> Tally:
        tally = cls(
            lines=result.lines,
            events=result.events,
            duplicates=result.duplicates,
            order_retries=result.order_retries,
            customers=result.customers,
            dead_letters=dict(result.dead_letters),
        )
        weeks: dict[str, str] = {}  # trigger_id -> week of the firing's due time
        week_of_day: dict[int, str] = {}
        for (firing, verdict), decision in zip(result.firings, result.decisions, strict=True):
            day = firing.due // 86_400_000_000
            week = week_of_day.get(day)
            if week is None:
                week = week_of_day[day] = iso_week(firing.due)
            weeks[decision["trigger_id"]] = week
            tally.add((firing.rule, firing.step, week, verdict.outcome))
            for what in send_keys(decision):
                tally.add((firing.rule, firing.step, week, what))
        for outcome in result.outcomes:
            key = (outcome["rule"], outcome["step"], weeks[outcome["trigger_id"]])
            tally.add((*key, f"conversions:{outcome['group']}"))
        return tally


def _delivered_by_rule(result: ReferenceResult) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(rule, customer) -> that customer's decisions of that rule, in due order."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for decision in result.decisions:
        out.setdefault((decision["rule"], decision["customer_id"]), []).append(decision)
    return out


def _brief(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"step": d["step"], "due_at": d["due_at"], "outcome": d["outcome"]}
        for d in decisions[:EXAMPLE_DECISIONS]
    ]


def diff_results(file: ReferenceResult, baseline: ReferenceResult) -> dict[str, RuleDiff]:
    """Per rule, the customers with a delivered nudge under one file and none under the other."""
    mine, theirs = _delivered_by_rule(file), _delivered_by_rule(baseline)
    out: dict[str, RuleDiff] = {}
    for key in sorted(set(mine) | set(theirs)):
        rule, customer = key
        got = any(d["delivered"] for d in mine.get(key, []))
        had = any(d["delivered"] for d in theirs.get(key, []))
        if got == had:
            continue
        diff = out.setdefault(rule, RuleDiff())
        example = Example(customer, _brief(mine.get(key, [])), _brief(theirs.get(key, [])))
        if got:
            diff.newly += 1
            diff.newly_examples = _smallest([*diff.newly_examples, example])
        else:
            diff.no_longer += 1
            diff.no_longer_examples = _smallest([*diff.no_longer_examples, example])
    return out
