"""Wire formats of the internal customer-keyed topic and of the outputs.

The internal topic carries three kinds of message, all JSON objects:

* ``{"type": "ev", "src": "topic:partition", "ev": {...}}`` a validated event,
  keyed by customer_id;
* ``{"type": "adv", "src": "topic:partition", "until": micros}`` "advance the
  stream clock to T", forwarded by the ingest agent to every partition;
* ``{"type": "tick", "now": micros}`` a wall-clock tick from the leader.

Input topics additionally accept the control record
``{"schema": "control/advance", "until": "<RFC 3339>"}`` written by
``retention replay --until``.
"""

from __future__ import annotations

from typing import Any

import orjson

from agents.core.engine import Firing
from agents.core.timeutil import iso
from schemas.records import SCHEMA_DECISION, SCHEMA_NUDGE

CONTROL_ADVANCE = "control/advance"
OUTCOME_DELIVERED = "delivered"


def decision_record(
    f: Firing, *, fired_at: int, clock: str, outcome: str, holdout: bool
) -> dict[str, Any]:
    return {
        "schema": SCHEMA_DECISION,
        "trigger_id": f.trigger_id,
        "customer_id": f.customer_id,
        "rule": f.rule,
        "step": f.step,
        "threshold": {"iso": f.threshold_iso, "seconds": f.threshold_seconds},
        "anchor_at": iso(f.anchor_at),
        "due_at": iso(f.due_at),
        "fired_at": iso(fired_at),
        "delivered": outcome == OUTCOME_DELIVERED,
        "outcome": outcome,
        "holdout": holdout,
        "reason": f.reason(),
        "context": f.context,
        "clock": clock,
    }


def nudge_record(decision: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in decision.items() if k not in ("delivered", "outcome", "clock")}
    out["schema"] = SCHEMA_NUDGE
    return out


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)
