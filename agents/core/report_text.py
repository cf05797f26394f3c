"""A readable text rendering of a ``report/1`` document (agents/core/reports.py).

``retention report`` prints it unless asked for JSON; the document stays the
contract, this is only its layout for a terminal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}" if abs(x) < 1000 else f"{x:,.0f}"
    return str(x)


def render_report(report: Mapping[str, Any]) -> str:
    """A readable text rendering of a ``report/1`` document."""
    lines = [
        f"Retention report as of {report['as_of']}",
        f"customers {report['customers']}, buyers {report['buyers']}",
        "",
        "Time to second purchase by first-order month",
        f"  {'cohort':8} {'buyers':>7} {'repeat':>7} {'median d':>9} {'p75 d':>7} {'p90 d':>7}"
        f" {'<=30d':>7} {'<=60d':>7} {'<=90d':>7}",
    ]
    for c in [*report["ttsp"]["cohorts"], {"cohort": "all", **report["ttsp"]["overall"]}]:
        w = c["repeat_within"]
        lines.append(
            f"  {c['cohort']:8} {c['first_time_buyers']:>7} {c['repeaters']:>7}"
            f" {_fmt(c['median_days']):>9} {_fmt(c['p75_days']):>7} {_fmt(c['p90_days']):>7}"
            f" {_fmt(w['30']):>7} {_fmt(w['60']):>7} {_fmt(w['90']):>7}"
        )
    rpr = report["rpr"]
    lines += [
        "",
        f"Repeat purchase rate: {_fmt(rpr['rate'])} ({rpr['repeaters']} of {rpr['buyers']})",
        "",
        "Customer retention rate (E - N) / S0 by month",
        f"  {'period':8} {'S0':>7} {'N':>7} {'E':>7} {'CRR':>8}",
    ]
    for p in report["crr"]:
        mark = " (to date)" if p["partial"] else ""
        lines.append(
            f"  {p['period']:8} {p['s0']:>7} {p['n']:>7} {p['e']:>7} {_fmt(p['crr']):>8}{mark}"
        )
    lines += ["", "Simple CLV = average order value x orders per year x lifetime years"]
    for c in report["clv"]:
        lines.append(
            f"  {c['currency']}: {c['average_order_value']:.2f} x {c['orders_per_year']:.3f}"
            f" x {c['lifetime_years']:g} = {c['clv']:.2f}"
        )
    lines += ["", "Lifecycle stages"]
    lines += [f"  {stage:12} {n:>7}" for stage, n in report["lifecycle"].items()]
    dec = report["decisions"]
    lines += ["", f"Decisions: {dec['total']}"]
    lines += [f"  {outcome:14} {n:>7}" for outcome, n in dec["by_outcome"].items()]
    lines += [
        "",
        "Lift per rule and step (conversion rate delivered vs holdout)",
        f"  {'rule':16} {'step':>4} {'delivered':>16} {'holdout':>16} {'lift %':>8}",
    ]
    for x in report["lift"]:
        d, h = x["delivered"], x["holdout"]
        lines.append(
            f"  {x['rule']:16} {x['step']:>4}"
            f" {d['conversions']:>6}/{d['firings']:<6} {_fmt(d['rate']):>3}"
            f" {h['conversions']:>6}/{h['firings']:<6} {_fmt(h['rate']):>3}"
            f" {_fmt(x['lift_percent']):>8}"
        )
    lines += send_window_lines(report.get("send_windows"))
    lines += p_alive_lines(report.get("p_alive"))
    lines += funnel_lines(report.get("funnel"))
    lines += recovered_lines(report.get("recovered_revenue"))
    lines += cancellation_lines(report.get("cancellations"))
    return "\n".join(lines) + "\n"


def _money(sums: Mapping[str, Any]) -> str:
    """``EUR 120.50, USD 3.00``; ``-`` for none."""
    return ", ".join(f"{cur} {sums[cur]}" for cur in sorted(sums)) or "-"


def funnel_lines(block: list[Mapping[str, Any]] | None) -> list[str]:
    """The funnel per first-view month (docs/reports.md "Funnel"); nothing without
    product views."""
    if not block:
        return []
    lines = [
        "",
        "Funnel by first-view month (customers: viewed, with a cart, a checkout, an order)",
        f"  {'cohort':8} {'viewed':>7} {'cart':>7} {'checkout':>9} {'order':>7} {'order %':>8}",
    ]
    for c in block:
        share = c["rates"]["orders"]
        lines.append(
            f"  {c['cohort']:8} {c['customers']:>7} {c['carts']:>7} {c['checkouts']:>9}"
            f" {c['orders']:>7} {_fmt(None if share is None else share * 100):>8}"
        )
    return lines


def recovered_lines(block: list[Mapping[str, Any]] | None) -> list[str]:
    """Recovered revenue per abandonment rule, delivered against holdout
    (docs/reports.md "Recovered revenue"); nothing without such a conversion."""
    if not block:
        return []
    lines = ["", "Recovered revenue of abandonment rules (converting orders as placed)"]
    for x in block:
        for group in ("delivered", "holdout"):
            g = x[group]
            lines.append(
                f"  {x['rule']:20} {group:9} customers {g['customers']:>6}"
                f"  revenue {_money(g['revenue'])}  per customer {_money(g['per_customer'])}"
            )
    return lines


def cancellation_lines(block: Mapping[str, Any] | None) -> list[str]:
    """Cancelled orders (docs/reports.md "Cancellations"); nothing without any."""
    if not block:
        return []
    return [
        "",
        f"Cancellations: {block['full']} full, {block['partial']} partial"
        f" of {block['placed']} placed orders (rate {_fmt(block['rate'])},"
        f" partial {_fmt(block['partial_rate'])}); refunded {_money(block['refunded'])}",
    ]


def p_alive_lines(block: list[Mapping[str, Any]] | None) -> list[str]:
    """The P(alive) distribution per model version and kind (docs/reports.md
    "P(alive)"): customers in each tenth; nothing when the rules have no model."""
    if block is None:
        return []
    bins = len(block[0]["deciles"]) if block else 10
    heads = " ".join(
        f"{f'<{(i + 1) / bins:.1f}' if i + 1 < bins else '<=1.0':>6}" for i in range(bins)
    )
    lines = [
        "",
        "P(alive) at the report time (customers per tenth)",
        f"  {'model':12} {'kind':7} {'scored':>7} {heads}",
    ]
    for x in block:
        counts = " ".join(f"{n:>6}" for n in x["deciles"])
        lines.append(f"  {x['model_version']:12} {x['kind']:7} {x['customers']:>7} {counts}")
    return lines


def send_window_lines(block: list[Mapping[str, Any]] | None) -> list[str]:
    """The report's send windows (docs/send-windows.md "Outputs"): per rule the
    firings that waited, were dropped and cancelled, and the delivered nudges' local
    send hours; nothing when no rule has a window."""
    if not block:
        return []
    lines = [
        "",
        "Send windows (local send hour: delivered nudges by the customer's hour 0-23)",
        f"  {'rule':16} {'waited':>7} {'dropped':>7} {'cancelled':>9}  local send hours",
    ]
    for x in block:
        lines.append(
            f"  {x['rule']:16} {x['deferred']:>7} {x['outside_window']:>7}"
            f" {x['cancelled']:>9}  {send_hour_line(x['delivered_by_local_hour'])}"
        )
    return lines


def send_hour_line(hours: list[int]) -> str:
    """Delivered nudges by local hour, the hours with any: ``09h 120, 10h 31``."""
    shown = [f"{h:02d}h {n}" for h, n in enumerate(hours) if n]
    return ", ".join(shown) if shown else "-"
