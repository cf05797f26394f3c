"""A customer's scores at an instant: P(alive), expected orders, predicted value.

(docs/prediction.md "Scores").  Computed at read time, never stored: with no new
order a score decays, so the lookup scores at its partition's clock and a report
at its own clock (``as_of``).  Pure: the model comes from the rules file's
``[model]`` table (docs/prediction.md "Publishing a model"), the inputs from the
customer's facts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from agents.core.prediction import (
    MICROS_PER_DAY,
    UNIT_MICROS,
    GammaGammaParams,
    NbdParams,
    TimeUnit,
    expected_order_value,
    expected_orders,
    p_alive,
)
from agents.core.timeutil import iso, parse_timestamp, to_micros

# The kind shown as "the" P(alive) when a model has both: MBG/NBD lets a one-time
# buyer drop out, and it is a churn_risk rule's default (docs/prediction.md "Scores").
KIND_ORDER = ("mbgnbd", "bgnbd")
HORIZON_DAYS = (30, 90)
# Digits shown: scores are estimates, six decimals are more than they can tell.
DIGITS = 6


class ScoreModel(Protocol):
    """What scoring reads of a rules file's parsed ``[model]`` table."""

    @property
    def version(self) -> str: ...
    @property
    def time_unit(self) -> str: ...
    @property
    def kinds(self) -> Mapping[str, NbdParams]: ...
    @property
    def gamma_gamma(self) -> Mapping[str, GammaGammaParams]: ...


@dataclass(frozen=True, slots=True)
class ScoreInputs:
    """A customer's inputs (docs/prediction.md "Scores"): distinct order days, the
    first and last order (micros), and per currency the spend and orders."""

    order_days: int
    first_order_at: int
    last_order_at: int
    spend: Mapping[str, str]
    order_currencies: Mapping[str, int]

    @property
    def x(self) -> int:
        """Repeat order days: distinct order days less the first."""
        return self.order_days - 1


class HasFacts(Protocol):
    @property
    def first_order_at(self) -> int | None: ...
    @property
    def last_order_at(self) -> int | None: ...
    @property
    def order_times(self) -> list[int]: ...
    @property
    def orders(self) -> int: ...
    @property
    def spend(self) -> dict[str, str]: ...
    @property
    def order_currencies(self) -> dict[str, int]: ...


