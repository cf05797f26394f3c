"""The retention report's documents, live and offline (docs/reports.md "Reports").

The live report is built from the customer table read from its changelog topic
(every partition, whichever workers own them), as of the stream clock every
partition has reached (stream mode) or now (wall mode).  The offline summary is
the reference implementation's (:mod:`agents.offline.reference`) over an event
file: the numbers the stream is tested against.  Used by `retention report`,
`retention demo` and the e2e tests.
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import orjson

from agents.core.clock import clock_mode
from agents.core.guardrails import OUTCOMES
from agents.core.reports import CustomerRow, build_report
from agents.core.scores import ScoreInputs, ScoreModel, inputs_of
from agents.core.settings import CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import MICROS_PER_DAY, iso
from agents.offline.reference import ReferenceResult
from streams.config import Config
from streams.kafka import changelog_topics
from streams.ops.tables import read_table


class PastInstant(ValueError):
    """A live report asked for an instant the tables have moved past."""


def live_report(config: Config, as_of: int | None = None) -> dict[str, Any]:
    """The report/1 document from the tables (their changelog), plus where it came from.

    The tables hold each customer's state now, not its history: a report as of an
    instant before their clock (the stream clock every partition has reached, or
    now) would count later orders and cohorts, so it is refused with
    :class:`PastInstant`; the offline report (``--from-file``) takes any instant.
    """
    snapshot = asyncio.run(read_table(config))
    clock = (
        snapshot.stream_watermark(config.partitions)
        if clock_mode(config.clock).event_time
        else None
    )
    if clock is None:
        clock = time.time_ns() // 1000
    if as_of is None:
        as_of = clock
    elif as_of < clock:
        raise PastInstant(
            f"--as-of {iso(as_of)} is before the tables' clock, {iso(clock)}: the live "
            "tables hold the state as of their clock, so a live report as of an earlier "
            "instant would count later orders; use --from-file with the event history"
        )
    rows = [CustomerRow.from_state(s) for s in snapshot.customers.values()]
    # The configured rules file's [model] (docs/prediction.md "Scores"): the P(alive)
    # distribution at the report's clock; none without one.
    model: ScoreModel | None = getattr(config.core.rule_set, "model", None)
    inputs = {} if model is None else _score_inputs(snapshot.customers.values())
    return {
        "source": "live",
        "changelog": changelog_topics(config)[0],
        "records": snapshot.records,
        "clock": config.clock,
        "report": build_report(
            rows, as_of=as_of, settings=config.report, model=model, score_inputs=inputs
        ),
    }


def _score_inputs(states: Iterable[CustomerState]) -> dict[str, ScoreInputs]:
    out = {}
    for state in states:
        found = inputs_of(state)
        if found is not None:
            out[state.customer_id] = found
    return out


def offline_score_inputs(result: ReferenceResult, as_of: int) -> dict[str, ScoreInputs]:
    """Each customer's score inputs at ``as_of`` read from the offline reference's
    facts (its counted orders dated at or before it), as the live report reads them
    from the rows (docs/prediction.md "Scores"): distinct UTC order days, the first
    and last order, spend and orders per currency."""
    out: dict[str, ScoreInputs] = {}
    for customer_id, facts in result.facts.items():
        orders = [(t, cur, amount) for t, cur, amount in facts.order_spend if t <= as_of]
        if not orders:
            continue
        spend: dict[str, Decimal] = {}
        counts: dict[str, int] = {}
        for _, cur, amount in orders:
            spend[cur] = spend.get(cur, Decimal(0)) + amount
            counts[cur] = counts.get(cur, 0) + 1
        out[customer_id] = ScoreInputs(
            order_days=len({t // MICROS_PER_DAY for t, _, _ in orders}),
            first_order_at=orders[0][0],
            last_order_at=orders[-1][0],
            spend={cur: format(total, "f") for cur, total in spend.items()},
            order_currencies=counts,
        )
    return out


def decisions_json(decisions: list[dict[str, Any]]) -> str:
    """A JSON array with one decision per line: valid JSON that diffs and greps well."""
    if not decisions:
        return "[]\n"
    return "[\n" + ",\n".join(orjson.dumps(d).decode() for d in decisions) + "\n]\n"


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: control characters (an ANSI or OSC escape
    sequence in a customer id, a bidi override) are written as ``\\x1b``-style escapes
    instead of being obeyed by the terminal."""
    if text.isprintable():
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in ("Cc", "Cf")
        else ch
        for ch in text
    )


def decisions_table(decisions: list[dict[str, Any]]) -> str:
    columns = ("due_at", "customer_id", "rule", "step", "threshold", "anchor_at", "outcome")
    rows = [[str(d[c]) for c in columns] for d in decisions]
    return _table(list(columns), rows) + f"{len(decisions)} decisions\n"


def offline_summary(result: ReferenceResult, core: CoreSettings, *, source: str) -> dict[str, Any]:
    """The offline summary: inputs, dead letters, customers, decisions per rule and step."""
    counts: dict[tuple[str, int], int] = {}
    for decision in result.decisions:
        key = (decision["rule"], decision["step"])
        counts[key] = counts.get(key, 0) + 1
    by_step = [
        {
            "rule": rule.name,
            "step": n,
            "threshold": step.label(),
            "count": counts.get((rule.name, n), 0),
        }
        for rule in core.rule_set.active
        for n, step in enumerate(rule.steps, start=1)
    ]
    facts = result.facts.values()
    return {
        "source": source,
        "until": iso(result.until) if result.until is not None else None,
        "backfill_until": iso(core.backfill_until) if core.backfill_until is not None else None,
        "lines": result.lines,
        "events": result.events,
        "duplicates": result.duplicates,
        "order_retries": result.order_retries,
        "dead_letters": {
            "total": sum(result.dead_letters.values()),
            "by_code": result.dead_letters,
        },
        "customers": result.customers,
        "customers_with_orders": sum(1 for f in facts if f.order_count >= 1),
        "decisions": {
            "total": len(result.decisions),
            "by_rule_step": by_step,
            "by_outcome": {
                o: sum(1 for d in result.decisions if d["outcome"] == o) for o in OUTCOMES
            },
        },
        "outcomes": len(result.outcomes),
    }


def offline_summary_table(data: dict[str, Any]) -> str:
    lines = [f"Retention report (offline) for {printable(data['source'])}"]
    lines.append(f"  decisions due up to {data['until'] or '-'}")
    if data["backfill_until"]:
        lines.append(f"  backfill: nothing due before {data['backfill_until']} is emitted")
    lines.append("")
    dead = data["dead_letters"]
    pairs: list[tuple[str, Any]] = [
        ("lines read", data["lines"]),
        ("events", data["events"]),
        ("duplicates (same event_id)", data["duplicates"]),
        ("order retries (same order_id)", data["order_retries"]),
        ("dead letters", dead["total"]),
        *((f"  {code}", n) for code, n in dead["by_code"].items()),
        ("customers", data["customers"]),
        ("  with orders", data["customers_with_orders"]),
        ("decisions", data["decisions"]["total"]),
    ]
    width = max(len(label) for label, _ in pairs)
    lines.extend(f"  {label:<{width}}  {value:>10,}" for label, value in pairs)
    lines.append("")
    rows = [
        [r["rule"], str(r["step"]), r["threshold"], f"{r['count']:,}"]
        for r in data["decisions"]["by_rule_step"]
    ]
    return "\n".join(lines) + "\n" + _table(["rule", "step", "threshold", "decisions"], rows)


def _table(header: list[str], rows: list[list[str]]) -> str:
    rows = [[printable(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out.extend(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
    return "\n".join(out) + "\n"
