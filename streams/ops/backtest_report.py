"""The backtest's report: the ``backtest/1`` document and its table (docs/rules.md "Backtest").

:mod:`streams.ops.backtest` computes; this module shapes the counts into figures per
rule, step and ISO week (firings, delivered, suppressed by reason, holdout,
conversions per group, conversion rates and lift) and renders the table.
:mod:`streams.ops.backtest_html` renders the same document as a page.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from agents.core.guardrails import (
    OUTCOME_CANCELLED,
    OUTCOME_OUTSIDE_WINDOW,
    OUTCOME_SKIPPED,
    OUTCOME_SUPERSEDED,
    OUTCOMES,
    WINDOW_OUTCOMES,
)
from agents.core.report_text import send_hour_line
from agents.core.timeutil import iso
from streams.ops.backtest import NO_FIRING, BacktestResult
from streams.ops.backtest_tally import SEND, SEND_DEFERRED, Example, RuleDiff, Tally
from streams.ops.reporting import printable

SCHEMA = "backtest/1"
DELIVERED = "delivered"
HOLDOUT = "holdout"
NOT_FIRED = frozenset({OUTCOME_SUPERSEDED, OUTCOME_SKIPPED})
GROUPS = (DELIVERED, HOLDOUT)
CONVERSIONS = "conversions:"


def outcome_codes(tallies: Iterable[Tally | None]) -> list[str]:
    """Every outcome code: today's in their guardrail order, then any other seen."""
    seen = {k[3] for t in tallies if t is not None for k in t.counts}
    extra = sorted(c for c in seen if not c.startswith((CONVERSIONS, SEND)) and c not in OUTCOMES)
    return [*OUTCOMES, *extra]