def inputs_of(state: HasFacts) -> ScoreInputs | None:
    """The score inputs of a customer's facts; None without an order.

    ``order_days`` is the state's exact count of distinct order days
    (docs/prediction.md "A customer's inputs"); a state without it counts the distinct days of
    its kept order times, exact while it holds every order (docs/prediction.md "Scores")."""
    first, last = state.first_order_at, state.last_order_at
    if first is None or last is None or state.orders == 0:
        return None
    days: int | None = getattr(state, "order_days", None)
    if days is None:
        if len(state.order_times) < state.orders:
            return None
        days = len({t // MICROS_PER_DAY for t in state.order_times})
    if days < 1:
        return None
    return ScoreInputs(days, first, last, state.spend, state.order_currencies)


def scores(state: HasFacts, model: ScoreModel | None, as_of: int) -> dict[str, Any] | None:
    """The customer's scores at ``as_of`` (micros) under ``model``; None without a
    model or an order (docs/prediction.md "Scores")."""
    if model is None:
        return None
    inputs = inputs_of(state)
    if inputs is None:
        return None
    return score_inputs(inputs, model, as_of)


def score_inputs(inputs: ScoreInputs, model: ScoreModel, as_of: int) -> dict[str, Any] | None:
    """:func:`scores` of inputs already read (the read model stores them)."""
    kinds = [k for k in KIND_ORDER if k in model.kinds]
    if not kinds:
        return None
    unit = UNIT_MICROS["week"] if model.time_unit == "week" else UNIT_MICROS["day"]
    x = inputs.x
    # An instant before the last order (a clock behind a late order) scores at it.
    at = max(as_of, inputs.last_order_at)
    t_x = (inputs.last_order_at - inputs.first_order_at) / unit if x > 0 else 0.0
    T = (at - inputs.first_order_at) / unit
    by_kind = {k: round(p_alive(model.kinds[k], x, t_x, T), DIGITS) for k in kinds}
    main = model.kinds[kinds[0]]
    out: dict[str, Any] = {
        "model_version": model.version,
        "as_of": iso(as_of),
        "kind": kinds[0],
        "p_alive": by_kind[kinds[0]],
        "p_alive_by_kind": by_kind,
    }
    for days in HORIZON_DAYS:
        t = days * MICROS_PER_DAY / unit
        out[f"expected_orders_{days}d"] = round(expected_orders(main, x, t_x, T, t), DIGITS)
    out["predicted_value"] = _values(inputs, model.gamma_gamma)
    return out


def _values(inputs: ScoreInputs, gamma_gamma: Mapping[str, GammaGammaParams]) -> dict[str, float]:
    """Gamma-Gamma's expected order value per currency the model and the customer
    both have: x repeat order days, the mean order value spend / orders."""
    out: dict[str, float] = {}
    for currency in sorted(gamma_gamma):
        orders = inputs.order_currencies.get(currency, 0)
        spent = inputs.spend.get(currency)
        if orders <= 0 or spent is None:
            continue
        try:
            mean = float(Decimal(spent) / orders)
        except (InvalidOperation, ValueError):
            continue
        params = gamma_gamma[currency]
        if params.q <= 1.0 or mean < 0:
            continue  # no finite mean order value (prediction.expected_order_value)
        out[currency] = round(expected_order_value(params, inputs.x, mean), 2)
    return out


class _Versioned(Protocol):
    @property
    def applied_at(self) -> int | None: ...
    @property
    def rules(self) -> Any: ...


def model_at(versions: Sequence[_Versioned], as_of: int) -> ScoreModel | None:
    """The ``[model]`` of the rules version in force at ``as_of``: the newest one
    applied at or before it (the seed, ``applied_at`` None, from the beginning), as a
    model switches with its rules file (docs/prediction.md "Publishing a model")."""
    found = None
    for version in versions:
        if version.applied_at is None or version.applied_at <= as_of:
            found = version
    if found is None:
        return None
    model: ScoreModel | None = getattr(found.rules, "model", None)
    return model


@dataclass(frozen=True, slots=True)
class StoredModel:
    """A model as the read model stores it beside a customer's inputs."""

    version: str
    time_unit: str
    kinds: Mapping[str, NbdParams]
    gamma_gamma: Mapping[str, GammaGammaParams]


def stored_inputs(inputs: ScoreInputs, model: ScoreModel) -> dict[str, Any] | None:
    """What the Redis read model keeps of a customer's scores (schemas/readmodel.md
    "Fields"): the inputs and the model's parameters, not the scores, so that a
    reader scores at its own instant (they decay).  Only the currencies the model
    has a Gamma-Gamma for; None when the model has no NBD kind."""
    kinds = [k for k in KIND_ORDER if k in model.kinds]
    if not kinds:
        return None
    spend = {
        c: [inputs.spend[c], inputs.order_currencies[c]]
        for c in sorted(model.gamma_gamma)
        if c in inputs.spend and inputs.order_currencies.get(c, 0) > 0
    }
    return {
        "model_version": model.version,
        "time_unit": model.time_unit,
        "x": inputs.x,
        "first_order_at": iso(inputs.first_order_at),
        "last_order_at": iso(inputs.last_order_at),
        "spend": spend,
        "models": {
            k: {"r": p.r, "alpha": p.alpha, "a": p.a, "b": p.b}
            for k in kinds
            for p in (model.kinds[k],)
        },
        "gamma_gamma": {
            c: {"p": g.p, "q": g.q, "v": g.v} for c in spend for g in (model.gamma_gamma[c],)
        },
    }


def scores_of_stored(stored: Mapping[str, Any], as_of: int) -> dict[str, Any] | None:
    """:func:`scores` from what :func:`stored_inputs` kept, at ``as_of``: what a
    reader of the read model computes (schemas/readmodel.md "Fields")."""
    unit: TimeUnit = "week" if stored["time_unit"] == "week" else "day"
    model = StoredModel(
        stored["model_version"],
        unit,
        {k: NbdParams(k, unit=unit, **p) for k, p in stored["models"].items()},
        {c: GammaGammaParams(**g) for c, g in stored["gamma_gamma"].items()},
    )
    inputs = ScoreInputs(
        stored["x"] + 1,
        to_micros(parse_timestamp(stored["first_order_at"])),
        to_micros(parse_timestamp(stored["last_order_at"])),
        {c: s for c, (s, _) in stored["spend"].items()},
        {c: n for c, (_, n) in stored["spend"].items()},
    )
    return score_inputs(inputs, model, as_of)
