"""The offline reference's own reading of a rules file (docs/rules.md).

The stream parses and checks the file with its rule classes; the reference, the
oracle the stream is tested against, reads it again here with plain code and
keeps it as plain values (:class:`Rulebook`), so that a misreading on either side
shows up as a disagreement instead of being shared.  It does not *check* a file
(``retention rules check`` does): what it cannot interpret it refuses with a
``ValueError`` naming the path in the document; anything it can read it takes.

Without a file the reference runs today's three rules from
:class:`~agents.core.settings.CoreSettings` (:func:`legacy_rulebook`), the same
rules the shipped default file declares.

``rule_version`` (:func:`rule_version`): the first 12 hex digits of the sha256 of
``orjson.dumps(canonical, OPT_SORT_KEYS)``, where ``canonical`` is the parsed rule
as a dict (durations in micros)::

    {"name": str, "priority": int,
     "steps": [micros, ...] | [{"cadence": float, "floor": micros}]
              | [{"p_alive_below": float, "model": "mbgnbd" | "bgnbd",
                  "time_unit": "day" | "week", "r": .., "alpha": .., "a": .., "b": ..}],
                  # a churn_risk step: its threshold and its model kind's
                  # parameters, so that a new [model] is a new version
                  # (docs/prediction.md "The churn_risk rule")
     "anchor": {"kind": str, "min_orders": int},  # no min_orders for first_order
     "cancel_on": [kind, ...],                    # sorted
     "audience": {...},                           # only the predicates given:
         # "orders" / "days_since_first_order": {"min": int | None, "max": int | None}
         # "stage": [stage, ...]                  (sorted)
         # "spend": {"currency": str, "min": str | None, "max": str | None}
         #          (the amounts normalised: "50.00" and "50" both read "50")
         # "consent": str
     "transactional": bool, "arbitration": bool,  # the file's default resolved;
                                                  # always false when transactional
     "channel": str | None, "reason": str | None, # as written (None: not given)
     "on_change": "pin",                          # only when "pin" (docs/rules.md
                                                  # "Changing rules"): restart, the
                                                  # default, leaves every hash as it was
     "send_window": {                             # only when the rule has a window
         "windows": [{"days": [0-6, ...], "open": minutes, "close": minutes}, ...],
         "policy": "defer" | "drop", "max_delay": micros | None,
         "default_zone": str, "zone": str}        # zone only when fixed

The file's ``[model]`` (docs/prediction.md "The churn_risk rule"): ``time_unit`` and a table of
``r``, ``alpha``, ``a``, ``b`` per model kind; a rule's ``p_alive_below`` steps read
the kind its ``model`` key names (``mbgnbd`` when unset), under a last_order anchor.

A rule's window (docs/send-windows.md): its own ``send_window`` table, else the file's
``[send_window]``, else none; ``send_window = "none"`` bypasses the file's.  The
file's ``default_timezone`` (UTC when unset) goes into every window read.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from agents.core.settings import (
    RULE_INACTIVITY,
    RULE_OVERDUE,
    RULE_SECOND_PURCHASE,
    CoreSettings,
)
from agents.core.timeutil import parse_duration
from agents.offline.churn import KINDS, UNITS, Model
from agents.offline.windows import known_zone

ANCHOR_FIRST_ORDER = "first_order"
ANCHOR_LAST_ORDER = "last_order"
ANCHOR_LAST_ACTIVITY = "last_activity"
ANCHOR_LAST_SESSION = "last_session"
# The lifecycle's anchors (docs/lifecycle.md "Rules"): none takes min_orders.
ANCHOR_SIGNUP = "signup"
ANCHOR_LAST_VIEW = "last_view"
ANCHOR_CART = "cart"  # keyed: one ladder per open kept cart
LIFECYCLE_ANCHORS = (ANCHOR_SIGNUP, ANCHOR_LAST_VIEW, ANCHOR_CART)
# What ends a cart's ladder besides emptying it: an order of that cart, or also an
# order sharing one of its products.
EXIT_CART = "cart"
EXIT_ANY_PRODUCT = "any_product"
# The orders an anchor needs before it exists, when the file does not say.
ANCHOR_MIN_ORDERS = {
    ANCHOR_FIRST_ORDER: 1,
    ANCHOR_LAST_ORDER: 1,
    ANCHOR_LAST_ACTIVITY: 1,
    ANCHOR_LAST_SESSION: 0,
    ANCHOR_SIGNUP: 0,
    ANCHOR_LAST_VIEW: 0,
    ANCHOR_CART: 0,
}
CANCEL_KINDS = ("purchase", "session", "consent")
# What a rules change does to a customer mid-ladder (docs/rules.md "Changing rules").
ON_CHANGE_RESTART = "restart"
ON_CHANGE_PIN = "pin"
CONSENT_NOT_OPTED_OUT = "not_opted_out"
CONSENT_OPTED_IN = "opted_in"
STAGES = ("prospect", "new", "repeat", "at_risk", "lapsed", "reactivated")
FALLBACK_REASON = "{rule} step {step}: {span} after {anchor_date}"
# Today's reason texts (agents.core.emissions ``Firing.reason``), as the default file writes them.
LEGACY_REASONS = {
    RULE_SECOND_PURCHASE: "no second order {span} after the first on {anchor_date}",
    RULE_INACTIVITY: "no activity for {span} since {anchor_date}",
    RULE_OVERDUE: "no order for {span} since {anchor_date}, overdue for their usual rhythm",
}
LEGACY_LIFECYCLE_PRIORITY = 15
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_GROUPS = {"weekdays": DAY_NAMES[:5], "weekends": DAY_NAMES[5:], "all": DAY_NAMES}
NO_WINDOW = "none"
# The model a churn_risk rule reads when it does not say
# (docs/prediction.md "The churn_risk rule").
DEFAULT_MODEL = "mbgnbd"


@dataclass(frozen=True, slots=True)
class Cadence:
    """A step ``max(floor, k x the customer's median gap between orders)`` after the anchor."""

    k: float
    floor: int  # micros


@dataclass(frozen=True, slots=True)
class ChurnStep:
    """A step due when P(alive) falls below ``p`` with no new order, on ``model``
    (the rule's ``model`` kind in the file's ``[model]``; agents/offline/churn.py)."""

    p: float
    model: Model


@dataclass(frozen=True, slots=True)
class OrderStep:
    """``{ order = k }``: due at the customer's k-th order (net of cancellations)."""

    k: int


@dataclass(frozen=True, slots=True)
class Anniversary:
    """``{ anniversary = n }``: due n calendar years after the first order (UTC)."""

    years: int


Step = int | Cadence | ChurnStep | OrderStep | Anniversary  # an int: a fixed duration in micros


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A rule's send window as the reference holds it: plain values as written."""

    # (day names, open "HH:MM", close "HH:MM") of each window, in file order.
    windows: tuple[tuple[tuple[str, ...], str, str], ...]
    policy: str = "defer"
    max_delay: int | None = None  # micros
    zone: str | None = None  # a fixed zone, else the customer's
    default_zone: str = "UTC"  # the file's default_timezone

    def table(self) -> dict[str, Any]:
        """The plain ``send_window`` table agents/offline/windows.py reads."""
        return {
            "windows": [{"days": list(d), "open": o, "close": c} for d, o, c in self.windows],
            "policy": self.policy,
        }


@dataclass(frozen=True, slots=True)
class Bounds:
    """Inclusive bounds; ``None`` is unbounded."""

    min: int | Decimal | None = None
    max: int | Decimal | None = None

    def holds(self, value: int | Decimal) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


@dataclass(frozen=True, slots=True)
class Audience:
    """The predicates of ``[rule.audience]``; ``None`` means "not asked"."""

    orders: Bounds | None = None
    stage: tuple[str, ...] | None = None
    spend_currency: str | None = None
    spend: Bounds | None = None
    consent: str | None = None
    days_since_first_order: Bounds | None = None


@dataclass(frozen=True, slots=True)
class RuleSpec:
    name: str
    priority: int
    steps: tuple[Step, ...]
    anchor: str
    min_orders: int
    cancel_on: tuple[str, ...] = ()
    audience: Audience = field(default_factory=Audience)
    transactional: bool = False
    arbitration: bool = False
    channel: str | None = None
    reason: str | None = None  # as written; None: the fallback template
    enabled: bool = True
    on_change: str = ON_CHANGE_RESTART
    send_window: WindowSpec | None = None
    exit: str | None = None  # a cart anchor's exit (EXIT_CART / EXIT_ANY_PRODUCT)

    @property
    def keyed(self) -> bool:
        """One ladder per cart (docs/lifecycle.md "Rules")."""
        return self.anchor == ANCHOR_CART

    @property
    def template(self) -> str:
        return FALLBACK_REASON if self.reason is None else self.reason

    @property
    def version(self) -> str:
        return rule_version(self)


@dataclass(frozen=True, slots=True)
class Lifecycle:
    at_risk_after: int
    lapsed_after: int
    priority: int


@dataclass(frozen=True, slots=True)
class GuardrailSettings:
    holdout_percent: float
    holdout_salt: str
    min_gap: int
    frequency_cap: int
    frequency_window: int
    attribution_window: int


@dataclass(frozen=True, slots=True)
class Rulebook:
    """Everything in a rules file that changes a decision."""

    rules: tuple[RuleSpec, ...]  # enabled rules, by priority
    guardrails: GuardrailSettings
    # None only for legacy settings with the inactivity rule switched off: today
    # the stage moves to at_risk/lapsed only when that rule fires.
    lifecycle: Lifecycle | None
    # The file's [model] as plain sorted JSON, numbers as floats, without fitted_at
    # (None: none): part of what makes a file a version of its own
    # (docs/prediction.md "The churn_risk rule"; agents/offline/versions.py).
    model: bytes | None = None


# --- reading a document --------------------------------------------------------------


def read_rules(document: str | Mapping[str, Any]) -> Rulebook:
    """The rulebook a rules file (its TOML text, or what ``tomllib`` made of it) declares."""
    doc = tomllib.loads(document) if isinstance(document, str) else document
    if doc.get("format") != 1:
        raise ValueError(f"format: expected 1, got {doc.get('format')!r}")
    defaults = CoreSettings()
    g = _table(doc, "guardrails")
    guardrails = GuardrailSettings(
        holdout_percent=float(g.get("holdout_percent", defaults.holdout_percent)),
        holdout_salt=str(g.get("holdout_salt", defaults.holdout_salt)),
        min_gap=_duration(g, "min_gap", defaults.min_gap, "guardrails"),
        frequency_cap=int(g.get("frequency_cap", defaults.frequency_cap)),
        frequency_window=_duration(g, "frequency_window", defaults.frequency_window, "guardrails"),
        attribution_window=_duration(
            g, "attribution_window", defaults.attribution_window, "guardrails"
        ),
    )
    arbitration = bool(g.get("arbitration", False))
    lc = _table(doc, "lifecycle")
    legacy_inactivity = defaults.inactivity.steps
    lifecycle = Lifecycle(
        at_risk_after=_duration(lc, "at_risk_after", legacy_inactivity[0], "lifecycle"),
        lapsed_after=_duration(lc, "lapsed_after", legacy_inactivity[-1], "lifecycle"),
        priority=int(lc.get("priority", LEGACY_LIFECYCLE_PRIORITY)),
    )
    default_zone = doc.get("default_timezone", "UTC")
    if not known_zone(default_zone):
        raise ValueError(f"default_timezone: unknown zone {default_zone!r}")
    file_window = (
        _window(doc["send_window"], "send_window", default_zone) if "send_window" in doc else None
    )
    models = _models(doc["model"]) if "model" in doc else {}
    rules = [
        _rule(r, f"rule[{i}]", arbitration, file_window, default_zone, models)
        for i, r in enumerate(doc.get("rule", []))
    ]
    enabled = sorted((r for r in rules if r.enabled), key=lambda r: r.priority)
    model = None
    if "model" in doc:
        plain = {k: v for k, v in doc["model"].items() if k != "fitted_at"}
        model = orjson.dumps(_floats(plain), option=orjson.OPT_SORT_KEYS)
    return Rulebook(tuple(enabled), guardrails, lifecycle, model)


def _floats(value: Any) -> Any:
    """``value`` with every number a float (1 and 1.0 are one parameter)."""
    if isinstance(value, Mapping):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _table(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected a table")
    return value


def _duration(table: Mapping[str, Any], key: str, default: int, where: str) -> int:
    if key not in table:
        return default
    try:
        value = parse_duration(table[key])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}.{key}: {exc}") from None
    return value // timedelta(microseconds=1)


def _models(raw: Any) -> dict[str, Model]:
    """The file's ``[model]``: each model kind it has a table for, in its time unit."""
    if not isinstance(raw, Mapping):
        raise ValueError("model: expected a table")
    unit = raw.get("time_unit")
    if unit not in UNITS:
        raise ValueError(f"model.time_unit: expected 'day' or 'week', got {unit!r}")
    out = {}
    for kind in KINDS:
        if kind not in raw:
            continue
        table = raw[kind]
        try:
            values = [float(table[k]) for k in ("r", "alpha", "a", "b")]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"model.{kind}: expected numbers r, alpha, a, b") from None
        if not all(v > 0 and math.isfinite(v) for v in values):
            raise ValueError(f"model.{kind}: every parameter must be a positive number")
        r, alpha, a, b = values
        out[kind] = Model(kind, r, alpha, a, b, unit)
    return out