def figures(counts: dict[str, int], codes: list[str]) -> dict[str, Any]:
    """One cell of the report from summed counts: firings, outcomes, conversions, lift."""
    delivered = counts.get(DELIVERED, 0)
    holdout = counts.get(HOLDOUT, 0)
    converted = {g: counts.get(CONVERSIONS + g, 0) for g in GROUPS}
    rate_d = converted[DELIVERED] / delivered if delivered else None
    rate_h = converted[HOLDOUT] / holdout if holdout else None
    points = relative = None
    if rate_d is not None and rate_h is not None:
        points = (rate_d - rate_h) * 100
        if rate_h:
            relative = (rate_d - rate_h) / rate_h * 100
    return {
        # Superseded and skipped steps are decisions that never fired (docs/rules.md
        # "Backtest"): listed by code beside the others, never counted as firings.
        "firings": sum(counts.get(c, 0) for c in codes if c not in NOT_FIRED),
        "delivered": delivered,
        "suppressed": {c: counts.get(c, 0) for c in codes if c != DELIVERED},
        "holdout": holdout,
        "conversions": converted,
        "conversion_rate": {DELIVERED: _round(rate_d, 6), HOLDOUT: _round(rate_h, 6)},
        "lift": {"points": _round(points, 4), "relative_percent": _round(relative, 2)},
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class _Sums:
    """Counts summed by any grouping of (rule, step, week), in one pass."""

    def __init__(self, tally: Tally) -> None:
        self.groups: dict[Hashable, dict[str, int]] = {}
        for (rule, step, week, what), n in tally.counts.items():
            groups = (
                ("total",),
                ("rule", rule),
                ("step", rule, step),
                ("step-week", rule, step, week),
                ("rule-week", rule, week),
                ("week", week),
            )
            for group in groups:
                cell = self.groups.setdefault(group, {})
                cell[what] = cell.get(what, 0) + n

    def get(self, *group: Any) -> dict[str, int]:
        return self.groups.get(tuple(group), {})


def _rule_order(result: BacktestResult) -> list[str]:
    """The file's rules by priority, then the baseline's others, then any other seen."""
    named = list(result.known_steps)
    tallies = [result.tally, result.baseline_tally]
    seen = {k[0] for t in tallies if t is not None for k in t.counts}
    return named + sorted(seen - set(named))


def _by_rule(
    tally: Tally, rules: list[str], known: dict[str, tuple[int, ...]], codes: list[str]
) -> list[dict[str, Any]]:
    sums = _Sums(tally)
    out = []
    for rule in rules:
        keys = [k for k in tally.counts if k[0] == rule]
        steps = sorted({k[1] for k in keys} | set(known.get(rule, ())))
        out.append(
            {
                "rule": rule,
                "totals": figures(sums.get("rule", rule), codes),
                "steps": [
                    {
                        "step": step,
                        "totals": figures(sums.get("step", rule, step), codes),
                        "weeks": [
                            {"week": w, **figures(sums.get("step-week", rule, step, w), codes)}
                            for w in sorted({k[2] for k in keys if k[1] == step})
                        ],
                    }
                    for step in steps
                ],
                "weeks": [
                    {"week": w, **figures(sums.get("rule-week", rule, w), codes)}
                    for w in sorted({k[2] for k in keys})
                ],
            }
        )
    return out


def _history(tally: Tally, path: str) -> dict[str, Any]:
    return {
        "path": path,
        "lines": tally.lines,
        "events": tally.events,
        "duplicates": tally.duplicates,
        "order_retries": tally.order_retries,
        "customers": tally.customers,
        "dead_letters": {
            "total": sum(tally.dead_letters.values()),
            "by_code": dict(sorted(tally.dead_letters.items())),
        },
    }


def _example(e: Example) -> dict[str, Any]:
    return {"customer_id": e.customer_id, "file": e.file, "baseline": e.baseline}


def _diff(diff: dict[str, RuleDiff], rules: list[str]) -> list[dict[str, Any]]:
    out = []
    for rule in rules:
        d = diff.get(rule, RuleDiff())
        out.append(
            {
                "rule": rule,
                "newly": {
                    "customers": d.newly,
                    "examples": [_example(e) for e in d.newly_examples],
                },
                "no_longer": {
                    "customers": d.no_longer,
                    "examples": [_example(e) for e in d.no_longer_examples],
                },
            }
        )
    return out


def document(result: BacktestResult, *, history: str) -> dict[str, Any]:
    """The ``backtest/1`` document (its keys: docs/rules.md "Backtest")."""
    codes = outcome_codes([result.tally, result.baseline_tally])
    rules = _rule_order(result)
    sums = _Sums(result.tally)
    weeks = sorted({k[2] for k in result.tally.counts})
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "rules_file": result.rules.path,
        "history": _history(result.tally, history),
        "window": {
            "since": iso(result.since) if result.since is not None else None,
            "until": iso(result.until) if result.until is not None else None,
            "last_due": iso(result.horizon) if result.horizon is not None else None,
        },
        "rule_changes": [
            {"effective_at": iso(c.effective_at), "version": c.version, "line": c.line}
            for c in result.rule_changes
        ],
        "outcomes": codes,
        "totals": figures(sums.get("total"), codes),
        "by_rule": _by_rule(result.tally, rules, result.known_steps, codes),
        "by_week": [{"week": w, **figures(sums.get("week", w), codes)} for w in weeks],
        **_send_windows(result.tally, rules),
        "baseline": None,
        "run": {
            "workers": result.workers,
            "chunks": result.chunks,
            "sort_runs": result.runs,
            "seconds": round(result.seconds, 3),
        },
    }
    if result.baseline is not None and result.baseline_tally is not None:
        base = result.baseline_tally
        doc["baseline"] = {
            "rules_file": result.baseline.path,
            "totals": figures(_Sums(base).get("total"), codes),
            "by_rule": [
                {"rule": r["rule"], "totals": r["totals"], "weeks": r["weeks"]}
                for r in _by_rule(base, rules, result.known_steps, codes)
            ],
            "diff": _diff(result.diff, rules),
        }
    return doc


def _send_windows(tally: Tally, rules: list[str]) -> dict[str, Any]:
    """``send_windows``, per rule with a send window: the firings that waited, were
    dropped or cancelled, and the delivered ones by local send hour 0-23
    (docs/send-windows.md "Outputs"); no key when no firing had a window."""
    per_rule: dict[str, dict[str, int]] = {}
    for (rule, _, _, what), n in tally.counts.items():
        if what.startswith(SEND) or what in WINDOW_OUTCOMES:
            cell = per_rule.setdefault(rule, {})
            cell[what] = cell.get(what, 0) + n
    if not per_rule:
        return {}
    return {
        "send_windows": [
            {
                "rule": rule,
                "deferred": c.get(SEND_DEFERRED, 0),
                OUTCOME_OUTSIDE_WINDOW: c.get(OUTCOME_OUTSIDE_WINDOW, 0),
                OUTCOME_CANCELLED: c.get(OUTCOME_CANCELLED, 0),
                "delivered_by_local_hour": [c.get(f"{SEND}h{h:02d}", 0) for h in range(24)],
            }
            for rule in rules
            if (c := per_rule.get(rule)) is not None
        ]
    }


# --- the table ---------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _signed(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:+.2f}{unit}"


