"""The backtest as one self-contained HTML page (docs/rules.md "Backtest").

Inline SVG charts and inline CSS only: no script, no external file, no network, so
the page can be mailed or attached to a ticket and opens the same anywhere.  Per
rule, a bar per ISO week stacks delivered and each suppression reason (with the
baseline's delivered nudges as a line when there is one); then the tables of the
``backtest/1`` document and the baseline difference with its examples.
"""

from __future__ import annotations

from datetime import date, timedelta
from html import escape
from typing import Any

from streams.ops.backtest import NO_FIRING

# One colour per outcome code; codes not listed here cycle through SPARE.
COLOURS = {
    "delivered": "#2b8a3e",
    "holdout": "#868e96",
    "opted_out": "#c92a2a",
    "min_gap": "#f08c00",
    "frequency_cap": "#5f3dc4",
    "outranked": "#1971c2",
}
SPARE = ("#0b7285", "#a61e4d", "#5c940d", "#d9480f")
BASELINE_COLOUR = "#000000"
WIDTH, HEIGHT, PAD = 760, 220, 40

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1280px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: 13px; }
th, td { padding: .2em .5em; border-bottom: 1px solid #ddd; text-align: right; }
td { white-space: nowrap; }
th:first-child, td:first-child, th.l, td.l { text-align: left; }
.legend span { display: inline-block; margin-right: 1em; }
.legend i { display: inline-block; width: .9em; height: .9em; margin-right: .3em; }
svg text { font-size: 10px; fill: #444; }
.muted { color: #777; }
"""


def _colour(code: str, codes: list[str]) -> str:
    if code in COLOURS:
        return COLOURS[code]
    extra = [c for c in codes if c not in COLOURS]
    return SPARE[extra.index(code) % len(SPARE)]


def _num(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}{unit}"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def week_span(weeks: list[str]) -> list[str]:
    """Every ISO week from the first to the last of ``weeks``: a quiet week keeps its
    place on the time axis."""
    if not weeks:
        return []

    def monday(week: str) -> date:
        return date.fromisocalendar(int(week[:4]), int(week[6:]), 1)

    day, last = monday(min(weeks)), monday(max(weeks))
    out = []
    while day <= last:
        year, number, _ = day.isocalendar()
        out.append(f"{year}-W{number:02d}")
        day += timedelta(days=7)
    return out


def _weekly_chart(
    span: list[str],
    weeks: list[dict[str, Any]],
    codes: list[str],
    baseline: dict[str, int] | None,
) -> str:
    """Stacked bars of outcomes per week; the baseline's delivered per week as a line."""
    if not weeks and not baseline:
        return '<p class="muted">No firing in the window.</p>'
    by_name = {w["week"]: w for w in weeks}
    names = span
    stacks = [
        [("delivered", by_name[n]["delivered"])]
        + [(c, by_name[n]["suppressed"][c]) for c in codes[1:]]
        if n in by_name
        else []
        for n in names
    ]
    top = max([sum(n for _, n in s) for s in stacks] + list((baseline or {}).values()) + [1])
    step = (WIDTH - 2 * PAD) / len(names)
    bar = max(1.0, step * 0.8)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img">',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#999"/>',
        f'<text x="{PAD - 4}" y="{PAD}" text-anchor="end">{top:,}</text>',
        f'<text x="{PAD - 4}" y="{HEIGHT - PAD}" text-anchor="end">0</text>',
    ]
    scale = (HEIGHT - 2 * PAD) / top
    for i, (name, stack) in enumerate(zip(names, stacks, strict=True)):
        x = PAD + i * step
        y = HEIGHT - PAD
        for code, n in stack:
            if not n:
                continue
            h = n * scale
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{_colour(code, codes)}"><title>{escape(name)} {escape(code)}: '
                f"{n:,}</title></rect>"
            )
        if i % max(1, len(names) // 8) == 0:
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - PAD + 14}">{escape(name)}</text>')
    if baseline is not None:
        points = " ".join(
            f"{PAD + i * step + bar / 2:.1f},{HEIGHT - PAD - baseline.get(n, 0) * scale:.1f}"
            for i, n in enumerate(names)
        )
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{BASELINE_COLOUR}" '
            'stroke-width="1.5" stroke-dasharray="4 2"><title>baseline: delivered</title>'
            "</polyline>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _legend(codes: list[str], baseline: bool) -> str:
    items = [
        f'<span><i style="background:{_colour(c, codes)}"></i>{escape(c)}</span>' for c in codes
    ]
    if baseline:
        items.append("<span>- - - baseline: delivered</span>")
    return f'<p class="legend">{"".join(items)}</p>'


def _figures_row(label: list[str], f: dict[str, Any], codes: list[str]) -> str:
    cells = [
        *(f'<td class="l">{escape(x)}</td>' for x in label),
        f"<td>{f['firings']:,}</td>",
        f"<td>{f['delivered']:,}</td>",
        *(f"<td>{f['suppressed'][c]:,}</td>" for c in codes[1:]),
        f"<td>{f['conversions']['delivered']:,}</td>",
        f"<td>{f['conversions']['holdout']:,}</td>",
        f"<td>{_rate(f['conversion_rate']['delivered'])}</td>",
        f"<td>{_rate(f['conversion_rate']['holdout'])}</td>",
        f"<td>{_num(f['lift']['points'], ' pt', 2)}</td>",
        f"<td>{_num(f['lift']['relative_percent'], '%')}</td>",
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def _figures_header(label: list[str], codes: list[str]) -> str:
    names = [
        *label,
        "firings",
        "delivered",
        *codes[1:],
        "conv. delivered",
        "conv. holdout",
        "CR delivered",
        "CR holdout",
        "lift",
        "lift rel.",
    ]
    return "<tr>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>"


def _why(decisions: list[dict[str, Any]]) -> str:
    if not decisions:
        return NO_FIRING
    return ", ".join(
        f"step {d['step']} {escape(str(d['due_at'])[:10])} {escape(str(d['outcome']))}"
        for d in decisions
    )


def _diff_section(doc: dict[str, Any]) -> str:
    base = doc["baseline"]
    top = max(
        [1] + [max(d["newly"]["customers"], d["no_longer"]["customers"]) for d in base["diff"]]
    )
    before = {r["rule"]: r["totals"]["delivered"] for r in base["by_rule"]}
    after = {r["rule"]: r["totals"]["delivered"] for r in doc["by_rule"]}
    rows = []
    for d in base["diff"]:
        newly, gone = d["newly"]["customers"], d["no_longer"]["customers"]
        bars = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="304" height="16">'
            f'<rect x="152" y="2" width="{150 * newly / top:.1f}" height="12" fill="#2b8a3e"/>'
            f'<rect x="{152 - 150 * gone / top:.1f}" y="2" width="{150 * gone / top:.1f}" '
            'height="12" fill="#c92a2a"/><line x1="152" y1="0" x2="152" y2="16" stroke="#999"/>'
            "</svg>"
        )
        rows.append(
            f'<tr><td class="l">{escape(d["rule"])}</td>'
            f"<td>{before.get(d['rule'], 0):,}</td><td>{after.get(d['rule'], 0):,}</td>"
            f"<td>{newly:,}</td><td>{gone:,}</td><td>{bars}</td></tr>"
        )
    examples = []
    for d in base["diff"]:
        for side, title in (("newly", "newly gets"), ("no_longer", "no longer gets")):
            for e in d[side]["examples"]:
                examples.append(
                    f'<tr><td class="l">{escape(d["rule"])}</td>'
                    f'<td class="l">{escape(e["customer_id"])}</td><td class="l">{title}</td>'
                    f'<td class="l">{_why(e["file"])}</td><td class="l">{_why(e["baseline"])}</td>'
                    "</tr>"
                )
    return (
        f"<h2>Against the baseline {escape(base['rules_file'])}</h2>"
        "<p>Customers with at least one delivered nudge from the rule under one file and "
        "none under the other (red: no longer get one; green: newly get one).</p>"
        "<table><tr><th>rule</th><th>delivered: baseline</th><th>file</th><th>newly get</th>"
        "<th>no longer get</th><th></th></tr>"
        + "".join(rows)
        + "</table><h3>Examples</h3><table><tr>"
        + "".join(
            f'<th class="l">{h}</th>'
            for h in ("rule", "customer", "", "under the file", "under the baseline")
        )
        + "</tr>"
        + "".join(examples)
        + "</table>"
    )


def _send_windows_section(windows: list[dict[str, Any]]) -> str:
    """Per rule with a send window: waits, drops, cancellations and the delivered
    nudges by the customer's local hour as 24 small bars (docs/send-windows.md "Outputs")."""
    rows = []
    for x in windows:
        hours: list[int] = x["delivered_by_local_hour"]
        top = max([1, *hours])
        bars = "".join(
            f'<rect x="{h * 10}" y="{30 - 30 * n / top:.1f}" width="8" '
            f'height="{30 * n / top:.1f}" fill="#1c7ed6"><title>{h:02d}h: {n:,}</title></rect>'
            for h, n in enumerate(hours)
            if n
        )
        chart = (
            '<svg xmlns="http://www.w3.org/2000/svg" width="240" height="42">'
            f'{bars}<text x="0" y="41" font-size="9">0h</text>'
            '<text x="120" y="41" font-size="9">12h</text>'
            '<text x="222" y="41" font-size="9">23h</text></svg>'
        )
        rows.append(
            f'<tr><td class="l">{escape(x["rule"])}</td><td>{x["deferred"]:,}</td>'
            f"<td>{x['outside_window']:,}</td><td>{x['cancelled']:,}</td>"
            f"<td>{sum(hours):,}</td><td>{chart}</td></tr>"
        )
    return (
        "<h2>Send windows</h2><p>Rules with a send window: reminders that waited for it, "
        "were dropped outside it or cancelled before it, and the delivered nudges by the "
        "customer's local send hour (0-23).</p><table><tr><th>rule</th><th>waited</th>"
        "<th>dropped</th><th>cancelled</th><th>delivered</th><th>by local hour</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def render_html(doc: dict[str, Any]) -> str:
    """The page for a ``backtest/1`` document."""
    codes: list[str] = doc["outcomes"]
    h = doc["history"]
    w = doc["window"]
    base = doc["baseline"]
    base_weeks: dict[str, dict[str, int]] = {}
    if base is not None:
        for r in base["by_rule"]:
            base_weeks[r["rule"]] = {x["week"]: x["delivered"] for x in r["weeks"]}
    span = week_span(
        [x["week"] for x in doc["by_week"]] + [x for b in base_weeks.values() for x in b]
    )
    body = [
        f"<h1>Backtest of {escape(doc['rules_file'])}</h1>",
        f"<p>History {escape(h['path'])}: {h['lines']:,} lines, {h['events']:,} events, "
        f"{h['customers']:,} customers, {h['dead_letters']['total']:,} dead letters. "
        f"Decisions due from {escape(w['since'] or 'the first event')} "
        + escape(f"to before {w['until']}" if w["until"] else f"to {w['last_due'] or '-'}")
        + ".</p>",
        "<h2>Per rule and step</h2><table>",
        _figures_header(["rule", "step"], codes),
    ]
    for r in doc["by_rule"]:
        body.append(_figures_row([r["rule"], "all"], r["totals"], codes))
        body.extend(
            _figures_row([r["rule"], str(s["step"])], s["totals"], codes) for s in r["steps"]
        )
    body.append(_figures_row(["total", ""], doc["totals"], codes))
    body.append("</table>")
    body.append(_legend(codes, base is not None))
    for r in doc["by_rule"]:
        body.append(f"<h2>{escape(r['rule'])}: decisions per ISO week</h2>")
        baseline = base_weeks.get(r["rule"], {}) if base else None
        body.append(_weekly_chart(span, r["weeks"], codes, baseline))
    body.append("<h2>Per ISO week</h2><table>")
    body.append(_figures_header(["week"], codes))
    body.extend(_figures_row([x["week"]], x, codes) for x in doc["by_week"])
    body.append("</table>")
    if windows := doc.get("send_windows"):
        body.append(_send_windows_section(windows))
    if base is not None:
        body.append(_diff_section(doc))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Backtest of {escape(doc['rules_file'])}</title><style>{CSS}</style></head>"
        "<body>" + "\n".join(body) + "</body></html>\n"
    )
