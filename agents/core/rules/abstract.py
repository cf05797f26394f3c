"""The interfaces of a rule's parts (docs/rules.md "Rules file").

A rule is an anchor, steps, an audience and what cancels it; each kind of each part
is one small class behind the interface below, so adding a kind is one class and its
case in the contract test (tests/unit/agents/core/rules/test_contract.py).  Every
method is a pure function of the customer's facts (and the due time): the engine
calls them on the state as of the due time, and the offline reference interprets the
same file with its own code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Protocol


class Facts(Protocol):
    """What a rule reads of a customer (:class:`agents.core.state.CustomerState`).

    Named as a shape, not the class: the state module imports the settings, which
    carry the rules."""

    orders: int
    first_order_at: int | None
    second_order_at: int | None
    last_order_at: int | None
    order_times: list[int]
    spend: dict[str, str]
    last_session_at: int | None
    last_activity_at: int | None
    consent_status: str | None
    consent_at: int | None
    stage: str
    # The lifecycle's facts (docs/lifecycle.md "Facts").
    signup_at: int | None
    first_session_at: int | None
    last_view_at: int | None
    views: list[list[Any]]
    carts: list[Any]  # agents.core.state.CartEntry
    order_log: list[Any]  # agents.core.state.OrderEntry

    @property
    def order_days(self) -> int:
        """Distinct UTC days with an order (docs/prediction.md "State")."""
        ...

    def order_at(self, k: int) -> int | None:
        """The k-th order's time, net of cancellations, when the order log holds it
        (docs/lifecycle.md "Facts")."""
        ...


class Cancel(ABC):
    """What ends a ladder for its anchor: an event of one kind after the anchor."""

    kind: str

    @abstractmethod
    def cancels(self, facts: Facts, anchor: int) -> bool:
        """Whether the facts hold such an event (the facts are as of the due time)."""


class Anchor(ABC):
    """Where a ladder starts: a time read from the facts, or None (nothing due)."""

    kind: ClassVar[str]

    @abstractmethod
    def at(self, facts: Facts) -> int | None:
        """The anchor's time; never later than the newest fact."""

    @abstractmethod
    def cancel(self, kind: str) -> Cancel:
        """How an event of ``kind`` (in the rule's ``cancel_on``) ends this anchor's ladder."""

    def resolver(self, cancels: tuple[Cancel, ...]) -> Callable[[Facts], int | None]:
        """The anchor while no cancel holds, else None: what the engine asks of a
        rule on every step of its timeline (built once per rule)."""
        at = self.at
        if not cancels:
            return at

        def resolve(facts: Facts) -> int | None:
            anchor = at(facts)
            if anchor is None or any(c.cancels(facts, anchor) for c in cancels):
                return None
            return anchor

        return resolve

    @abstractmethod
    def canonical(self) -> dict[str, Any]:
        """The anchor as plain data (the rule's version hashes it)."""

    def attribution_cap(self, steps: int) -> int | None:
        """How many of the rule's newest firings can convert an order (None: all
        within the attribution window).  An anchor any input moves (a view, a cart
        snapshot) caps it, so a customer's row remembers a bounded number
        (docs/lifecycle.md "Attribution")."""
        return None


class KeyedAnchor(Anchor):
    """An anchor with one ladder per key: a cart (docs/lifecycle.md "Rules").  The
    engine asks :meth:`entry_at` of each kept cart; :meth:`at` is the newest open
    ladder's anchor (what "the" anchor is, for a reader of the facts)."""

    keyed: ClassVar[bool] = True

    @abstractmethod
    def entry_at(self, entry: Any) -> int | None:
        """The ladder's anchor of one kept entry (a ``CartEntry``), None when it has
        no open ladder (ended by its exit, emptied, or without items)."""

    def at(self, facts: Facts) -> int | None:
        times = [t for t in (self.entry_at(c) for c in facts.carts) if t is not None]
        return max(times, default=None)

    def resolver(self, cancels: tuple[Cancel, ...]) -> Callable[[Facts], int | None]:
        # No ladder without a key: the engine runs the keyed ones (key_resolver).
        return _none

    def key_resolver(self, cancels: tuple[Cancel, ...]) -> Callable[[Facts, Any], int | None]:
        """The anchor of one entry's ladder while no cancel holds, else None."""
        entry_at = self.entry_at

        def resolve(facts: Facts, entry: Any) -> int | None:
            anchor = entry_at(entry)
            if anchor is None or any(c.cancels(facts, anchor) for c in cancels):
                return None
            return anchor

        return resolve


def _none(facts: Facts) -> None:
    return None


class Step(ABC):
    """How long after the anchor a step is due."""

    kind: ClassVar[str]

    @abstractmethod
    def threshold(self, facts: Facts) -> int | None:
        """Microseconds after the anchor, > 0; only a churn_risk step may say 0 (its
        threshold was already crossed at the anchor: decided ``skipped``) or None
        (nothing due until the facts change: docs/prediction.md "The churn_risk rule"),
        and a milestone step 0 (the k-th order at the first's instant: a normal due)
        or None (not that many orders: docs/lifecycle.md "Rules")."""

    @property
    @abstractmethod
    def least(self) -> int:
        """The shortest threshold this step can have (for bounds and labels)."""

    @abstractmethod
    def label(self) -> str:
        """How a report names the step's threshold."""

    @abstractmethod
    def canonical(self) -> Any:
        """The step as plain data (durations in microseconds)."""


class Predicate(ABC):
    """One audience condition, evaluated at each step's due time D."""

    key: ClassVar[str]

    @abstractmethod
    def holds(self, facts: Facts, due_at: int) -> bool:
        """Whether the customer, as of D, is in the audience."""

    @abstractmethod
    def canonical(self) -> Any:
        """The condition as plain data."""