def _row(label: list[str], f: dict[str, Any], codes: list[str]) -> list[str]:
    return [
        *label,
        f"{f['firings']:,}",
        f"{f['delivered']:,}",
        *(f"{f['suppressed'][c]:,}" for c in codes if c != DELIVERED),
        f"{f['conversions'][DELIVERED]:,}/{f['conversions'][HOLDOUT]:,}",
        _pct(f["conversion_rate"][DELIVERED]),
        _pct(f["conversion_rate"][HOLDOUT]),
        _signed(f["lift"]["points"], " pt"),
        _signed(f["lift"]["relative_percent"], "%"),
    ]


def _header(label: list[str], codes: list[str]) -> list[str]:
    return [
        *label,
        "firings",
        "delivered",
        *(c for c in codes if c != DELIVERED),
        "conv d/h",
        "CR d",
        "CR h",
        "lift",
        "lift rel",
    ]


def _table(header: list[str], rows: list[list[str]], left: int = 2) -> str:
    rows = [[printable(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        # Labels left, numbers right.
        parts = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)]) + "\n"


def _why(decisions: list[dict[str, Any]]) -> str:
    if not decisions:
        return NO_FIRING
    return ", ".join(f"step {d['step']} {d['due_at'][:10]} {d['outcome']}" for d in decisions)


def render_table(doc: dict[str, Any]) -> str:
    """The document as text a terminal shows well."""
    codes: list[str] = doc["outcomes"]
    h = doc["history"]
    window = doc["window"]
    out = [
        f"Backtest of {printable(doc['rules_file'])} on {printable(h['path'])}",
        f"  decisions due from {window['since'] or 'the first event'} "
        + (
            f"to before {window['until']}" if window["until"] else f"to {window['last_due'] or '-'}"
        ),
        f"  {h['lines']:,} lines, {h['events']:,} events, {h['customers']:,} customers, "
        f"{h['dead_letters']['total']:,} dead letters",
        *(
            [
                "  rules changes of the history applied: "
                + ", ".join(f"{c['version']} from {c['effective_at']}" for c in changes)
            ]
            if (changes := doc.get("rule_changes"))
            else []
        ),
        "",
        "Per rule and step (suppressed by reason; conversions delivered/holdout; "
        "lift = CR delivered - CR holdout)",
    ]
    rows = []
    for r in doc["by_rule"]:
        rows.append(_row([r["rule"], "all"], r["totals"], codes))
        rows.extend(_row([r["rule"], str(s["step"])], s["totals"], codes) for s in r["steps"])
    rows.append(_row(["total", ""], doc["totals"], codes))
    out.append(_table(_header(["rule", "step"], codes), rows))
    out.append("Per ISO week of the due time")
    weeks = [_row([w["week"], ""], w, codes) for w in doc["by_week"]]
    out.append(_table(_header(["week", ""], codes), weeks))
    if windows := doc.get("send_windows"):
        out.append(_render_send_windows(windows))
    if doc["baseline"] is not None:
        out.append(_render_baseline(doc, codes))
    return "\n".join(out)


def _render_send_windows(windows: list[dict[str, Any]]) -> str:
    rows = [
        [
            w["rule"],
            f"{w['deferred']:,}",
            f"{w['outside_window']:,}",
            f"{w['cancelled']:,}",
            send_hour_line(w["delivered_by_local_hour"]),
        ]
        for w in windows
    ]
    header = ["rule", "waited", "dropped", "cancelled", "delivered by local send hour"]
    return "Send windows (the customer's local hour 0-23)\n" + _table(header, rows, left=1)


def _render_baseline(doc: dict[str, Any], codes: list[str]) -> str:
    base = doc["baseline"]
    out = [f"Against the baseline {printable(base['rules_file'])} (delivered nudges)"]
    mine = {r["rule"]: r["totals"] for r in doc["by_rule"]}
    rows = [
        [
            b["rule"],
            f"{b['totals']['delivered']:,}",
            f"{mine[b['rule']]['delivered']:,}",
            f"{d['newly']['customers']:,}",
            f"{d['no_longer']['customers']:,}",
        ]
        for b, d in zip(base["by_rule"], base["diff"], strict=True)
    ]
    out.append(_table(["rule", "baseline", "file", "newly get", "no longer get"], rows, left=1))
    for d in base["diff"]:
        for side, title in (("newly", "newly gets"), ("no_longer", "no longer gets")):
            for e in d[side]["examples"]:
                out.append(
                    f"  {printable(d['rule'])}: {printable(e['customer_id'])} {title} a nudge"
                    f" — file: {_why(e['file'])}; baseline: {_why(e['baseline'])}"
                )
    return "\n".join(out) + "\n"