def _window(raw: Any, where: str, default_zone: str) -> WindowSpec | None:
    """A ``send_window`` value: a table, or "none" (no window)."""
    if raw == NO_WINDOW:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a table or {NO_WINDOW!r}")
    windows = []
    for j, w in enumerate(raw.get("windows", [])):
        days = w["days"]
        names = DAY_GROUPS.get(days, (days,)) if isinstance(days, str) else tuple(days)
        if not set(names) <= set(DAY_NAMES):
            raise ValueError(f"{where}.windows[{j}].days: unknown day in {days!r}")
        windows.append((tuple(names), str(w["open"]), str(w["close"])))
    if not windows:
        raise ValueError(f"{where}.windows: no window")
    zone = raw.get("zone")
    if zone is not None and not known_zone(zone):
        raise ValueError(f"{where}.zone: unknown zone {zone!r}")
    policy = raw.get("policy", "defer")
    if policy not in ("defer", "drop"):
        raise ValueError(f"{where}.policy: expected 'defer' or 'drop', got {policy!r}")
    max_delay = _duration(raw, "max_delay", 0, where) if "max_delay" in raw else None
    return WindowSpec(tuple(windows), policy, max_delay, zone, default_zone)


def _rule(
    raw: Mapping[str, Any],
    where: str,
    file_arbitration: bool,
    file_window: WindowSpec | None = None,
    default_zone: str = "UTC",
    models: Mapping[str, Model] | None = None,
) -> RuleSpec:
    name = raw["name"]
    anchor_raw = raw.get("anchor", ANCHOR_FIRST_ORDER)
    if isinstance(anchor_raw, str):
        anchor_raw = {"kind": anchor_raw}
    kind = anchor_raw.get("kind")
    if kind not in ANCHOR_MIN_ORDERS:
        raise ValueError(f"{where}.anchor: unknown kind {kind!r}")
    model_kind = raw.get("model", DEFAULT_MODEL)
    steps: list[Step] = []
    for j, s in enumerate(raw.get("steps", [])):
        if isinstance(s, str):
            steps.append(_duration({"step": s}, "step", 0, f"{where}.steps[{j}]"))
        elif "order" in s:
            steps.append(OrderStep(int(s["order"])))
        elif "anniversary" in s:
            steps.append(Anniversary(int(s["anniversary"])))
        elif "p_alive_below" in s:
            model = (models or {}).get(model_kind)
            if model is None:
                raise ValueError(f"{where}.steps[{j}]: no [model] table for {model_kind!r}")
            if kind != ANCHOR_LAST_ORDER:
                # An order must reset the ladder (docs/prediction.md "The churn_risk rule").
                raise ValueError(f"{where}.anchor: a p_alive_below step needs last_order")
            steps.append(ChurnStep(float(s["p_alive_below"]), model))
        else:
            floor = _duration(s, "floor", 0, f"{where}.steps[{j}]")
            steps.append(Cadence(float(s["cadence"]), floor))
    cancel_on = tuple(sorted(set(raw.get("cancel_on", []))))
    transactional = bool(raw.get("transactional", False))
    for c in cancel_on:
        if c not in CANCEL_KINDS:
            raise ValueError(f"{where}.cancel_on: unknown event kind {c!r}")
    exit_ = None
    if kind == ANCHOR_CART:
        exit_ = anchor_raw.get("exit", EXIT_CART)
        if exit_ not in (EXIT_CART, EXIT_ANY_PRODUCT):
            raise ValueError(f"{where}.anchor.exit: expected 'cart' or 'any_product'")
        if "purchase" in cancel_on:
            raise ValueError(f"{where}.cancel_on: a cart anchor's exit says what an order does")
    if kind in LIFECYCLE_ANCHORS and "min_orders" in anchor_raw:
        raise ValueError(f"{where}.anchor.min_orders: not allowed for {kind}")
    on_change = raw.get("on_change", ON_CHANGE_RESTART)
    if on_change not in (ON_CHANGE_RESTART, ON_CHANGE_PIN):
        raise ValueError(f"{where}.on_change: expected 'restart' or 'pin', got {on_change!r}")
    return RuleSpec(
        name=name,
        priority=int(raw["priority"]),
        steps=tuple(steps),
        anchor=kind,
        min_orders=int(anchor_raw.get("min_orders", ANCHOR_MIN_ORDERS[kind])),
        cancel_on=cancel_on,
        audience=_audience(raw.get("audience", {}), f"{where}.audience"),
        transactional=transactional,
        # A transactional rule is never outranked (and never outranks).
        arbitration=not transactional and bool(raw.get("arbitration", file_arbitration)),
        channel=raw.get("channel"),
        reason=raw.get("reason"),
        enabled=bool(raw.get("enabled", True)),
        on_change=on_change,
        send_window=(
            _window(raw["send_window"], f"{where}.send_window", default_zone)
            if "send_window" in raw
            else file_window
        ),
        exit=exit_,
    )


