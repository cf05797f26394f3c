"""retention report: retention numbers and decisions.

Without ``--from-file`` the live report: the customer table read from its
changelog topic (every partition, whichever workers own them), as of the stream
clock every partition has reached (stream mode) or now (wall mode).
``--from-file FILE`` computes the same report offline with the reference
implementation (:mod:`agents.offline.reference`), the numbers the stream is
tested against.  ``--decisions --format json`` prints the offline decisions, one
per line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka.errors import KafkaConnectionError

from agents.core.guardrails import OUTCOMES
from agents.core.reports import CustomerRow, build_report, render_report
from agents.core.settings import RULE_OVERDUE, CoreSettings
from agents.core.timeutil import format_duration, iso
from agents.offline.reference import ReferenceResult, compute_decisions
from streams.commands._common import fail
from streams.config import Config, load_config
from streams.kafka import changelog_topics
from streams.sample import iso_date_or_time
from streams.tables import read_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Retention report. With --from-file, computed offline from a JSONL event file by "
        "the reference implementation the stream is tested against."
    )
    parser.add_argument(
        "--from-file",
        metavar="FILE",
        help="JSONL event file ('-' for stdin); without it, the live report (from the tables)",
    )
    parser.add_argument(
        "--until",
        metavar="T",
        help="evaluate decisions due at or before T: RFC 3339, YYYY-MM-DD (00:00 UTC) or "
        "'latest' (default: the latest valid event time in the file)",
    )
    parser.add_argument(
        "--now",
        metavar="T",
        help="the processor clock for the future-timestamp check (default: the wall clock)",
    )
    parser.add_argument(
        "--as-of",
        metavar="T",
        help="report as of T (default: the evaluation horizon; live: the stream clock or now)",
    )
    parser.add_argument(
        "--decisions",
        action="store_true",
        help="print every decision instead of the summary",
    )
    parser.add_argument(
        "--format",
        choices=("json", "table"),
        default="table",
        help="output format (default: table)",
    )


class _ArgumentError(ValueError):
    """A bad command-line value (exit 2)."""


def _time_arg(name: str, text: str | None) -> int | None:
    if text is None or text == "latest":
        return None
    try:
        return iso_date_or_time(text)
    except ValueError as exc:
        raise _ArgumentError(f"{name}: {exc}") from None


@contextmanager
def _open(name: str) -> Iterator[IO[bytes]]:
    if name == "-":
        yield sys.stdin.buffer
        return
    with Path(name).open("rb") as handle:
        yield handle


def live_report(config: Config, as_of: int | None = None) -> dict[str, Any]:
    """The report/1 document from the tables (their changelog), plus where it came from."""
    snapshot = asyncio.run(read_table(config))
    if as_of is None:
        as_of = snapshot.stream_watermark(config.partitions) if config.clock == "stream" else None
        if as_of is None:
            as_of = time.time_ns() // 1000
    rows = [CustomerRow.from_state(s) for s in snapshot.customers.values()]
    return {
        "source": "live",
        "changelog": changelog_topics(config)[0],
        "records": snapshot.records,
        "clock": config.clock,
        "report": build_report(rows, as_of=as_of, settings=config.report),
    }


def _run_live(args: argparse.Namespace, config: Config, as_of: int | None) -> int:
    if args.decisions:
        return fail("--decisions needs --from-file (decisions live on the decisions topic)", 2)
    try:
        data = live_report(config, as_of)
    except KafkaConnectionError as exc:
        return fail(f"cannot reach Kafka at {config.kafka}: {exc}")
    if args.format == "json":
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        text = (
            f"Retention report (live, from {data['changelog']}, {data['records']:,} records)\n\n"
            + render_report(data["report"])
        )
    return _write(text)


def _write(text: str) -> int:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        until = _time_arg("--until", args.until)
        now = _time_arg("--now", args.now)
        as_of = _time_arg("--as-of", args.as_of)
    except _ArgumentError as exc:
        return fail(str(exc), 2)
    config = load_config()
    if not args.from_file:
        return _run_live(args, config, as_of)
    try:
        with _open(args.from_file) as handle:
            result = compute_decisions(handle, config, until=until, now=now)
    except FileNotFoundError:
        return fail(f"--from-file: no such file: {args.from_file}", 2)
    except OSError as exc:
        return fail(f"cannot read {args.from_file}: {exc.strerror}")
    if args.decisions:
        text = (
            decisions_json(result.decisions)
            if args.format == "json"
            else decisions_table(result.decisions)
        )
    else:
        data = summary(result, config.core, source=args.from_file)
        horizon = as_of if as_of is not None else result.until
        if horizon is not None:
            data["report"] = build_report(result.rows, as_of=horizon, settings=config.report)
        text = (
            orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
            if args.format == "json"
            else summary_table(data)
            + ("\n" + render_report(data["report"]) if "report" in data else "")
        )
    return _write(text)


# --- rendering -----------------------------------------------------------------------


def decisions_json(decisions: list[dict[str, Any]]) -> str:
    """A JSON array with one decision per line: valid JSON that diffs and greps well."""
    if not decisions:
        return "[]\n"
    return "[\n" + ",\n".join(orjson.dumps(d).decode() for d in decisions) + "\n]\n"


def decisions_table(decisions: list[dict[str, Any]]) -> str:
    columns = ("due_at", "customer_id", "rule", "step", "threshold", "anchor_at", "outcome")
    rows = [[str(d[c]) for c in columns] for d in decisions]
    return _table(list(columns), rows) + f"{len(decisions)} decisions\n"


def summary(result: ReferenceResult, core: CoreSettings, *, source: str) -> dict[str, Any]:
    """The offline summary: inputs, dead letters, customers, decisions per rule and step."""
    counts: dict[tuple[str, int], int] = {}
    for decision in result.decisions:
        key = (decision["rule"], decision["step"])
        counts[key] = counts.get(key, 0) + 1
    by_step = [
        {
            "rule": ladder.rule,
            "step": step,
            "threshold": _threshold_label(ladder.rule, threshold, core),
            "count": counts.get((ladder.rule, step), 0),
        }
        for ladder in core.ladders()
        for step, threshold in enumerate(ladder.steps, start=1)
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


def _threshold_label(rule: str, threshold: int, core: CoreSettings) -> str:
    text = format_duration(timedelta(microseconds=threshold))
    if rule == RULE_OVERDUE:  # per customer: the floor or k x their median gap
        return f"max({text}, {core.overdue_multiplier:g}x median gap)"
    return text


def summary_table(data: dict[str, Any]) -> str:
    lines = [f"Retention report (offline) for {data['source']}"]
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
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out.extend(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
    return "\n".join(out) + "\n"
