"""Settings the pure core needs: the rules, guardrails, limits.

Plain frozen dataclasses so the core can be tested without any configuration
machinery; :mod:`streams.config` builds them from the environment.
Durations are held in microseconds, the unit of every time in the core.

The rules are a :class:`agents.core.rules.RuleSet` (docs/rules.md "Rules file"):
``CoreSettings(rules=...)`` runs that set (its guardrails win over the fields below);
without it the ladder, overdue and guardrail fields are the deprecated aliases that
edit the default file (docs/rules.md "Environment aliases").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.core.rules.aliases import alias_rules
from agents.core.rules.model import GuardrailValues, RuleSet
from agents.core.timeutil import MICROS_PER_DAY, MICROS_PER_SECOND

DAY = MICROS_PER_DAY
HOUR = 3600 * MICROS_PER_SECOND

RULE_SECOND_PURCHASE = "second_purchase"
RULE_INACTIVITY = "inactivity"
RULE_OVERDUE = "overdue"


# Entries of one overflow row (a row of the same table, key "p/<slot>/<customer>";
# agents.core.pending), in serialised bytes.
DEFAULT_PENDING_CHUNK_BYTES = 128 * 1024
# The hostile-input cap: bytes of waiting entries per customer, row and overflow
# rows together (about 40,000 purchases or 75,000 sessions with 12-character ids).
# Only past it is an event dated after the clock refused (pending_overflow).
DEFAULT_MAX_PENDING_BYTES = 4 * 1024 * 1024


_GUARDRAIL_FIELDS = (
    "holdout_percent",
    "holdout_salt",
    "min_gap",
    "frequency_cap",
    "frequency_window",
    "attribution_window",
)


@dataclass(frozen=True, slots=True)
class LadderSettings:
    """One rule's ladder: step k (1-based) is due at anchor + steps[k-1]."""

    rule: str
    steps: tuple[int, ...]
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """Everything the domain core is parameterised by."""

    second_purchase: LadderSettings = field(
        default_factory=lambda: LadderSettings(RULE_SECOND_PURCHASE, (7 * DAY, 14 * DAY, 30 * DAY))
    )
    inactivity: LadderSettings = field(
        default_factory=lambda: LadderSettings(RULE_INACTIVITY, (14 * DAY, 30 * DAY, 60 * DAY))
    )
    # Guardrails (applied by agents.core.guardrails; defaults: docs/guardrails.md "Guardrails").
    holdout_percent: float = 10.0
    holdout_salt: str = "retention"
    min_gap: int = 24 * HOUR
    frequency_cap: int = 4
    frequency_window: int = 30 * DAY
    attribution_window: int = 5 * DAY
    # The cadence-aware rule: with >= overdue_min_orders orders, fire once when no
    # order came for overdue_multiplier x the median gap between their orders
    # (never sooner than overdue_floor after the last order).
    overdue_enabled: bool = True
    overdue_multiplier: float = 2.0
    overdue_floor: int = 7 * DAY
    overdue_min_orders: int = 3
    # "Active" for the retention rate: an order within this trailing window.
    active_window: int = 90 * DAY
    # Bounds that keep one customer's record small whatever producers send.
    # (Order ids are kept for the customer's whole history: agents.core.dedup.)
    max_recent_event_ids: int = 512
    # Events dated after the clock kept in one customer's row (and at most
    # agents.core.budget.PENDING_BUDGET bytes of them); later ones wait in overflow
    # rows of pending_chunk_bytes each (agents.core.pending).  Only past
    # max_pending_bytes in all (the hostile-input cap) is an event pending_overflow.
    max_pending_events: int = 1024
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    pending_chunk_bytes: int = DEFAULT_PENDING_CHUNK_BYTES
    # The newest firings a record keeps for the customer lookup, whatever their
    # outcome (beyond what the guardrails and the attribution need: agents.core.budget).
    max_recent_nudges: int = 32
    # Events this much later than the newest one a source has sent still count
    # for decisions made in stream-clock mode (bounded out-of-orderness).
    stream_allowed_lateness: int = 1 * DAY
    # Backfill: steps due before this time (micros) are recorded, never emitted.
    backfill_until: int | None = None
    # A parsed rules file; None: the rule set the fields above describe.
    rules: RuleSet | None = None
    # The rule set the engine runs (``rules``, or the aliases' set): set on creation.
    rule_set: RuleSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rules = self.rules
        if rules is None:
            rules = alias_rules(
                second_purchase=(
                    self.second_purchase.rule,
                    self.second_purchase.steps,
                    self.second_purchase.enabled,
                ),
                inactivity=(self.inactivity.rule, self.inactivity.steps, self.inactivity.enabled),
                overdue=(
                    RULE_OVERDUE,
                    self.overdue_multiplier,
                    self.overdue_floor,
                    self.overdue_min_orders,
                    self.overdue_enabled,
                ),
                guardrails=GuardrailValues(
                    holdout_percent=self.holdout_percent,
                    holdout_salt=self.holdout_salt,
                    min_gap=self.min_gap,
                    frequency_cap=self.frequency_cap,
                    frequency_window=self.frequency_window,
                    attribution_window=self.attribution_window,
                ),
            )
        else:
            # The file's guardrails win: every reader of these fields sees them.
            for name in _GUARDRAIL_FIELDS:
                object.__setattr__(self, name, getattr(rules.guardrails, name))
        object.__setattr__(self, "rule_set", rules)

    @property
    def overdue(self) -> LadderSettings:
        """The overdue rule as a one-step ladder; its threshold is per customer.

        ``steps`` holds the floor; the engine replaces it with
        max(floor, multiplier x median gap) for each customer.
        """
        return LadderSettings(RULE_OVERDUE, (self.overdue_floor,), self.overdue_enabled)

    def ladders(self) -> tuple[LadderSettings, ...]:
        """The enabled rules as ladders, by priority: the order simultaneous firings
        are emitted in.  A cadence step shows as its floor."""
        return tuple(
            LadderSettings(rule.name, tuple(step.least for step in rule.steps))
            for rule in self.rule_set.active
        )

    def guard_span(self) -> int:
        """How far back a delivered nudge can still matter to the gap or the cap."""
        return max(self.min_gap, self.frequency_window)