def _audience(raw: Mapping[str, Any], where: str) -> Audience:
    unknown = set(raw) - {"orders", "stage", "spend", "consent", "days_since_first_order"}
    if unknown:
        raise ValueError(f"{where}: unknown predicate {sorted(unknown)[0]!r}")
    spend = raw.get("spend")
    return Audience(
        orders=_int_bounds(raw["orders"]) if "orders" in raw else None,
        stage=tuple(sorted(set(raw["stage"]))) if "stage" in raw else None,
        spend_currency=spend["currency"] if spend is not None else None,
        spend=_money_bounds(spend, f"{where}.spend") if spend is not None else None,
        consent=raw.get("consent"),
        days_since_first_order=(
            _int_bounds(raw["days_since_first_order"]) if "days_since_first_order" in raw else None
        ),
    )


def _int_bounds(raw: Mapping[str, Any]) -> Bounds:
    return Bounds(raw.get("min"), raw.get("max"))


def _money_bounds(raw: Mapping[str, Any], where: str) -> Bounds:
    def money(key: str) -> Decimal | None:
        if key not in raw:
            return None
        try:
            return Decimal(str(raw[key]))
        except InvalidOperation:
            raise ValueError(f"{where}.{key}: not a decimal: {raw[key]!r}") from None

    return Bounds(money("min"), money("max"))


