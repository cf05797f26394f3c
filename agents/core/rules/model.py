"""A rules file, parsed: the rules, the lifecycle and the guardrails (docs/rules.md
"Rules file").

Plain frozen values built once (by :func:`agents.core.rules.check.load_rules`, or
from the settings' deprecated aliases); the engine precomputes what it needs of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from agents.core.prediction import GammaGammaParams, NbdParams, TimeUnit
from agents.core.rules.abstract import Anchor, Predicate, Step

# Re-exported: defined apart so that agents.core.windows can report its problems
# without importing this module, which names its SendWindowSetting.
from agents.core.rules.problem import Problem as Problem
from agents.core.timeutil import MICROS_PER_DAY, MICROS_PER_SECOND

if TYPE_CHECKING:
    from agents.core.windows import SendWindowSetting

DAY = MICROS_PER_DAY
HOUR = 3600 * MICROS_PER_SECOND

FORMAT = 1
# Placeholders a reason template may use, and the reason of a rule that has none.
PLACEHOLDERS = ("span", "anchor_date", "rule", "step")
DEFAULT_REASON = "{rule} step {step}: {span} after {anchor_date}"
NAME_PATTERN = r"[a-z][a-z0-9_]{0,39}"
# At most this many rules (enabled or not) and steps per rule; with every rule at
# the step bound the row stays within its byte budget (docs/budget.md "Byte budget").
MAX_RULES = 16
MAX_LADDER_STEPS = 10
# Steps of all enabled rules together: the row counts decisions per (rule, step,
# outcome) and conversions per (rule, step, group) (docs/budget.md "Byte budget").
MAX_TOTAL_STEPS = 40
# What a published change does to customers mid-ladder in a rule (docs/rules.md
# "Changing rules"): keep the steps already fired and supersede the new ones already
# due, or finish the ladder under the version it started under.
ON_CHANGE_RESTART = "restart"
ON_CHANGE_PIN = "pin"
ON_CHANGE = (ON_CHANGE_RESTART, ON_CHANGE_PIN)


@dataclass(frozen=True, slots=True)
class GuardrailValues:
    """The file's ``[guardrails]`` (docs/guardrails.md "Guardrails"); micros for durations."""

    holdout_percent: float = 10.0
    holdout_salt: str = "retention"
    min_gap: int = 24 * HOUR
    frequency_cap: int = 4
    frequency_window: int = 30 * DAY
    attribution_window: int = 5 * DAY
    arbitration: bool = False  # each rule's default


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The stage moves of inactivity: with >= 1 order, ``at_risk_after`` without
    activity makes new/repeat/reactivated at_risk, ``lapsed_after`` makes at_risk
    lapsed; ``priority`` places the move among firings due at the same instant."""

    at_risk_after: int = 14 * DAY
    lapsed_after: int = 60 * DAY
    priority: int = 15

    def canonical(self) -> dict[str, Any]:
        return {
            "at_risk_after": self.at_risk_after,
            "lapsed_after": self.lapsed_after,
            "priority": self.priority,
        }


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: a ladder of steps after an anchor, for an audience, until cancelled."""

    name: str
    priority: int
    anchor: Anchor
    steps: tuple[Step, ...]
    cancel_on: tuple[str, ...] = ()
    audience: tuple[Predicate, ...] = ()
    enabled: bool = True
    description: str = ""
    channel: str | None = None
    reason: str | None = None
    transactional: bool = False
    arbitration: bool = False
    on_change: str = ON_CHANGE_RESTART
    # The window its firings are sent in (its own ``send_window``, else the file's,
    # None when neither or ``send_window = "none"``: docs/send-windows.md).
    send_window: SendWindowSetting | None = None
    version: str = field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", rule_version(self))

    @property
    def template(self) -> str:
        """The reason template the rule's firings are described with."""
        return DEFAULT_REASON if self.reason is None else self.reason

    def canonical(self) -> dict[str, Any]:
        """Everything that changes what or when the rule fires or what it says.

        ``on_change`` only when "pin": the default adds nothing, so the version of a
        rule written before the setting existed does not change."""
        doc: dict[str, Any] = {
            "name": self.name,
            "priority": self.priority,
            "anchor": self.anchor.canonical(),
            "steps": [s.canonical() for s in self.steps],
            "cancel_on": sorted(self.cancel_on),
            "audience": {p.key: p.canonical() for p in self.audience},
            "transactional": self.transactional,
            "arbitration": self.arbitration,
            "channel": self.channel,
            "reason": self.reason,
        }
        if self.on_change == ON_CHANGE_PIN:
            doc["on_change"] = ON_CHANGE_PIN
        # Only when set, so a rule without a window keeps its version.
        if self.send_window is not None:
            doc["send_window"] = self.send_window.canonical()
        return doc


def rule_version(rule: Rule) -> str:
    """The first 12 hex digits of sha256 of the rule's canonical form."""
    text = orjson.dumps(rule.canonical(), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class ModelValues:
    """The file's ``[model]`` (docs/prediction.md "The churn_risk rule"): what
    ``retention model fit --format toml`` prints.  ``kinds``: the NBD parameters by
    kind (``"mbgnbd"``, ``"bgnbd"``), each in ``time_unit``; ``gamma_gamma``: the
    spend parameters by currency.  ``fitted_at`` is informational (not hashed)."""

    version: str
    time_unit: TimeUnit
    kinds: dict[str, NbdParams] = field(default_factory=dict, hash=False)
    gamma_gamma: dict[str, GammaGammaParams] = field(default_factory=dict, hash=False)
    fitted_at: str | None = field(default=None, compare=False)

    def canonical(self) -> dict[str, Any]:
        """What the rules file's version hashes of the model (docs/rules.md "Changing
        rules"): a new model is a new version."""
        return {
            "version": self.version,
            "time_unit": self.time_unit,
            "kinds": {k: nbd_canonical(v) for k, v in sorted(self.kinds.items())},
            "gamma_gamma": {
                c: {"p": g.p, "q": g.q, "v": g.v} for c, g in sorted(self.gamma_gamma.items())
            },
        }


def nbd_canonical(params: NbdParams) -> dict[str, Any]:
    """NBD parameters as plain data, with their kind and time unit."""
    return {
        "kind": params.kind,
        "r": params.r,
        "alpha": params.alpha,
        "a": params.a,
        "b": params.b,
        "time_unit": params.unit,
    }


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A whole rules file.  ``rules`` in file order (disabled ones too); ``active``:
    the enabled ones by priority, the order firings due at one instant are judged in.
    ``lifecycle`` None: no inactivity stage moves (only the deprecated aliases, with
    the inactivity rule switched off, ask for that).  ``model``: the file's ``[model]``
    (None without one), which churn_risk steps and the scores read
    (docs/prediction.md "The churn_risk rule")."""

    rules: tuple[Rule, ...]
    guardrails: GuardrailValues = field(default_factory=GuardrailValues)
    lifecycle: Lifecycle | None = field(default_factory=Lifecycle)
    format: int = FORMAT
    model: ModelValues | None = None
    active: tuple[Rule, ...] = field(init=False, default=(), compare=False)

    def __post_init__(self) -> None:
        active = tuple(sorted((r for r in self.rules if r.enabled), key=lambda r: r.priority))
        object.__setattr__(self, "active", active)

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def versions(self) -> dict[str, str]:
        """Each rule's version, by name (in file order)."""
        return {r.name: r.version for r in self.rules}


class RulesError(ValueError):
    """A rules file that cannot run; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))
