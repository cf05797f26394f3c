"""The byte budget of one customer (docs/budget.md "Byte budget").

No sequence of inputs can make a customer's table row or one output record
larger than :data:`ROW_BUDGET` / :data:`OUTPUT_BUDGET` (256 KiB, a quarter of the
broker's default 1 MiB ``message.max.bytes``), because every part of the row is
bounded: ids (128 characters), amounts (16 + 15 digits), the named currencies
(:data:`MAX_CURRENCIES`, the rest summed under :data:`OTHER_CURRENCY`), the dedup
memory (:mod:`agents.core.dedup`), the lists in :mod:`agents.core.state`, the
firings the record remembers (at most :func:`firing_memory` of them, which a
configuration may only set within :data:`FIRINGS_BUDGET` bytes), and the events
waiting in ``pending`` (at most ``max_pending_events`` and :data:`PENDING_BUDGET`
bytes with the index of the overflow rows; the later ones wait in overflow rows
of :data:`PENDING_CHUNK_BUDGET` bytes each, up to the hostile-input cap
:data:`MAX_PENDING_BYTES`: :mod:`agents.core.pending`).

What is not bounded by construction is a row written by an older version (e.g.
thousands of raw pending events): :func:`state_over_budget` says so, and the
engine refuses that customer's new events with ``customer_over_budget`` until
``pending`` has drained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from agents.core.rules.abstract import KeyedAnchor
from agents.core.rules.anchors import FirstOrder, LastOrder, Signup
from agents.core.rules.model import MAX_RULES, MAX_TOTAL_STEPS, Rule
from agents.core.settings import (
    DEFAULT_MAX_PENDING_BYTES,
    DEFAULT_PENDING_CHUNK_BYTES,
    CoreSettings,
)
from agents.core.windows import SEARCH
from agents.core.zones import MAX_ZONE_NAME
from schemas.records import MAX_CART_ITEMS, MAX_ORDER_ITEMS


class HasPending(Protocol):
    """What the budget reads of a customer state (agents.core.state imports this
    module, so it names the shape rather than the class)."""

    @property
    def pending(self) -> list[Any]: ...

    def pending_bytes(self) -> int: ...


ROW_BUDGET = 256 * 1024
OUTPUT_BUDGET = 256 * 1024


# --- the lifecycle's facts (docs/budget.md "Lifecycle") ------------------------------

# The widest id validation accepts: 128 characters JSON escapes to 6 bytes each.
_WIDE = "\x01" * 128
_TIME = -(2**62)
_AMOUNT = "9" * 16 + "." + "9" * 31
# Bounds of the lifecycle's facts (agents.core.state holds the same numbers and
# tests/unit/agents/core/test_budget_lifecycle.py holds the two equal): the newest
# viewed products, the kept carts and their items, the order log, the pending
# cancellations, the rules that can keep progress in a cart.
_VIEWS, _CARTS, _CART_ITEMS, _LOG, _CANCELS = 5, 3, 10, 3 + 32, 8
# Named currencies of one rule's recovered revenue in one group (MAX_RECOVERED_CURRENCIES).
_RECOVERED = 2


def lifecycle_bytes() -> int:
    """The most bytes the lifecycle's row keys can take (with their names):
    ``su``, ``fs``, ``vw`` (5 views of 128-character escaped product ids), ``ct``
    (3 carts of 10 such items, escaped cart ids, progress of every rule pinned),
    ``fc``, ``ol`` (35 entries), ``cx`` (8 pending cancellations), ``cn`` (the
    counts, a refund per currency slot, 8 cancelled keys) and ``rr`` (recovered
    revenue: every rule an abandonment rule, both groups, MAX_RECOVERED_CURRENCIES
    currencies and XXX each)."""
    item = [_WIDE, 1_000_000, _AMOUNT, "XXX"]
    progress = {"r" * 40 + str(i): [_TIME, 10, "f" * 12] for i in range(MAX_RULES)}
    cart = [_WIDE, _TIME, "checkout_started", [item] * _CART_ITEMS, _TIME, _TIME, progress]
    key = "f" * 16
    parts: dict[str, object] = {
        "su": _TIME,
        "fs": _TIME,
        "vw": [_TIME, _TIME, [[_TIME, _WIDE]] * _VIEWS],
        "ct": [cart] * _CARTS,
        "fc": [_TIME, _TIME],
        "ol": [[_TIME, key, _AMOUNT, "XXX"]] * _LOG,
        "cx": [[key, _TIME, "partial", _AMOUNT, "XXX"]] * _CANCELS,
        # Refunds are sums: 16 more digits than one amount hold 10^16 of them.
        "cn": [
            2**63,
            2**63,
            2**63,
            {f"C{i:02d}": "9" * 32 + _AMOUNT for i in range(MAX_CURRENCIES + 1)},
            [key] * _CANCELS,
        ],
        "rr": {
            f"{i:02d}".rjust(40, "r"): {  # rule names are at most 40 characters
                group: {f"C{c:02d}": "9" * 32 + _AMOUNT for c in range(_RECOVERED + 1)}
                for group in ("delivered", "holdout")
            }
            for i in range(MAX_RULES)
        },
    }
    return len(orjson.dumps(parts))


# What the lifecycle's facts may take of a row (lifecycle_bytes() at its widest,
# rounded up), taken from the row's share of pending (not from the firings): the
# row keeps ROW_PENDING_BUDGET bytes of waiting events with the overflow index,
# the rest waits in overflow rows as before (docs/budget.md "Lifecycle").
LIFECYCLE_BUDGET = 51 * 1024
# Serialised bytes of pending events (with the index of the overflow rows) an
# overflow row or a row written before the lifecycle may hold; the row's own
# share is ROW_PENDING_BUDGET.
PENDING_BUDGET = 128 * 1024
ROW_PENDING_BUDGET = PENDING_BUDGET - LIFECYCLE_BUDGET
# The overflow-row size and the hostile-input cap are the defaults of the core
# settings (declared there, where this module reads the rules from too).
PENDING_CHUNK_BUDGET = DEFAULT_PENDING_CHUNK_BYTES
MAX_PENDING_BYTES = DEFAULT_MAX_PENDING_BYTES
# Everything in a row but pending is below this (worst case, measured by
# tests/unit/agents/core/test_budget.py with 128-character escaped ids): the
# firings' FIRINGS_BUDGET, the lifecycle's LIFECYCLE_BUDGET and the rest (below
# ROW_BUDGET - PENDING_BUDGET, as before the lifecycle).
FIXED_ROW_BOUND = ROW_BUDGET - ROW_PENDING_BUDGET
# Named currencies per customer: the alphabetically smallest MAX_CURRENCIES seen;
# orders in any other currency count as orders, their spend is summed under
# OTHER_CURRENCY (ISO 4217 "no currency"), which is also where XXX itself goes.
MAX_CURRENCIES = 16
OTHER_CURRENCY = "XXX"
# Recovered revenue (row key "rr", docs/reports.md "Recovered revenue") is kept per
# abandonment rule and group: there the 2 alphabetically smallest codes keep their
# own sums and the rest go to OTHER_CURRENCY, so that 16 such rules fit the row's
# lifecycle share (a customer converting one rule in three currencies is rare).
MAX_RECOVERED_CURRENCIES = _RECOVERED

# Dead-letter codes of events the engine refuses (see agents.core.emissions.Refused).
CODE_CUSTOMER_OVER_BUDGET = "customer_over_budget"
CODE_PENDING_OVERFLOW = "pending_overflow"


def entry_size(entry: dict[str, Any]) -> int:
    """Bytes one pending entry adds to the row (its JSON and a comma)."""
    return len(orjson.dumps(entry)) + 1


# The largest entry validation allows: 128-character ids that JSON escapes to 6
# bytes a character, the longest amount and time, an ignored zone name at its 64
# characters, which are never escaped (agents.core.validation.shown_zone; a kept
# zone, ``tz``, is no wider and never comes with it).  Below PENDING_BUDGET //
# MAX_ENTRY_BYTES entries, pending cannot be over budget: no need to measure.
# The widest is a cart snapshot of MAX_CART_ITEMS lines, then an order of
# purchase/2 with its cart id and the 16-hex keys of its MAX_ORDER_ITEMS lines'
# products (agents.core.state ``_PENDING_KEYS``; docs/lifecycle.md "Inputs").
_WIDE_ENTRY: dict[str, Any] = {
    "k": "order_cancelled",
    "e": _WIDE,
    "t": _TIME,
    "o": _WIDE,
    "act": "checkout_started",
    "a": _AMOUNT,
    "cur": "XXX",
    "st": "opted_out",
    "tzx": "~" * 64,
}
MAX_ENTRY_BYTES = max(
    entry_size(_WIDE_ENTRY | {"cart": _WIDE, "ip": ["f" * 16] * MAX_ORDER_ITEMS}),
    entry_size(
        _WIDE_ENTRY | {"cart": _WIDE, "it": [[_WIDE, 10**6, _AMOUNT, "XXX"]] * MAX_CART_ITEMS}
    ),
)
SAFE_PENDING_ENTRIES = PENDING_BUDGET // MAX_ENTRY_BYTES


# One overflow index row at its widest: [slot, time, 128-character escaped id].
MAX_INDEX_ROW_BYTES = len(orjson.dumps([999_999, -(2**62), _WIDE])) + 1


def max_index_bytes(cap: int, chunk_bytes: int) -> int:
    """The largest the overflow index can get under ``cap`` bytes of waiting
    entries: a chunk is split in two when it passes ``chunk_bytes`` and only the
    first chunk ever shrinks, so every other holds at least half of it."""
    least = max((chunk_bytes - MAX_ENTRY_BYTES) // 2, 1)
    return (2 + cap // least) * MAX_INDEX_ROW_BYTES + 64


def state_over_budget(state: HasPending) -> bool:
    """True only for a row from an older version whose pending is over budget."""
    if len(state.pending) <= SAFE_PENDING_ENTRIES:
        return False
    return state.pending_bytes() > PENDING_BUDGET


# --- the firings a record remembers ------------------------------------------------

# Bytes of the row's ``recent_firings`` (docs/budget.md "Byte budget"): a configuration whose
# worst case does not fit is refused at start-up (streams/config/loading.py), so what the
# guardrails and the attribution need is never dropped to keep a row small.  The
# rest of the row (dedup memory, counts, spans, ...) stays well below the other
# FIXED_ROW_BOUND - FIRINGS_BUDGET bytes (tests/unit/agents/core/test_budget.py).
FIRINGS_BUDGET = 80 * 1024


# The widest entry [due_at, rule, step, anchor_at, outcome, converted_at] and its
# comma: times as wide as any int the core holds, the longest rule and outcome
# names, a two-digit step (a ladder has at most 10); with a send window, the send
# time ``sent_at`` too (docs/send-windows.md "Deferred firings"); a keyed firing
# (a cart rule's, docs/lifecycle.md "Rules") its cart id as an eighth element,
# after ``sent_at`` or a null.
def firing_entry_bytes(
    rule: str = "second_purchase", *, windowed: bool = False, keyed: bool = False
) -> int:
    """The widest entry of a rule named ``rule`` (the default rules' longest name)."""
    entry: list[object] = [-(2**62), rule, 99, -(2**62), "frequency_cap", -(2**62)]
    if windowed or keyed:
        entry.append(-(2**62))
    if keyed:
        entry.append(_WIDE)
    return len(orjson.dumps(entry)) + 1


MAX_FIRING_ENTRY_BYTES = firing_entry_bytes()
MAX_FIRINGS = FIRINGS_BUDGET // MAX_FIRING_ENTRY_BYTES


@dataclass(frozen=True, slots=True)
class FiringMemory:
    """How many firings one customer record may have to remember (docs/guardrails.md "Guardrails").

    ``guard``: delivered nudges the gap and the cap can still need, the newest
    ``frequency_cap`` due within max(min gap, window); ``attribution``: delivered or
    holdout firings an order can still convert (not converted yet, due within the
    attribution window); ``lookup``: the newest few of any outcome, for the
    customer lookup.  An entry may be all three: the sum bounds the list.
    """

    lookup: int
    guard: int
    attribution: int
    # The widest entry: its rule name is the longest of the rule set's.
    entry_bytes: int = MAX_FIRING_ENTRY_BYTES
    # Taken from the firings' budget when a rule has a send window: the kept
    # firings and the counts of the window outcomes (WINDOW_RESERVE), and when a
    # rule is a churn_risk ladder: the counts of "skipped" (CHURN_RESERVE); so a
    # row without either keeps today's bound (docs/budget.md "Byte budget").
    reserve: int = 0

    @property
    def entries(self) -> int:
        return self.lookup + self.guard + self.attribution

    @property
    def bytes(self) -> int:
        """The most bytes ``recent_firings`` can take in a row, with the reserve."""
        return self.entries * self.entry_bytes + self.reserve

    @property
    def fits(self) -> bool:
        return self.bytes <= FIRINGS_BUDGET


def firing_memory(core: CoreSettings) -> FiringMemory:
    """The firings a record must remember under ``core``, derived from its rules and
    guardrails, for a customer whose events are applied in time order."""
    window = core.attribution_window
    rules = core.rule_set.active
    marketing = [r for r in rules if not r.transactional]
    attribution = firings_within(marketing, window)
    if core.holdout_percent <= 0:
        # Nobody is held out: only delivered firings are attributed.
        sent = delivered_within(core, window)
        attribution = attribution if sent is None else min(attribution, sent)
    # Transactional deliveries pass no gap or cap: each may wait for a conversion.
    attribution += firings_within([r for r in rules if r.transactional], window)
    longest = max((r.name for r in rules), key=len, default="")
    windowed = any(r.send_window is not None for r in rules)
    keyed = any(isinstance(r.anchor, KeyedAnchor) for r in rules)
    entry = max(firing_entry_bytes(longest, windowed=windowed, keyed=keyed), MAX_FIRING_ENTRY_BYTES)
    reserve = WINDOW_RESERVE if windowed else 0
    if any(r.steps and r.steps[0].kind == "p_alive_below" for r in rules):
        reserve += CHURN_RESERVE
    return FiringMemory(core.max_recent_nudges, core.frequency_cap, attribution, entry, reserve)


def firings_within(rules: list[Rule] | tuple[Rule, ...], span: int) -> int:
    """The most firings since a customer's last order with due times in one span.

    An order converts every firing of the attribution window before it, so only
    firings since the last order can still wait for one.  Since that order a rule
    anchored on the first or the last order fires at most its steps (one anchor:
    e.g. ``second_purchase``, ``overdue``).  One anchored on activity or sessions
    restarts at every session: anchor a fires step k only if the next one comes
    later than a + th_k, so anchors whose firings fall in the span lie in [L - th_n,
    L + span - th_1] and an anchor that fires k steps is followed by a gap longer
    than th_k.  With r = max k / th_k, the anchors but the last fire fewer than r x
    (span + th_n - th_1) steps between them; the last at most n.  (A cadence step's
    threshold is at least its floor.)

    Times are send times.  A rule whose firings may be deferred (docs/send-windows.md
    "Deferred firings") is sent at most ``deferral`` after its due time, so its
    anchors' span grows by that much, and one firing due before the order may be sent
    after it (at most one is kept per rule).

    A rule anchored on views or carts counts its attribution cap: only its newest
    firings can convert (docs/lifecycle.md "Attribution").
    """
    total = 0
    for rule in rules:
        steps = [step.least for step in rule.steps]
        delay = deferral(rule)
        cap = rule.anchor.attribution_cap(len(steps))
        if cap is not None:
            # Only its newest ``cap`` firings can convert (docs/lifecycle.md
            # "Attribution"): the row keeps those.
            count = cap
        elif isinstance(rule.anchor, FirstOrder | LastOrder):
            count = len(steps)
        elif isinstance(rule.anchor, Signup):
            # Moved at most once in time order: from the first session to a later
            # sign-up (docs/lifecycle.md "Rules").
            count = 2 * len(steps)
        else:
            between = span + delay + steps[-1] - steps[0]
            count = max(k * between // th for k, th in enumerate(steps, 1)) + len(steps)
        total += count + (1 if delay else 0)
    return total


def deferral(rule: Rule) -> int:
    """The longest a firing of ``rule`` can wait for its send time (0: never)."""
    window = rule.send_window
    if window is None or window.policy.kind != "defer":
        return 0
    limit = window.policy.max_delay
    return SEARCH if limit is None else min(limit, SEARCH)


# --- the deferred firings a record keeps (docs/send-windows.md "Deferred firings") ---

# The widest kept firing [rule, step, anchor_at, due_at, send_at, threshold,
# rule_version, zone] and its comma: the longest rule name (40), times as wide as any
# int, a 12-digit version, a zone name at its longest.  At most one per rule.
MAX_DEFERRED_ENTRY_BYTES = (
    len(
        orjson.dumps(
            ["r" * 40, 99, -(2**62), -(2**62), -(2**62), -(2**62), "f" * 12, "Z" * MAX_ZONE_NAME]
        )
    )
    + 1
)
# Bytes of the row's ``df`` list at its fullest (with its key).
DEFERRED_BUDGET = MAX_RULES * MAX_DEFERRED_ENTRY_BYTES + 8


def _count_bytes(outcome: str) -> int:
    """One decision count of ``outcome`` at its widest, with its comma."""
    return len(orjson.dumps({f"{'r' * 40}/10/{outcome}": 2**63})) - 2 + 1


# The decision counts only windows add: outside_window and cancelled for every step.
WINDOW_COUNTS_BUDGET = MAX_TOTAL_STEPS * (
    _count_bytes("outside_window") + _count_bytes("cancelled")
)
# The row's ``sc`` (agents/core/send_counts.py): per rule with a window, 25 counts
# [deferred, delivered at local hour 0..23] at their widest, with the key.
SEND_COUNTS_BUDGET = MAX_RULES * (len(orjson.dumps({"r" * 40: [2**63] * 25})) - 2 + 1) + len(
    b'"sc":{},'
)
# What a rule set with a send window takes from FIRINGS_BUDGET: the rest of the row
# stays within the bound measured without windows (tests/unit/agents/core/test_budget.py).
WINDOW_RESERVE = DEFERRED_BUDGET + WINDOW_COUNTS_BUDGET + SEND_COUNTS_BUDGET


# The decision counts only churn_risk steps add: "skipped" for every step
# (docs/prediction.md "The churn_risk rule"), taken from FIRINGS_BUDGET like the
# windows' reserve, so a rule set without one keeps today's bound.
CHURN_RESERVE = MAX_TOTAL_STEPS * _count_bytes("skipped")


def delivered_within(core: CoreSettings, span: int) -> int | None:
    """The most delivered nudges with due times in one closed span (None: no bound).

    Every window (x - frequency_window, x] holds at most ``frequency_cap`` of them and
    ``span // window + 1`` such windows cover the span; delivered nudges are at least
    ``min_gap`` apart."""
    bounds = []
    if core.frequency_window > 0:
        bounds.append(core.frequency_cap * (span // core.frequency_window + 1))
    if core.min_gap > 0:
        bounds.append(span // core.min_gap + 1)
    return min(bounds) if bounds else None
