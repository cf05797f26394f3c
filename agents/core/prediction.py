"""Buy-till-you-die scores in closed form: BG/NBD, MBG/NBD and Gamma-Gamma (docs/prediction.md).

Plain Python arithmetic only (powers, logs and one series), no scipy or numpy, so
a worker can score a customer at every order; fitting the parameters is the CLI's
job (:mod:`streams.model.fit`).

A customer's inputs, in the model's time unit (a day or a week):

* ``x``: repeat order days - the distinct UTC days with an order, less the day of
  the first order (two orders on one day count once, as the literature counts);
* ``t_x``: the time from the first order to the last one (0 when ``x`` is 0);
* ``T``: the time from the first order to the instant scored.

BG/NBD (Fader, Hardie & Lee 2005) judges a customer who never came back alive for
ever; MBG/NBD (Batislam, Denizel & Filiztekin 2007) lets a one-time buyer drop
out too (docs/prediction.md "The models").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

MICROS_PER_MINUTE = 60_000_000
MICROS_PER_MILLI = 1_000
MICROS_PER_DAY = 86_400_000_000

TimeUnit = Literal["day", "week"]
ModelKind = Literal["bgnbd", "mbgnbd"]
UNIT_MICROS: dict[TimeUnit, int] = {"day": MICROS_PER_DAY, "week": 7 * MICROS_PER_DAY}

# The Gauss series stops when the bound on what is left is below this share of
# the sum; past MAX_TERMS it refuses rather than return a wrong figure.
SERIES_TOLERANCE = 1e-15
MAX_TERMS = 200_000


@dataclass(frozen=True, slots=True)
class NbdParams:
    """The four parameters of BG/NBD or MBG/NBD: purchase rate ~ Gamma(r, alpha),
    drop-out probability ~ Beta(a, b); ``kind`` says which model they belong to."""

    kind: ModelKind
    r: float
    alpha: float
    a: float
    b: float
    unit: TimeUnit = "week"

    def __post_init__(self) -> None:
        if min(self.r, self.alpha, self.a, self.b) <= 0:
            raise ValueError(f"{self.kind} parameters must be positive, got {self}")


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """Gamma-Gamma spend parameters (Fader, Hardie & Lee 2005, "RFM and CLV")."""

    p: float
    q: float
    v: float

    def __post_init__(self) -> None:
        if min(self.p, self.q, self.v) <= 0:
            raise ValueError(f"Gamma-Gamma parameters must be positive, got {self}")


@dataclass(frozen=True, slots=True)
class Crossing:
    """When P(alive) falls to a threshold with no new order.

    ``status``: ``"at"`` (``at`` is the instant in micros, rounded up to the whole
    minute), ``"crossed"`` (already at or below it at the instant asked about; a
    caller records the step as skipped, never fired) or ``"never"`` (BG/NBD
    keeps a customer with no repeat order alive for ever)."""

    status: Literal["at", "crossed", "never"]
    at: int | None = None


def _ratio(params: NbdParams, x: int) -> float:
    """The odds factor of "dropped out after the last order": a/(b+x-1) (BG/NBD,
    only for x > 0) or a/(b+x) (MBG/NBD)."""
    if params.kind == "mbgnbd":
        return params.a / (params.b + x)
    if x == 0:
        return 0.0
    return params.a / (params.b + x - 1)


def p_alive(params: NbdParams, x: int, t_x: float, T: float) -> float:
    """P(alive | x, t_x, T) (docs/prediction.md "The models")."""
    _check_inputs(x, t_x, T)
    c = _ratio(params, x)
    if c == 0.0:
        return 1.0
    # log form: ((alpha+T)/(alpha+t_x))^(r+x) overflows long before the result does.
    log_odds = math.log(c) + (params.r + x) * (
        math.log(params.alpha + T) - math.log(params.alpha + t_x)
    )
    if log_odds > 700:
        return 0.0
    return 1.0 / (1.0 + math.exp(log_odds))


def crossing_time(params: NbdParams, x: int, t_x: float, p: float) -> float | None:
    """T* in the model's unit, since the first order, at which P(alive) = ``p``
    with no new order: (alpha+t_x)((1/p-1)/c)^(1/(r+x)) - alpha, c the odds factor.
    None: it never falls (BG/NBD, x = 0).  It can be below t_x: already below p
    just after the last order."""
    log_odds = _threshold_log_odds(p)
    _check_inputs(x, t_x, t_x)
    return _root(params, x, t_x, log_odds)


def _threshold_log_odds(p: float) -> float:
    if not 0.0 < p < 1.0:
        raise ValueError(f"a threshold must be in (0, 1), got {p}")
    return math.log(1.0 / p - 1.0)


def _root(params: NbdParams, x: int, t_x: float, log_odds: float) -> float | None:
    """:func:`crossing_time` with log(1/p - 1) given, inputs already checked."""
    c = _ratio(params, x)
    if c == 0.0:
        return None
    exponent = (log_odds - math.log(c)) / (params.r + x)
    return (params.alpha + t_x) * math.exp(exponent) - params.alpha


def _instant(first_at: int, root: float, unit: int) -> int:
    # The root read to the whole millisecond first (docs/prediction.md "Crossing"):
    # two libms an ulp apart, or exp/log against pow, give roots a few microseconds
    # apart, which straddle a minute when the root is a round instant.
    return first_at + round(root * unit / MICROS_PER_MILLI) * MICROS_PER_MILLI


def _minute_up(instant: int) -> int:
    return -(-instant // MICROS_PER_MINUTE) * MICROS_PER_MINUTE


def crossing_at(
    params: NbdParams, x: int, first_at: int, last_at: int, p: float, since: int
) -> Crossing:
    """The instant (micros) P(alive) falls to ``p``, rounded up to the whole minute
    (so workers whose libm differ by an ulp agree, docs/prediction.md "Crossing"),
    for a customer whose first order was at ``first_at`` and last at ``last_at``
    (``first_at`` when x = 0).  A root at or before ``since`` (the anchor, or the
    instant a model takes effect) is ``crossed``."""
    unit = UNIT_MICROS[params.unit]
    t_x = (last_at - first_at) / unit if x > 0 else 0.0
    root = crossing_time(params, x, t_x, p)
    if root is None:
        return Crossing("never")
    instant = _instant(first_at, root, unit)
    if instant <= since:
        return Crossing("crossed")
    return Crossing("at", _minute_up(instant))


class CrossingSince:
    """:func:`crossing_at` asked at the last order (a churn_risk step's question,
    docs/prediction.md "The churn_risk rule") for one model and one threshold, as a
    duration, with log(1/p - 1) and the unit worked out once: the same root, read the
    same way (property-tested; docs/performance.md "The core fast paths")."""

    __slots__ = ("_log_odds", "_params", "_unit")

    def __init__(self, params: NbdParams, p: float) -> None:
        self._log_odds = _threshold_log_odds(p)
        self._params = params
        self._unit = UNIT_MICROS[params.unit]

    def after(self, x: int, first_at: int, last_at: int) -> int | None:
        """The crossing's instant less ``last_at`` (``"at"``), 0 (``"crossed"``) or
        None (``"never"``) of ``crossing_at(params, x, first_at, last_at, p,
        last_at)``; the same errors."""
        unit = self._unit
        t_x = (last_at - first_at) / unit if x > 0 else 0.0
        if x < 0 or t_x < 0:
            _check_inputs(x, t_x, t_x)
        root = _root(self._params, x, t_x, self._log_odds)
        if root is None:
            return None
        instant = _instant(first_at, root, unit)
        return 0 if instant <= last_at else _minute_up(instant) - last_at


def _check_inputs(x: int, t_x: float, T: float) -> None:
    if x < 0 or t_x < 0 or t_x > T or (x == 0 and t_x != 0):
        raise ValueError(f"need x >= 0, 0 <= t_x <= T and t_x = 0 when x = 0: {x}, {t_x}, {T}")


def hyp2f1(a: float, b: float, c: float, z: float) -> float:
    """Gauss's hypergeometric function 2F1(a, b; c; z) by its series, for |z| < 1
    and c not 0, -1, -2, ...  Accurate to 1e-9 or better where c > a, b (all that
    :func:`expected_orders` asks for); elsewhere, with z < 0, terms can cancel
    and digits be lost.

    Term n+1 is term n times (a+n)(b+n)/((c+n)(n+1)) z.  Once that ratio's size
    is below 1 and n is past the point where it can rise again towards |z|, the
    terms left add up to at most |term| rho/(1-rho) with rho the larger of the two;
    the sum stops when that bound is below ``SERIES_TOLERANCE`` of it.  A negative
    z is first taken to z/(z-1) by Pfaff's transformation.
    """
    if not abs(z) < 1.0:
        raise ValueError(f"2F1 series needs |z| < 1, got {z}")
    if c <= 0 and c == int(c):
        raise ValueError(f"2F1 is undefined for c = {c}")
    if z < 0:
        # Pfaff: the series at z/(z-1), in [0, 1/2), does not alternate with n;
        # of its two forms, the one whose new parameter is less negative
        # alternates least (docs/prediction.md "Expected orders").
        if min(c - b, 0.0) < min(c - a, 0.0):
            a, b = b, a
        return math.pow(1.0 - z, -a) * _series(a, c - b, c, z / (z - 1.0))
    return _series(a, b, c, z)


def _series(a: float, b: float, c: float, z: float) -> float:
    term = 1.0
    total = 1.0
    # Past this n each factor (a+n)/(c+n), (b+n)/(n+1) is monotone in n.
    settled = 2.0 * (abs(a) + abs(b) + abs(c)) + 2.0
    for n in range(MAX_TERMS):
        ratio = (a + n) * (b + n) / ((c + n) * (n + 1)) * z
        term *= ratio
        total += term
        if term == 0.0:
            return total
        step = abs((a + n + 1) * (b + n + 1) / ((c + n + 1) * (n + 2)) * z)
        if n + 1 > settled:
            rho = max(step, abs(z))
            if rho < 1.0 and abs(term) * rho / (1.0 - rho) <= SERIES_TOLERANCE * abs(total):
                return total
    raise ArithmeticError(f"2F1({a}, {b}; {c}; {z}) did not converge in {MAX_TERMS} terms")


def expected_orders(params: NbdParams, x: int, t_x: float, T: float, t: float) -> float:
    """Expected repeat order days in the next ``t`` units, given (x, t_x, T): the
    conditional expectation of Fader, Hardie & Lee (2005, eq. 10) for BG/NBD and of
    Batislam et al. (2007) for MBG/NBD (docs/prediction.md "Expected orders").

    Written with Euler's transformation, (1-z)^(r+x) 2F1(r+x, b'; c'; z) =
    (1-z)^(c'-b') 2F1(c'-r-x, c'-b'; c'; z), whose series keeps small parameters
    however many orders a customer has (the plain form overflows for a daily buyer).
    """
    _check_inputs(x, t_x, T)
    if t < 0:
        raise ValueError(f"a horizon must be >= 0, got {t}")
    if t == 0:
        return 0.0
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    if abs(a - 1.0) < 1e-9:
        # A removable singularity (0/0); a hair off it gives the limit.
        a = 1.0 + 1e-9
    z = t / (alpha + T + t)
    if params.kind == "mbgnbd":
        c = a + b + x
        lead = (a + b + x) / (a - 1.0)
    else:
        c = a + b + x - 1.0
        lead = (a + b + x - 1.0) / (a - 1.0)
    # c - (b+x) for BG/NBD and c - (b+x+1) for MBG/NBD are both a - 1.
    tail = math.pow(1.0 - z, a - 1.0) * hyp2f1(c - r - x, a - 1.0, c, z)
    return lead * (1.0 - tail) * p_alive(params, x, t_x, T)


def expected_order_value(params: GammaGammaParams, x: int, mean_value: float) -> float:
    """Gamma-Gamma's expected average order value of a customer with ``x`` repeat
    order days averaging ``mean_value``: p(v + x m)/(p x + q - 1); for x = 0 the
    population mean p v/(q - 1).  Needs q > 1 (a finite mean)."""
    p, q, v = params.p, params.q, params.v
    if q <= 1.0:
        raise ValueError(f"Gamma-Gamma with q = {q} <= 1 has no finite mean order value")
    if x < 0 or mean_value < 0:
        raise ValueError(f"need x >= 0 and a mean value >= 0: {x}, {mean_value}")
    return p * (v + x * mean_value) / (p * x + q - 1.0)
