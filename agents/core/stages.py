"""The customer's lifecycle stages (docs/rules.md "Lifecycle").

Names only: :mod:`agents.core.state` folds the order-driven moves (prospect -> new ->
repeat, activity lifting at_risk and lapsed) and the engine makes the inactivity ones
(:class:`agents.core.rules.model.Lifecycle`).
"""

from __future__ import annotations

STAGE_PROSPECT = "prospect"  # sessions but no order yet
STAGE_NEW = "new"
STAGE_REPEAT = "repeat"
STAGE_AT_RISK = "at_risk"
STAGE_LAPSED = "lapsed"
STAGE_REACTIVATED = "reactivated"
STAGES = (STAGE_PROSPECT, STAGE_NEW, STAGE_REPEAT, STAGE_AT_RISK, STAGE_LAPSED, STAGE_REACTIVATED)
# The stages a customer with no activity for lifecycle.at_risk_after leaves for at_risk.
ACTIVE_STAGES = frozenset((STAGE_NEW, STAGE_REPEAT, STAGE_REACTIVATED))