# --- today's rules, from the settings ------------------------------------------------


def legacy_rulebook(core: CoreSettings) -> Rulebook:
    """Today's three rules and guardrails from ``core`` (the default file's meaning).

    Priorities 10, 20, 30 in config order, the lifecycle at 15 with the inactivity
    ladder's first and last steps (as ``RETENTION_INACTIVITY_STEPS`` sets them).
    """
    sp, ina = core.second_purchase, core.inactivity
    rules = (
        RuleSpec(
            name=RULE_SECOND_PURCHASE,
            priority=10,
            steps=sp.steps,
            anchor=ANCHOR_FIRST_ORDER,
            min_orders=1,
            cancel_on=("purchase",),
            reason=LEGACY_REASONS[RULE_SECOND_PURCHASE],
            enabled=sp.enabled,
        ),
        RuleSpec(
            name=RULE_INACTIVITY,
            priority=20,
            steps=ina.steps,
            anchor=ANCHOR_LAST_ACTIVITY,
            min_orders=1,
            reason=LEGACY_REASONS[RULE_INACTIVITY],
            enabled=ina.enabled,
        ),
        RuleSpec(
            name=RULE_OVERDUE,
            priority=30,
            steps=(Cadence(core.overdue_multiplier, core.overdue_floor),),
            anchor=ANCHOR_LAST_ORDER,
            min_orders=core.overdue_min_orders,
            reason=LEGACY_REASONS[RULE_OVERDUE],
            enabled=core.overdue_enabled,
        ),
    )
    guardrails = GuardrailSettings(
        holdout_percent=core.holdout_percent,
        holdout_salt=core.holdout_salt,
        min_gap=core.min_gap,
        frequency_cap=core.frequency_cap,
        frequency_window=core.frequency_window,
        attribution_window=core.attribution_window,
    )
    lifecycle = (
        Lifecycle(ina.steps[0], ina.steps[-1], LEGACY_LIFECYCLE_PRIORITY) if ina.enabled else None
    )
    return Rulebook(tuple(r for r in rules if r.enabled), guardrails, lifecycle)


