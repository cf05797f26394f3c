"""The ``report/1`` document in a mergeable form, for the cluster-wide summary.

A worker reduces the customer rows it owns to :class:`ReportInputs` for one
``as_of``: counts that add (lifecycle, decisions, conversions, buyers, CRR's
S0 / N / E per month, spend and orders per currency, repeat-within counts per
cohort) and, for the medians and percentiles, every repeater's time to second
purchase in integer microseconds per cohort (the only part that grows with the
data: about 15 bytes of JSON per repeating customer).  :func:`merge_report` adds
any number of them and computes the report once, finishing with the same
functions as :func:`agents.core.reports.build_report` (``report_document`` and
the blocks it is made of), so the merge of the parts equals the
report over all the rows (held to that by property tests), never an average of
the workers' figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from agents.core.guardrails import OUTCOME_DELIVERED, OUTCOME_HOLDOUT
from agents.core.reports import (
    FUNNEL_STAGES,
    REPEAT_WINDOWS,
    ReportSettings,
    add_revenue,
    cancellations_block,
    clv_block,
    count_p_alive,
    crr_block,
    funnel_block,
    funnel_stage_counts,
    histogram,
    month_label,
    recovered_block,
    report_document,
    ttsp_summary,
)
from agents.core.scores import ScoreModel, inputs_of
from agents.core.send_counts import add_counts
from agents.core.stages import STAGE_PROSPECT, STAGES
from agents.core.state import CountKey, CustomerState
from agents.core.timeutil import (
    MICROS_PER_DAY,
    month_name,
    month_number,
    month_of,
    month_start_at,
)

SCHEMA_INPUTS = "report-inputs/1"
_DELIVERED = "/" + OUTCOME_DELIVERED
_HOLDOUT = "/" + OUTCOME_HOLDOUT


def _parsed(counts: Mapping[str, int]) -> Counter[CountKey]:
    """Count keys as the rows and the wire form write them (``"rule/step/what"``)."""
    return Counter({CountKey.parse(key): n for key, n in counts.items()})


def _add(into: dict[str, int], counts: Mapping[str, int]) -> None:
    # Plain adds keep keys whose count is 0, as the report's Counters do.
    for key, n in counts.items():
        into[key] = into.get(key, 0) + n


class ReportInputs:
    """What the report needs from a set of customer rows, as of one instant."""

    def __init__(self, as_of: int, *, scoring: bool = False) -> None:
        self.as_of = as_of
        self.customers = 0
        self.lifecycle: dict[str, int] = {}
        self.decisions: dict[str, int] = {}
        self.conversions: dict[str, int] = {}
        self.buyers = 0
        self.repeaters = 0  # buyers with 2+ orders (RPR)
        self.first_order_at: int | None = None
        self.orders = 0
        self.spend: dict[str, Decimal] = {}
        self.order_currencies: dict[str, int] = {}
        self.cohorts: dict[str, dict[str, Any]] = {}
        self.crr: dict[str, list[int]] = {}  # month -> [S0, N, E]
        # Send windows, per rule: [deferred, delivered at local hour 0..23].
        self.sends: dict[str, list[int]] = {}
        # P(alive) bins by "<model version>/<kind>" (agents.core.reports.count_p_alive);
        # None unless the rules have a [model] (``scoring``), so parts without stay as
        # they were.
        self.p_alive: dict[str, list[int]] | None = {} if scoring else None
        # The lifecycle (docs/reports.md "Funnel", "Recovered revenue",
        # "Cancellations"): funnel counts per first-view month (FUNNEL_STAGES), the
        # customers with a delivered / holdout firing per "rule/group", recovered
        # revenue per rule, group and currency, and [full, partial] cancellations
        # with the refunds per currency.  Placed orders are the buyers' ``orders``
        # plus the full cancellations.
        self.funnel: dict[str, list[int]] = {}
        self.groups: dict[str, int] = {}
        self.recovered: dict[str, dict[str, dict[str, Decimal]]] = {}
        self.cancels = [0, 0]  # full, partial
        self.refunded: dict[str, Decimal] = {}

    # --- from rows -----------------------------------------------------------------

    def add_state(self, d: Mapping[str, Any], model: ScoreModel | None = None) -> None:
        """One stored customer record (the table's JSON, decoded), as
        ``CustomerRow.from_state(CustomerState.from_dict(d))`` would see it; with
        the ``model`` of its partition's rules, its P(alive) at ``as_of`` too."""
        self.customers += 1
        stage = d.get("stage", STAGE_PROSPECT)
        self.lifecycle[stage] = self.lifecycle.get(stage, 0) + 1
        decided: Mapping[str, int] = d.get("decision_counts", {})
        _add(self.decisions, decided)
        _add(self.conversions, d.get("conversion_counts", {}))
        add_counts(self.sends, d.get("sc", {}))
        orders: int = d.get("orders", 0)
        self._add_lifecycle(d, decided, orders)
        first: int | None = d.get("first_order_at")
        if orders < 1 or first is None:
            return
        self.buyers += 1
        self.orders += orders
        if orders >= 2:
            self.repeaters += 1
        if self.first_order_at is None or first < self.first_order_at:
            self.first_order_at = first
        for cur, amount in d.get("spend", {}).items():
            self.spend[cur] = self.spend.get(cur, Decimal(0)) + Decimal(amount)
        _add(self.order_currencies, d.get("order_currencies", {}))
        label = month_label(first)
        cohort = self.cohorts.get(label)
        if cohort is None:
            cohort = self.cohorts[label] = {
                "buyers": 0,
                "ttsp": [],
                "mature": [0] * len(REPEAT_WINDOWS),
                "back": [0] * len(REPEAT_WINDOWS),
            }
        cohort["buyers"] += 1
        second: int | None = d.get("second_order_at")
        gap = None if second is None else second - first
        if gap is not None:
            cohort["ttsp"].append(gap)
        for i, n in enumerate(REPEAT_WINDOWS):
            if first <= self.as_of - n * MICROS_PER_DAY:
                cohort["mature"][i] += 1
                if gap is not None and gap <= n * MICROS_PER_DAY:
                    cohort["back"][i] += 1
        self._count_crr(first, d.get("active_spans", []))
        if model is not None:
            if self.p_alive is None:
                self.p_alive = {}
            inputs = inputs_of(CustomerState.summary_from_dict(dict(d)))
            count_p_alive(self.p_alive, inputs, model, self.as_of)

    def _add_lifecycle(self, d: Mapping[str, Any], decided: Mapping[str, int], orders: int) -> None:
        """The row's funnel stage, groups, recovered revenue and cancellations, read
        from its wire keys as ``CustomerState.from_dict`` reads them ("vw": [first
        view, last view, views], "fc": [first cart, first checkout], "cn": [full,
        partial, dropped, refunded, ...], "rr")."""
        pairs = {
            f"{key.rsplit('/', 2)[0]}/{key.rsplit('/', 1)[1]}"
            for key, n in decided.items()
            if n > 0 and key.endswith((_DELIVERED, _HOLDOUT))
        }
        for pair in pairs:  # a customer counts once per rule and group
            self.groups[pair] = self.groups.get(pair, 0) + 1
        vw = d.get("vw")
        if vw is not None and vw[0] is not None:
            fc = d.get("fc") or (None, None)
            counts = funnel_stage_counts(fc[0], fc[1], orders)
            cell = self.funnel.setdefault(month_label(vw[0]), [0] * len(FUNNEL_STAGES))
            for i, n in enumerate(counts):
                cell[i] += n
        rr = d.get("rr")
        if rr:
            add_revenue(self.recovered, rr)
        cn = d.get("cn")
        if cn:
            self.cancels[0] += cn[0]
            self.cancels[1] += cn[1]
            for cur, amount in cn[3].items():
                self.refunded[cur] = self.refunded.get(cur, Decimal(0)) + Decimal(amount)

    def _count_crr(self, first: int, spans: Iterable[list[int]]) -> None:
        """Add this buyer to CRR's S0 / N / E of every month it counts in.

        A month's S0 asks "active at its start - 1" (an instant in the month
        before), E "active at its last instant, or at ``as_of``" and N "first order
        in it"; each span [lo, hi) is walked over the months it touches, so
        nothing is kept per customer (and the scan allocates little).
        """
        as_of = self.as_of
        k = month_of(first)
        if first <= min(month_start_at(k + 1) - 1, as_of):
            self._crr_cell(k)[1] += 1
        hit_s0: set[int] = set()
        hit_e: set[int] = set()
        for lo, hi in spans:
            k = month_of(lo)
            last = month_of(min(hi - 1, as_of)) + 1
            while k <= last and month_start_at(k) <= as_of:
                if lo <= month_start_at(k) - 1 < hi:
                    hit_s0.add(k)
                if lo <= min(month_start_at(k + 1) - 1, as_of) < hi:
                    hit_e.add(k)
                k += 1
        for k in hit_s0:
            self._crr_cell(k)[0] += 1
        for k in hit_e:
            self._crr_cell(k)[2] += 1

    def _crr_cell(self, k: int) -> list[int]:
        label = month_name(k)
        cell = self.crr.get(label)
        if cell is None:
            cell = self.crr[label] = [0, 0, 0]
        return cell

    def finish(self) -> ReportInputs:
        """Sort the TTSP gaps (call once, last)."""
        for cohort in self.cohorts.values():
            cohort["ttsp"].sort()
        return self

    # --- wire form -----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": SCHEMA_INPUTS,
            "as_of": self.as_of,
            "customers": self.customers,
            "lifecycle": self.lifecycle,
            "decisions": self.decisions,
            "conversions": self.conversions,
            "buyers": self.buyers,
            "repeaters": self.repeaters,
            "first_order_at": self.first_order_at,
            "orders": self.orders,
            "spend": {cur: str(x) for cur, x in self.spend.items()},
            "order_currencies": self.order_currencies,
            "cohorts": self.cohorts,
            "crr": self.crr,
        }
        # Only when some customer has them: parts without windows stay as they were.
        if self.sends:
            out["sends"] = self.sends
        if self.p_alive is not None:
            out["p_alive"] = self.p_alive
        # The lifecycle's counts only with their inputs (the groups only beside
        # recovered revenue or from a part that has firings at all).
        if self.funnel:
            out["funnel"] = self.funnel
        if self.recovered:
            out["recovered"] = {
                rule: {g: {c: str(x) for c, x in sums.items()} for g, sums in groups.items()}
                for rule, groups in self.recovered.items()
            }
        if self.groups:
            out["groups"] = self.groups
        if self.cancels[0] or self.cancels[1] or self.refunded:
            out["cancellations"] = self.cancels
            out["refunded"] = {cur: str(x) for cur, x in self.refunded.items()}
        return out


