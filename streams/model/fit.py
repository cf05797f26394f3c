"""Maximum-likelihood fits and the model file (docs/prediction.md "Fitting", "The model file").

BG/NBD and MBG/NBD by the log-likelihoods of their papers, Gamma-Gamma per
currency on the repeat order days' values; each maximised with
``scipy.optimize.minimize`` over the logs of the parameters (so they stay
positive).  Customers with the same inputs are summed once, weighted.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import betaln, gammaln

from agents.core.prediction import UNIT_MICROS, ModelKind, TimeUnit
from agents.core.timeutil import iso
from streams.model.history import (
    DEFAULT_MINIMUM,
    History,
    Inputs,
    MinimumData,
    check_minimum,
    inputs_at,
)

SCHEMA = "model/1"
MODELS: tuple[ModelKind, ...] = ("bgnbd", "mbgnbd")
NBD_PARAMS = ("r", "alpha", "a", "b")
GG_PARAMS = ("p", "q", "v")
# Significant digits kept in the file: far finer than the data can tell apart,
# coarse enough that the last bits of another machine's optimiser do not change
# the version.
DIGITS = 8
# A currency needs this many customers with a repeat order day in it for its
# own Gamma-Gamma fit; fewer are listed as skipped.
MIN_SPEND_CUSTOMERS = 10

Array = NDArray[np.float64]


def customer_inputs(history: History, cutoff: int, unit: TimeUnit) -> list[Inputs]:
    """Every customer's inputs at ``cutoff``, by customer id."""
    out = []
    for cid in sorted(history.orders):
        found = inputs_at(cid, history.orders[cid], cutoff, unit)
        if found is not None:
            out.append(found)
    return out


def _grouped(inputs: Sequence[Inputs]) -> tuple[Array, Array, Array, Array]:
    triples = np.array([(i.x, i.t_x, i.T) for i in inputs], dtype=np.float64)
    unique, counts = np.unique(triples, axis=0, return_counts=True)
    return unique[:, 0], unique[:, 1], unique[:, 2], counts.astype(np.float64)


def nbd_log_likelihood(kind: ModelKind, params: Sequence[float], data: Sequence[Array]) -> float:
    """The summed log-likelihood of (x, t_x, T, weight) columns under BG/NBD
    (Fader, Hardie & Lee 2005, eq. 6) or MBG/NBD (Batislam et al. 2007)."""
    r, alpha, a, b = params
    x, t_x, T, w = data
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a3 = -(r + x) * np.log(alpha + T)
    if kind == "bgnbd":
        a2 = betaln(a, b + x) - betaln(a, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            a4 = np.where(
                x > 0,
                np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x),
                -np.inf,
            )
        # ln(e^{A3} + [x>0] e^{A4}), the B(a, b+x) term factored out of both.
        ll = a1 + a2 + np.logaddexp(a3, a4)
    else:
        a2 = betaln(a, b + x + 1) - betaln(a, b)
        a4 = np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        ll = a1 + a2 + a3 + np.logaddexp(a4, 0.0)
    return float(np.sum(w * ll))


def gamma_gamma_log_likelihood(params: Sequence[float], x: Array, m: Array) -> float:
    """Gamma-Gamma's summed log-likelihood of mean values ``m`` over ``x`` days
    (Fader, Hardie & Lee 2005, "RFM and CLV", appendix)."""
    p, q, v = params
    ll = (
        gammaln(p * x + q)
        - gammaln(p * x)
        - gammaln(q)
        + q * np.log(v)
        + (p * x - 1) * np.log(m)
        + p * x * np.log(x)
        - (p * x + q) * np.log(x * m + v)
    )
    return float(np.sum(ll))


def _maximise(objective: Callable[[Sequence[float]], float], size: int) -> tuple[Array, float]:
    """The parameters (not logs) that maximise ``objective`` and its value."""

    def negative(log_params: Array) -> float:
        value = objective(np.exp(log_params).tolist())
        return -value if math.isfinite(value) else 1e300

    start = np.zeros(size)
    first = minimize(negative, start, method="L-BFGS-B")
    # Nelder-Mead from there polishes to well below the 3 significant figures the
    # published estimates carry (tests/unit/streams/model/test_fit.py).
    best = minimize(
        negative,
        first.x,
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000, "maxfev": 40_000},
    )
    return np.exp(best.x), -float(best.fun)


def fit_nbd(kind: ModelKind, inputs: Sequence[Inputs]) -> tuple[dict[str, float], float]:
    """Maximum-likelihood (r, alpha, a, b) of ``kind`` and its log-likelihood."""
    data = _grouped(inputs)
    params, ll = _maximise(lambda p: nbd_log_likelihood(kind, p, data), 4)
    return dict(zip(NBD_PARAMS, (_round(v) for v in params), strict=True)), ll


