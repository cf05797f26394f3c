"""The file's ``[model]`` and the churn_risk steps that read it, checked
(docs/rules.md "Checks", docs/prediction.md "The churn_risk rule").

``[model]`` is what ``retention model fit --format toml`` prints: a version, a time
unit, NBD parameters per kind (``mbgnbd``, ``bgnbd``) and Gamma-Gamma parameters per
currency.  A rule whose steps are ``{ p_alive_below = p }`` needs a usable table for
its ``model`` kind, thresholds in (0, 1) strictly decreasing, no duration step beside
them and the ``last_order`` anchor (every order restarts its ladder).
"""

from __future__ import annotations

import functools
import math
from typing import Any, cast

from agents.core.prediction import GammaGammaParams, NbdParams, TimeUnit
from agents.core.rules.abstract import Anchor, Step
from agents.core.rules.anchors import LastOrder
from agents.core.rules.check_base import BaseChecker, Where, one_based
from agents.core.rules.model import MAX_LADDER_STEPS, ModelValues
from agents.core.rules.steps import PAliveBelow

MODEL_KEYS = ("version", "time_unit", "fitted_at", "mbgnbd", "bgnbd", "gamma_gamma")
MODEL_KINDS = ("mbgnbd", "bgnbd")
DEFAULT_MODEL_KIND = "mbgnbd"
TIME_UNITS = ("day", "week")
NBD_KEYS = ("r", "alpha", "a", "b")
GAMMA_GAMMA_KEYS = ("p", "q", "v")
CHURN_KEY = "p_alive_below"
MAX_MODEL_VERSION = 64


def is_churn_steps(raw: Any) -> bool:
    """Whether a rule's steps are (some of them) churn_risk thresholds."""
    return isinstance(raw, list) and any(isinstance(s, dict) and CHURN_KEY in s for s in raw)