def _ttsp(buyers: int, gaps: list[int], mature: list[int], back: list[int]) -> dict[str, Any]:
    return ttsp_summary(buyers, [g / MICROS_PER_DAY for g in gaps], mature, back)


def merge_report(
    parts: Iterable[Mapping[str, Any]], *, as_of: int, settings: ReportSettings | None = None
) -> dict[str, Any]:
    """The ``report/1`` document over every part's rows (each made for ``as_of``)."""
    settings = settings or ReportSettings()
    parts = list(parts)
    for p in parts:
        if p["as_of"] != as_of:
            raise ValueError(f"report inputs as of {p['as_of']}, merging as of {as_of}")
    lifecycle = dict.fromkeys(STAGES, 0)
    decisions_by_key: dict[str, int] = {}
    conversions_by_key: dict[str, int] = {}
    spend: dict[str, Decimal] = {}
    currencies: dict[str, int] = {}
    cohorts: dict[str, dict[str, Any]] = {}
    crr_counts: dict[str, list[int]] = {}
    sends: dict[str, list[int]] = {}
    p_alive: dict[str, list[int]] | None = None
    customers = buyers = repeaters = orders = 0
    first: int | None = None
    funnel: dict[str, list[int]] = {}
    revenue: dict[str, dict[str, dict[str, Decimal]]] = {}
    groups: dict[tuple[str, str], int] = {}
    cancels = [0, 0]
    refunded: dict[str, Decimal] = {}
    for p in parts:
        for label, counts in p.get("funnel", {}).items():
            cell = funnel.setdefault(label, [0] * len(FUNNEL_STAGES))
            for i, n in enumerate(counts):
                cell[i] += n
        add_revenue(revenue, p.get("recovered", {}))
        for pair, n in p.get("groups", {}).items():
            rule, group = pair.rsplit("/", 1)
            groups[(rule, group)] = groups.get((rule, group), 0) + n
        for i, n in enumerate(p.get("cancellations", (0, 0))):
            cancels[i] += n
        for cur, amount in p.get("refunded", {}).items():
            refunded[cur] = refunded.get(cur, Decimal(0)) + Decimal(amount)
        customers += p["customers"]
        buyers += p["buyers"]
        repeaters += p["repeaters"]
        orders += p["orders"]
        _add(lifecycle, p["lifecycle"])
        _add(decisions_by_key, p["decisions"])
        _add(conversions_by_key, p["conversions"])
        add_counts(sends, p.get("sends", {}))
        if "p_alive" in p:
            p_alive = p_alive if p_alive is not None else {}
            for key, bins in p["p_alive"].items():
                into_bins = p_alive.setdefault(key, [0] * len(bins))
                for i, n in enumerate(bins):
                    into_bins[i] += n
        _add(currencies, p["order_currencies"])
        for cur, amount in p["spend"].items():
            spend[cur] = spend.get(cur, Decimal(0)) + Decimal(amount)
        if p["first_order_at"] is not None and (first is None or p["first_order_at"] < first):
            first = p["first_order_at"]
        for label, c in p["cohorts"].items():
            zeros = [0] * len(REPEAT_WINDOWS)
            into = cohorts.setdefault(
                label, {"buyers": 0, "ttsp": [], "mature": zeros, "back": zeros}
            )
            into["buyers"] += c["buyers"]
            into["ttsp"].extend(c["ttsp"])
            into["mature"] = [a + b for a, b in zip(into["mature"], c["mature"], strict=True)]
            into["back"] = [a + b for a, b in zip(into["back"], c["back"], strict=True)]
        for label, counts in p["crr"].items():
            into_crr = crr_counts.setdefault(label, [0, 0, 0])
            for i in range(3):
                into_crr[i] += counts[i]
    all_gaps = sorted(g for c in cohorts.values() for g in c["ttsp"])
    overall = _ttsp(
        buyers,
        all_gaps,
        [sum(c["mature"][i] for c in cohorts.values()) for i in range(len(REPEAT_WINDOWS))],
        [sum(c["back"][i] for c in cohorts.values()) for i in range(len(REPEAT_WINDOWS))],
    )

    def crr_cell(label: str, _start: int, _last: int) -> tuple[int, int, int]:
        s0, n, e = crr_counts.get(label, (0, 0, 0))
        return s0, n, e

    return report_document(
        as_of=as_of,
        customers=customers,
        buyers=buyers,
        repeaters=repeaters,
        ttsp={
            "overall": overall,
            "cohorts": [
                {"cohort": label, **_ttsp(c["buyers"], sorted(c["ttsp"]), c["mature"], c["back"])}
                for label, c in sorted(cohorts.items())
            ],
            "histogram": histogram(g / MICROS_PER_DAY for g in all_gaps),
        },
        crr=crr_block(first, as_of, (month_number(label) for label in crr_counts), crr_cell),
        clv=clv_block(first, as_of, buyers, orders, spend, currencies, settings.clv_lifetime_years),
        lifecycle=lifecycle,
        decisions=_parsed(decisions_by_key),
        conversions=_parsed(conversions_by_key),
        sends=sends,
        p_alive=p_alive,
        funnel=funnel_block(funnel),
        recovered=recovered_block(revenue, groups),
        cancellations=cancellations_block(orders + cancels[0], cancels[0], cancels[1], refunded),
    )