# --- rule_version --------------------------------------------------------------------


def canonical(rule: RuleSpec) -> dict[str, Any]:
    """The rule as the module docstring's canonical dict (what ``rule_version`` hashes)."""
    a = rule.audience
    audience: dict[str, Any] = {}
    if a.orders is not None:
        audience["orders"] = _bounds_dict(a.orders)
    if a.stage is not None:
        audience["stage"] = list(a.stage)
    if a.spend is not None:
        audience["spend"] = {"currency": a.spend_currency, **_bounds_dict(a.spend)}
    if a.consent is not None:
        audience["consent"] = a.consent
    if a.days_since_first_order is not None:
        audience["days_since_first_order"] = _bounds_dict(a.days_since_first_order)
    out: dict[str, Any] = {
        "name": rule.name,
        "priority": rule.priority,
        "steps": [_step_dict(s) for s in rule.steps],
        "anchor": _anchor_dict(rule),
        "cancel_on": list(rule.cancel_on),
        "audience": audience,
        "transactional": rule.transactional,
        "arbitration": rule.arbitration,
        "channel": rule.channel,
        "reason": rule.reason,
    }
    if rule.on_change == ON_CHANGE_PIN:
        out["on_change"] = ON_CHANGE_PIN
    if rule.send_window is not None:
        out["send_window"] = _window_dict(rule.send_window)
    return out


