"""Does a fit predict?  Calibration against holdout (docs/prediction.md "Evaluate").

The models are fitted on the orders up to the calibration end T1 and each
customer first seen by then is scored at T1; the holdout is (T1, T2].  Compared:

* expected repeat order days in the holdout (the conditional expectation of each
  model) against the actual ones, in total and per calibration frequency group
  (x = 0, 1, ..., 6, 7+): the paper's conditional-expectation check;
* per P(alive) decile at T1 (customers ranked by the score, ties by id, cut into
  ten groups of equal size), how many customers ordered again in the holdout.
"""

from __future__ import annotations

from typing import Any

from agents.core.prediction import (
    UNIT_MICROS,
    NbdParams,
    TimeUnit,
    expected_orders,
    p_alive,
)
from agents.core.timeutil import iso
from streams.model.fit import MODELS, customer_inputs, fit_document
from streams.model.history import DEFAULT_MINIMUM, History, MinimumData, repeat_days_between

SCHEMA = "model_evaluation/1"
TOP_GROUP = 7  # frequency groups 0..6 and 7+
DECILES = 10


def evaluate(
    history: History,
    *,
    calibration_end: int,
    until: int,
    unit: TimeUnit,
    minimum: MinimumData = DEFAULT_MINIMUM,
) -> dict[str, Any]:
    """The ``model_evaluation/1`` document (raises NotEnoughData like a fit)."""
    if until <= calibration_end:
        raise ValueError("--until must be after --calibration-end")
    model = fit_document(
        history, until=calibration_end, unit=unit, fitted_at=calibration_end, minimum=minimum
    )
    inputs = customer_inputs(history, calibration_end, unit)
    horizon = (until - calibration_end) / UNIT_MICROS[unit]
    actual = {
        i.customer_id: repeat_days_between(history.orders[i.customer_id], calibration_end, until)
        for i in inputs
    }
    scores: dict[str, dict[str, tuple[float, float]]] = {}
    for kind in MODELS:
        params = NbdParams(kind, unit=unit, **model["models"][kind]["params"])
        scores[kind] = {
            i.customer_id: (
                p_alive(params, i.x, i.t_x, i.T),
                expected_orders(params, i.x, i.t_x, i.T, horizon),
            )
            for i in inputs
        }
    groups = []
    for g in range(TOP_GROUP + 1):
        members = [i.customer_id for i in inputs if min(i.x, TOP_GROUP) == g]
        groups.append(
            {
                "x": f"{g}+" if g == TOP_GROUP else str(g),
                "customers": len(members),
                "actual": sum(actual[c] for c in members),
                "expected": {k: round(sum(scores[k][c][1] for c in members), 2) for k in MODELS},
            }
        )
    return {
        "schema": SCHEMA,
        "calibration_end": iso(calibration_end),
        "until": iso(until),
        "time_unit": unit,
        "holdout_length": round(horizon, 4),
        "model": model,
        "customers": len(inputs),
        "totals": {
            "actual": sum(actual.values()),
            "expected": {k: round(sum(s[1] for s in scores[k].values()), 2) for k in MODELS},
        },
        "by_frequency": groups,
        "by_p_alive": {k: _deciles(scores[k], actual) for k in MODELS},
    }


def _deciles(
    scores: dict[str, tuple[float, float]], actual: dict[str, int]
) -> list[dict[str, Any]]:
    ranked = sorted(scores, key=lambda c: (scores[c][0], c))
    n = len(ranked)
    out = []
    for k in range(DECILES):
        members = ranked[k * n // DECILES : (k + 1) * n // DECILES]
        if not members:
            continue
        again = sum(1 for c in members if actual[c] > 0)
        alive = [scores[c][0] for c in members]
        out.append(
            {
                "decile": k + 1,
                "customers": len(members),
                "p_alive_mean": round(sum(alive) / len(alive), 4),
                "p_alive_min": round(min(alive), 4),
                "p_alive_max": round(max(alive), 4),
                "ordered_again": again,
                "share_ordered_again": round(again / len(members), 4),
            }
        )
    return out


def render_table(doc: dict[str, Any]) -> str:
    """The evaluation as text: totals, frequency groups, P(alive) deciles."""
    totals = doc["totals"]
    lines = [
        f"Model evaluation: calibration to {doc['calibration_end']}, holdout to "
        f"{doc['until']} ({doc['holdout_length']:g} {doc['time_unit']}s), "
        f"{doc['customers']:,} customers, model {doc['model']['version']}",
        "",
        "Repeat order days in the holdout (days with an order, once per UTC day)",
        f"{'x in calibration':>16} {'customers':>10} {'actual':>9} {'BG/NBD':>9} {'MBG/NBD':>9}",
    ]
    for g in doc["by_frequency"]:
        e = g["expected"]
        lines.append(
            f"{g['x']:>16} {g['customers']:>10,} {g['actual']:>9,} "
            f"{e['bgnbd']:>9,.1f} {e['mbgnbd']:>9,.1f}"
        )
    e = totals["expected"]
    lines.append(
        f"{'total':>16} {doc['customers']:>10,} {totals['actual']:>9,} "
        f"{e['bgnbd']:>9,.1f} {e['mbgnbd']:>9,.1f}"
    )
    for kind, label in (("bgnbd", "BG/NBD"), ("mbgnbd", "MBG/NBD")):
        lines += [
            "",
            f"{label}: customers who ordered again in the holdout, per P(alive) decile at "
            "the calibration end",
            f"{'decile':>6} {'customers':>10} {'P(alive) mean':>14} {'range':>15} "
            f"{'ordered again':>14} {'share':>7}",
        ]
        for d in doc["by_p_alive"][kind]:
            span = f"{d['p_alive_min']:.3f}-{d['p_alive_max']:.3f}"
            lines.append(
                f"{d['decile']:>6} {d['customers']:>10,} {d['p_alive_mean']:>14.3f} "
                f"{span:>15} {d['ordered_again']:>14,} {d['share_ordered_again']:>7.1%}"
            )
    return "\n".join(lines) + "\n"
