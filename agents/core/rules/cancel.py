"""What ends a ladder for its anchor (a rule's ``cancel_on``: docs/rules.md "Rules file")."""

from __future__ import annotations

from dataclasses import dataclass

from agents.core.rules.abstract import Cancel, Facts
from schemas.records import KIND_CONSENT, KIND_PURCHASE, KIND_SESSION

EVENT_KINDS = (KIND_PURCHASE, KIND_SESSION, KIND_CONSENT)


@dataclass(frozen=True, slots=True)
class LaterEvent(Cancel):
    """An event of ``kind`` with occurred_at in (anchor, D].

    The facts keep the newest time of each kind (an order's, a session's, the
    winning consent's, which is the newest consent's), so "one after the anchor"
    is "the newest after the anchor"."""

    kind: str

    def cancels(self, facts: Facts, anchor: int) -> bool:
        if self.kind == KIND_PURCHASE:
            newest = facts.last_order_at
        elif self.kind == KIND_SESSION:
            newest = facts.last_session_at
        else:
            newest = facts.consent_at
        return newest is not None and newest > anchor


@dataclass(frozen=True, slots=True)
class FurtherOrder(Cancel):
    """Any order besides the first, even at the same instant (``first_order`` with
    ``purchase``: today's "a second order")."""

    kind: str = KIND_PURCHASE

    def cancels(self, facts: Facts, anchor: int) -> bool:
        return facts.orders >= 2