def _anchor_dict(rule: RuleSpec) -> dict[str, Any]:
    if rule.anchor == ANCHOR_FIRST_ORDER or rule.anchor in LIFECYCLE_ANCHORS:
        out: dict[str, Any] = {"kind": rule.anchor}
        if rule.exit is not None and rule.exit != EXIT_CART:
            out["exit"] = rule.exit
        return out
    return {"kind": rule.anchor, "min_orders": rule.min_orders}


def _step_dict(step: Step) -> Any:
    if isinstance(step, OrderStep):
        return {"order": step.k}
    if isinstance(step, Anniversary):
        return {"anniversary": step.years}
    if isinstance(step, Cadence):
        return {"cadence": step.k, "floor": step.floor}
    if isinstance(step, ChurnStep):
        m = step.model
        return {
            "p_alive_below": step.p,
            "model": m.kind,
            "time_unit": m.unit,
            "r": m.r,
            "alpha": m.alpha,
            "a": m.a,
            "b": m.b,
        }
    return step


def _window_dict(w: WindowSpec) -> dict[str, Any]:
    def minutes(text: str) -> int:
        hours, mins = text.split(":")
        return int(hours) * 60 + int(mins)

    out: dict[str, Any] = {
        "windows": [
            {
                "days": sorted({DAY_NAMES.index(d) for d in days}),
                "open": minutes(o),
                "close": minutes(c),
            }
            for days, o, c in w.windows
        ],
        "policy": w.policy,
        "max_delay": w.max_delay,
        "default_zone": w.default_zone,
    }
    if w.zone is not None:
        out["zone"] = w.zone
    return out


def _bounds_dict(b: Bounds) -> dict[str, Any]:
    def plain(value: int | Decimal | None) -> int | str | None:
        return format(value.normalize(), "f") if isinstance(value, Decimal) else value

    return {"min": plain(b.min), "max": plain(b.max)}


def rule_version(rule: RuleSpec) -> str:
    """The first 12 hex digits of sha256 over the rule's canonical form."""
    text = orjson.dumps(canonical(rule), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()[:12]
