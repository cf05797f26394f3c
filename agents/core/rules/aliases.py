"""The rule set the deprecated settings describe (docs/rules.md "Environment aliases").

Today's three rules with the ladders, the overdue cadence and the guardrails of
:class:`agents.core.settings.CoreSettings`; with the settings' defaults it is the
default file (a unit test holds the two equal, versions included).
"""

from __future__ import annotations

from agents.core.rules.anchors import FirstOrder, LastActivity, LastOrder
from agents.core.rules.model import GuardrailValues, Lifecycle, Rule, RuleSet
from agents.core.rules.steps import Cadence, Fixed
from schemas.records import KIND_PURCHASE

SECOND_PURCHASE_REASON = "no second order {span} after the first on {anchor_date}"
INACTIVITY_REASON = "no activity for {span} since {anchor_date}"
OVERDUE_REASON = "no order for {span} since {anchor_date}, overdue for their usual rhythm"
DESCRIPTIONS = {
    "second_purchase": "Ordered once and not come back.",
    "inactivity": "No order and no visit for a while; every visit starts it again.",
    "overdue": "A regular customer late for their own rhythm.",
}
LIFECYCLE_PRIORITY = 15


def alias_rules(
    *,
    second_purchase: tuple[str, tuple[int, ...], bool],
    inactivity: tuple[str, tuple[int, ...], bool],
    overdue: tuple[str, float, int, int, bool],
    guardrails: GuardrailValues,
) -> RuleSet:
    """``second_purchase`` and ``inactivity``: (name, steps, enabled); ``overdue``:
    (name, multiplier, floor, min_orders, enabled).

    The lifecycle follows the inactivity ladder as the inactivity rule did: at risk at
    its first step, lapsed at its last (the same instant for a one-step ladder), and
    no stage moves at all with the rule off."""
    sp_name, sp_steps, sp_on = second_purchase
    in_name, in_steps, in_on = inactivity
    od_name, multiplier, floor, min_orders, od_on = overdue
    rules = (
        Rule(
            name=sp_name,
            priority=10,
            anchor=FirstOrder(),
            steps=tuple(Fixed(s) for s in sp_steps),
            cancel_on=(KIND_PURCHASE,),
            enabled=sp_on,
            description=DESCRIPTIONS["second_purchase"],
            reason=SECOND_PURCHASE_REASON,
        ),
        Rule(
            name=in_name,
            priority=20,
            anchor=LastActivity(min_orders=1),
            steps=tuple(Fixed(s) for s in in_steps),
            enabled=in_on,
            description=DESCRIPTIONS["inactivity"],
            reason=INACTIVITY_REASON,
        ),
        Rule(
            name=od_name,
            priority=30,
            anchor=LastOrder(min_orders=min_orders),
            steps=(Cadence(multiplier, floor),),
            enabled=od_on,
            description=DESCRIPTIONS["overdue"],
            reason=OVERDUE_REASON,
        ),
    )
    lifecycle = (
        Lifecycle(in_steps[0], in_steps[-1], LIFECYCLE_PRIORITY) if in_on and in_steps else None
    )
    return RuleSet(rules, guardrails, lifecycle)