def fit_gamma_gamma(inputs: Sequence[Inputs], currency: str) -> tuple[dict[str, float], float, int]:
    """(p, q, v), log-likelihood and customers of the currency's Gamma-Gamma fit,
    over customers with at least one repeat order day in it and a mean above 0."""
    xs, ms = [], []
    for i in inputs:
        values = i.values.get(currency)
        if values:
            mean = sum(values) / len(values)
            if mean > 0:
                xs.append(float(len(values)))
                ms.append(float(mean))
    x, m = np.array(xs), np.array(ms)
    params, ll = _maximise(lambda p: gamma_gamma_log_likelihood(p, x, m), 3)
    return dict(zip(GG_PARAMS, (_round(v) for v in params), strict=True)), ll, len(xs)


def _round(value: float) -> float:
    return float(f"{value:.{DIGITS}g}")


def fit_document(
    history: History,
    *,
    until: int,
    unit: TimeUnit,
    fitted_at: int,
    minimum: MinimumData = DEFAULT_MINIMUM,
) -> dict[str, Any]:
    """The model file (``model/1``) fitted on ``history`` up to ``until``."""
    inputs = customer_inputs(history, until, unit)
    start = min((i.first_at for i in inputs), default=until)
    weeks = (until - start) / UNIT_MICROS["week"]
    check_minimum(inputs, weeks, minimum)
    repeat = sum(1 for i in inputs if i.x > 0)
    window = {"from": iso(start), "until": iso(until), "weeks": round(weeks, 3)}
    models: dict[str, Any] = {}
    for kind in MODELS:
        params, ll = fit_nbd(kind, inputs)
        models[kind] = {
            "params": params,
            "time_unit": unit,
            "log_likelihood": round(ll, 4),
            "customers": len(inputs),
            "repeat_buyers": repeat,
        }
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "fitted_at": iso(fitted_at),
        "data": {**window, "customers": len(inputs), "repeat_buyers": repeat},
        "models": models,
        "gamma_gamma": _spend_models(inputs),
    }
    doc["version"] = model_version(doc)
    return doc


def _spend_models(inputs: Sequence[Inputs]) -> dict[str, Any]:
    currencies = sorted({c for i in inputs for c in i.values})
    out: dict[str, Any] = {}
    for currency in currencies:
        buyers = sum(1 for i in inputs if i.values.get(currency))
        if buyers < MIN_SPEND_CUSTOMERS:
            out[currency] = {
                "skipped": f"{buyers} customers with a repeat order (need {MIN_SPEND_CUSTOMERS})"
            }
            continue
        params, ll, customers = fit_gamma_gamma(inputs, currency)
        out[currency] = {
            "params": params,
            "log_likelihood": round(ll, 4),
            "customers": customers,
        }
    return out


def model_version(doc: dict[str, Any]) -> str:
    """The first 12 hex digits of the SHA-256 of the document without its version,
    keys sorted: the same fit gives the same version."""
    content = {k: v for k, v in doc.items() if k != "version"}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def render_json(doc: dict[str, Any]) -> str:
    """The model file's text: keys sorted, two-space indent."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode() + "\n"


def render_toml(doc: dict[str, Any]) -> str:
    """The ``[model]`` table of a rules file for the model file ``doc``, ready to
    paste above the rules and publish with ``retention rules publish``
    (docs/prediction.md "Publishing a model").  Gamma-Gamma currencies the fit
    skipped are left out, with the reason as a comment."""
    data = doc["data"]
    kinds = [k for k in MODELS if k in doc["models"]]
    units = {doc["models"][k]["time_unit"] for k in kinds}
    if len(units) != 1:
        raise ValueError(f"the models of one file need one time unit, got {sorted(units)}")
    lines = [
        f"# retention model fit: {data['customers']} customers "
        f"({data['repeat_buyers']} with a repeat order day), {data['from']} to {data['until']}",
        "[model]",
        f'version = "{doc["version"]}"',
        f'time_unit = "{units.pop()}"',
        f'fitted_at = "{doc["fitted_at"]}"',
    ]
    for kind in sorted(kinds, key=lambda k: k != "mbgnbd"):  # the churn rule's default first
        params = doc["models"][kind]["params"]
        inline = ", ".join(f"{name} = {_toml_float(params[name])}" for name in NBD_PARAMS)
        lines.append(f"{kind} = {{ {inline} }}")
    spend = doc.get("gamma_gamma", {})
    fitted = {c: g for c, g in sorted(spend.items()) if "params" in g}
    if fitted:
        lines += ["", "[model.gamma_gamma]"]
        for currency, g in fitted.items():
            inline = ", ".join(f"{n} = {_toml_float(g['params'][n])}" for n in GG_PARAMS)
            lines.append(f"{currency} = {{ {inline} }}")
    for currency, g in sorted(spend.items()):
        if "skipped" in g:
            lines.append(f"# {currency}: no Gamma-Gamma fit ({g['skipped']})")
    return "\n".join(lines) + "\n"


def _toml_float(value: float) -> str:
    """A TOML float: Python's shortest repr, which TOML reads back to the same double."""
    text = repr(float(value))
    if not math.isfinite(value):
        raise ValueError(f"a model parameter must be finite, got {value}")
    return text
