"""The evaluation as one self-contained HTML page: inline SVG bar charts, no script,
no stylesheet or font from elsewhere (docs/prediction.md "Evaluate")."""

from __future__ import annotations

import html
from typing import Any

SERIES = (("actual", "#444444"), ("bgnbd", "#1f77b4"), ("mbgnbd", "#ff7f0e"))
LABELS = {"actual": "actual", "bgnbd": "BG/NBD", "mbgnbd": "MBG/NBD"}
WIDTH, HEIGHT, PAD, TOP = 760, 320, 48, 64


def _bars(
    title: str,
    groups: list[tuple[str, dict[str, float]]],
    unit: str,
    labels: dict[str, str] = LABELS,
) -> str:
    """A grouped bar chart: one group per label, one bar per series present; the
    legend sits in a row between the title and the plot."""
    top = max((v for _, vals in groups for v in vals.values()), default=0.0) or 1.0
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - TOP - PAD
    slot = plot_w / max(len(groups), 1)
    names = [n for n, _ in SERIES if any(n in vals for _, vals in groups)]
    bar = slot * 0.8 / max(len(names), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="{PAD}" y="20" font-size="14">{html.escape(title)}</text>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#999"/>',
        f'<text x="4" y="{TOP - 4}" font-size="11">{top:.3g} {html.escape(unit)}</text>',
    ]
    for g, (label, vals) in enumerate(groups):
        x0 = PAD + g * slot + slot * 0.1
        for s, name in enumerate(names):
            value = vals.get(name, 0.0)
            h = plot_h * value / top
            color = dict(SERIES)[name]
            parts.append(
                f'<rect x="{x0 + s * bar:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{labels[name]} {html.escape(label)}: '
                f"{value:.3f}</title></rect>"
            )
        parts.append(
            f'<text x="{x0 + slot * 0.4:.1f}" y="{HEIGHT - PAD + 16}" font-size="11" '
            f'text-anchor="middle">{html.escape(label)}</text>'
        )
    for s, name in enumerate(names):
        parts.append(
            f'<rect x="{PAD + s * 170}" y="30" width="10" height="10" '
            f'fill="{dict(SERIES)[name]}"/><text x="{PAD + 15 + s * 170}" y="39" '
            f'font-size="11">{html.escape(labels[name])}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def render_html(doc: dict[str, Any]) -> str:
    """The page for a ``model_evaluation/1`` document."""
    per_customer = [
        (
            g["x"],
            {
                "actual": g["actual"] / g["customers"] if g["customers"] else 0.0,
                **{
                    k: v / g["customers"] if g["customers"] else 0.0
                    for k, v in g["expected"].items()
                },
            },
        )
        for g in doc["by_frequency"]
    ]
    charts = [
        _bars(
            "Repeat order days per customer in the holdout, by calibration frequency x",
            per_customer,
            "per customer",
        )
    ]
    for kind in ("bgnbd", "mbgnbd"):
        deciles = [
            (str(d["decile"]), {"actual": d["share_ordered_again"], kind: d["p_alive_mean"]})
            for d in doc["by_p_alive"][kind]
        ]
        charts.append(
            _bars(
                f"{LABELS[kind]}: per P(alive) decile at the calibration end",
                deciles,
                "share",
                {"actual": "share who ordered again", kind: f"mean P(alive), {LABELS[kind]}"},
            )
        )
    totals = doc["totals"]
    summary = (
        f"Calibration to {doc['calibration_end']}, holdout to {doc['until']} "
        f"({doc['holdout_length']:g} {doc['time_unit']}s), {doc['customers']:,} customers, "
        f"model {doc['model']['version']}. Repeat order days in the holdout: actual "
        f"{totals['actual']:,}, BG/NBD {totals['expected']['bgnbd']:,.1f}, MBG/NBD "
        f"{totals['expected']['mbgnbd']:,.1f}."
    )
    body = "\n".join(f"<figure>{c}</figure>" for c in charts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>retention model evaluate</title></head>\n"
        '<body style="font-family: sans-serif">\n<h1>Model evaluation</h1>\n'
        f"<p>{html.escape(summary)}</p>\n{body}\n</body></html>\n"
    )