class ModelChecks(BaseChecker):
    """``[model]`` and a rule's churn_risk steps."""

    # The file's model once read (None: none, or one with problems).
    model_values: ModelValues | None = None

    def model(self, raw: Any) -> ModelValues | None:
        header = one_based(self.lines.section("model"))
        d = self.table(raw, "model", MODEL_KEYS, header)
        at: Where = functools.partial(self.lines.key, header)
        before = len(self.problems)
        version = d.get("version")
        if not isinstance(version, str) or not 0 < len(version) <= MAX_MODEL_VERSION:
            self.add(
                "model.version",
                f"the model needs its version: a text of 1 to {MAX_MODEL_VERSION} characters "
                "(retention model fit prints it)",
                at("version") if "version" in d else header,
            )
        unit = d.get("time_unit")
        if unit not in TIME_UNITS:
            self.add(
                "model.time_unit",
                f"time_unit is {' or '.join(repr(u) for u in TIME_UNITS)}: the unit the "
                "parameters were fitted in",
                at("time_unit") if "time_unit" in d else header,
            )
            unit = "week"
        fitted_at = d.get("fitted_at")
        if fitted_at is not None and not isinstance(fitted_at, str):
            self.add("model.fitted_at", "fitted_at is a text (a UTC instant)", at("fitted_at"))
            fitted_at = None
        kinds: dict[str, NbdParams] = {}
        for kind in MODEL_KINDS:
            if kind in d:
                params = self.nbd(d[kind], kind, cast(TimeUnit, unit), at(kind))
                if params is not None:
                    kinds[kind] = params
        if not any(kind in d for kind in MODEL_KINDS):
            self.add(
                "model",
                f"the model has no parameters: write {' or '.join(MODEL_KINDS)} = "
                "{ r = ..., alpha = ..., a = ..., b = ... }",
                header,
            )
        gamma_gamma = self.gamma_gamma(d.get("gamma_gamma", {}))
        if len(self.problems) > before:
            return None
        assert isinstance(version, str)
        return ModelValues(version, cast(TimeUnit, unit), kinds, gamma_gamma, fitted_at)

    def nbd(self, raw: Any, kind: str, unit: TimeUnit, line: int | None) -> NbdParams | None:
        path = f"model.{kind}"
        if not isinstance(raw, dict):
            self.add(path, f"{kind} is a table {{ r = ..., alpha = ..., a = ..., b = ... }}", line)
            return None
        values = self.positives(raw, path, NBD_KEYS, line)
        if values is None:
            return None
        r, alpha, a, b = values
        return NbdParams(cast(Any, kind), r, alpha, a, b, unit)

    def gamma_gamma(self, raw: Any) -> dict[str, GammaGammaParams]:
        line = one_based(self.lines.section("model.gamma_gamma"))
        if not isinstance(raw, dict):
            self.add("model.gamma_gamma", "gamma_gamma is a table of currencies", line)
            return {}
        out: dict[str, GammaGammaParams] = {}
        for currency, params in raw.items():
            path = f"model.gamma_gamma.{currency}"
            if not (len(currency) == 3 and currency.isascii() and currency.isupper()):
                self.add(path, f"{currency!r} is not a currency code (3 capital letters)", line)
                continue
            if not isinstance(params, dict):
                self.add(path, "a currency's parameters are { p = ..., q = ..., v = ... }", line)
                continue
            values = self.positives(params, path, GAMMA_GAMMA_KEYS, line)
            if values is not None:
                out[currency] = GammaGammaParams(*values)
        return out

    def positives(
        self, raw: dict[str, Any], path: str, keys: tuple[str, ...], line: int | None
    ) -> list[float] | None:
        """The values of ``keys``, each a finite number > 0; None after any problem."""
        before = len(self.problems)
        for key in raw:
            if key not in keys:
                self.add(f"{path}.{key}", f"unknown parameter {key!r} (known: {', '.join(keys)})")
        out: list[float] = []
        for key in keys:
            value = raw.get(key)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                self.add(f"{path}.{key}", f"{key} is a number greater than 0", line)
                continue
            out.append(float(value))
        return None if len(self.problems) > before else out

    # --- a churn_risk rule ---------------------------------------------------------------

    def churn_steps(
        self, raw: list[Any], kind: Any, path: str, line: int | None
    ) -> tuple[Step, ...]:
        """The rule's ``p_alive_below`` steps under the model of its ``kind``."""
        where = f"{path}.steps"
        if len(raw) > MAX_LADDER_STEPS:
            self.add(where, f"{len(raw)} steps: a rule has at most {MAX_LADDER_STEPS}", line)
        params = self.churn_model(kind, path, line)
        out: list[Step] = []
        previous: float | None = None
        for i, item in enumerate(raw, 1):
            at = f"{where}[{i}]"
            if not isinstance(item, dict) or CHURN_KEY not in item:
                self.add(
                    at,
                    "p_alive_below steps cannot be mixed with other steps in one rule: a "
                    "churn_risk ladder is thresholds of P(alive) only",
                    line,
                )
                continue
            for key in item:
                if key != CHURN_KEY:
                    self.add(f"{at}.{key}", f"a p_alive_below step has no setting {key!r}", line)
            p = item[CHURN_KEY]
            if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p < 1:
                self.add(
                    f"{at}.{CHURN_KEY}",
                    "p_alive_below is a probability strictly between 0 and 1, e.g. 0.6",
                    line,
                )
                continue
            if previous is not None and p >= previous:
                self.add(
                    f"{at}.{CHURN_KEY}",
                    f"{p:g} is not below the step before it ({previous:g}): thresholds must "
                    "be strictly decreasing (P(alive) only falls between orders)",
                    line,
                )
            previous = float(p)
            if params is not None:
                out.append(PAliveBelow(float(p), params))
        return tuple(out)

    def churn_model(self, kind: Any, path: str, line: int | None) -> NbdParams | None:
        if kind not in MODEL_KINDS:
            self.add(
                f"{path}.model",
                f"model is {' or '.join(repr(k) for k in MODEL_KINDS)} (default "
                f"{DEFAULT_MODEL_KIND!r})",
                self.key_line(line, "model"),
            )
            return None
        model = self.model_values
        params = None if model is None else model.kinds.get(kind)
        if params is None:
            self.add(
                f"{path}.steps",
                f"p_alive_below steps need a usable {kind} model: add a [model] section with "
                f"{kind} = {{ r = ..., alpha = ..., a = ..., b = ... }} (retention model fit "
                "--format toml prints one)",
                line,
            )
        return params

    def churn_anchor(self, anchor: Anchor | None, path: str, line: int | None) -> None:
        if anchor is not None and not isinstance(anchor, LastOrder):
            self.add(
                f"{path}.anchor",
                'p_alive_below steps need anchor = "last_order": every order restarts the '
                "ladder with the customer's new P(alive)",
                line,
            )
