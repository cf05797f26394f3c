"""``retention model ACTION``: prediction models (docs/prediction.md).

``fit --from-file HISTORY --until T``: BG/NBD, MBG/NBD and Gamma-Gamma per
currency fitted on the history up to T; the model file (``model/1``) printed
(``--format json``) or written (``--out FILE``); ``--format toml`` prints the
rules file's ``[model]`` table instead (docs/prediction.md "Publishing a model").
Exit 1 below the minimum data.
``evaluate --from-file HISTORY --calibration-end T1 --until T2``: fitted to T1,
compared with the holdout (T1, T2] as a table, JSON or an HTML chart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from streams.cli._common import fail
from streams.config import load_config
from streams.feed.timeargs import date_or_time
from streams.model.history import History, MinimumData, NotEnoughData, read_history


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    fit = actions.add_parser(
        "fit",
        help="fit BG/NBD, MBG/NBD and Gamma-Gamma on a history",
        description=(
            "Fit BG/NBD and MBG/NBD (maximum likelihood) on the purchases of a JSONL history "
            "up to --until, repeat orders counted once per UTC day, and Gamma-Gamma per "
            "currency on the order values; print or write the model file (docs/prediction.md). "
            "Exit 1 when the history is below the minimum data."
        ),
    )
    _common(fit)
    fit.add_argument("--until", required=True, help="last instant of the data (day or time)")
    fit.add_argument(
        "--fitted-at",
        help="the fit time written in the file (default: the last order at or before --until)",
    )
    fit.add_argument(
        "--format",
        choices=("table", "json", "toml"),
        default="table",
        help="toml: the [model] table to paste into a rules file (docs/prediction.md)",
    )
    fit.add_argument("--out", metavar="FILE", help="write the model file (JSON) here")
    ev = actions.add_parser(
        "evaluate",
        help="fit on a calibration period and compare with the holdout",
        description=(
            "Fit on the history up to --calibration-end and compare with (--calibration-end, "
            "--until]: expected against actual repeat order days in total and per calibration "
            "frequency, and per P(alive) decile how many ordered again (docs/prediction.md)."
        ),
    )
    _common(ev)
    ev.add_argument("--calibration-end", required=True, help="end of the calibration period")
    ev.add_argument("--until", required=True, help="end of the holdout (day or time)")
    ev.add_argument("--format", choices=("table", "json"), default="table")
    ev.add_argument("--chart", metavar="FILE.html", help="also write a self-contained HTML chart")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-file", required=True, metavar="HISTORY", help="JSONL event history")
    p.add_argument("--time-unit", choices=("day", "week"), default="week")
    defaults = MinimumData()
    p.add_argument("--min-customers", type=int, default=defaults.customers)
    p.add_argument("--min-repeat-buyers", type=int, default=defaults.repeat_buyers)
    p.add_argument("--min-weeks", type=float, default=defaults.weeks)


def run(args: argparse.Namespace) -> int:
    try:
        times = {
            name: date_or_time(getattr(args, name))
            for name in ("until", "calibration_end", "fitted_at")
            if getattr(args, name, None) is not None
        }
    except ValueError as exc:
        return fail(str(exc), 2)
    config = load_config()
    try:
        with Path(args.from_file).open("rb") as handle:
            history = read_history(
                handle,
                until=times["until"],
                max_bytes=config.max_message_bytes,
                earliest=config.min_event_time,
            )
    except FileNotFoundError:
        return fail(f"--from-file: no such file: {args.from_file}", 2)
    except OSError as exc:
        return fail(f"cannot read {args.from_file}: {exc.strerror}")
    try:
        if args.action == "fit":
            return _fit(args, history, times)
        return _evaluate(args, history, times)
    except NotEnoughData as exc:
        return fail(f"{args.from_file}: {exc}", 1)
    except ValueError as exc:
        return fail(str(exc), 2)


def _fit(args: argparse.Namespace, history: History, times: dict[str, int]) -> int:
    # Imported here: scipy loads in a second or so, which no other command (the
    # worker's start included) should pay (docs/prediction.md "Fitting").
    from streams.model.fit import fit_document, render_json, render_toml

    until = times["until"]
    fitted_at = times.get("fitted_at", history.last_order_at or until)
    doc = fit_document(
        history,
        until=until,
        unit=args.time_unit,
        fitted_at=fitted_at,
        minimum=MinimumData(args.min_customers, args.min_repeat_buyers, args.min_weeks),
    )
    text = render_json(doc)
    if args.out:
        Path(args.out).write_text(text)
    if args.format == "toml":
        return _write(render_toml(doc))
    return _write(text if args.format == "json" else _fit_table(doc, args.out))


def _fit_table(doc: dict[str, Any], out: str | None) -> str:
    data = doc["data"]
    lines = [
        f"Model {doc['version']} fitted at {doc['fitted_at']} on {data['customers']:,} customers "
        f"({data['repeat_buyers']:,} with a repeat order day), {data['from']} to "
        f"{data['until']} ({data['weeks']:g} weeks)",
        "",
        f"{'model':<8} {'unit':<5} {'r':>10} {'alpha':>10} {'a':>10} {'b':>10} {'log-lik':>12}",
    ]
    for kind, m in doc["models"].items():
        p = m["params"]
        lines.append(
            f"{kind:<8} {m['time_unit']:<5} {p['r']:>10.4g} {p['alpha']:>10.4g} "
            f"{p['a']:>10.4g} {p['b']:>10.4g} {m['log_likelihood']:>12.2f}"
        )
    lines += ["", f"{'spend':<8} {'p':>10} {'q':>10} {'v':>10} {'customers':>10}"]
    for currency, g in doc["gamma_gamma"].items():
        if "skipped" in g:
            lines.append(f"{currency:<8} skipped: {g['skipped']}")
            continue
        p = g["params"]
        lines.append(
            f"{currency:<8} {p['p']:>10.4g} {p['q']:>10.4g} {p['v']:>10.4g} {g['customers']:>10,}"
        )
    if out:
        lines += ["", f"written to {out}"]
    return "\n".join(lines) + "\n"


def _evaluate(args: argparse.Namespace, history: History, times: dict[str, int]) -> int:
    from streams.model.chart import render_html
    from streams.model.evaluate import evaluate, render_table

    doc = evaluate(
        history,
        calibration_end=times["calibration_end"],
        until=times["until"],
        unit=args.time_unit,
        minimum=MinimumData(args.min_customers, args.min_repeat_buyers, args.min_weeks),
    )
    if args.chart:
        Path(args.chart).write_text(render_html(doc))
    if args.format == "json":
        return _write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    return _write(render_table(doc))


def _write(text: str) -> int:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    return 0
