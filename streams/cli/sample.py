"""retention sample: write a realistic JSONL sample of input events (see streams.feed.sample)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import fields
from typing import BinaryIO

from agents.core.timeutil import MICROS_PER_SECOND, iso
from streams.cli._common import fail
from streams.feed.sample import default_end, generate
from streams.feed.sample_options import (
    DEFAULT_BEYOND_LATENESS,
    DEFAULT_CONSENT_RATE,
    DEFAULT_DUPLICATE_RATE,
    DEFAULT_FAR_DUPLICATE_AFTER,
    DEFAULT_LATE_RATE,
    DEFAULT_MALFORMED_RATE,
    DEFAULT_MAX_LATENESS,
    DEFAULT_PROSPECT_RATE,
    DEFAULT_RETRY_RATE,
    DEFAULT_SHUFFLE_RATE,
    EXTRA_CURRENCIES,
    SampleOptions,
)
from streams.feed.timeargs import date_or_time

HOUR_MICROS = 3600 * MICROS_PER_SECOND
DAY_MICROS = 24 * HOUR_MICROS
WRITE_BATCH = 10_000
# The option names in SampleOptions.check's messages, to be shown as flags.
_FIELD = re.compile(r"\b(?:" + "|".join(f.name for f in fields(SampleOptions)) + r")\b")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write a realistic JSONL sample of purchase, session and consent events in arrival "
        "order: repeat-buying customers (gamma purchase rates, per-purchase drop-out), "
        "prospects, opt-outs, plus duplicates, order retries, shuffles, late events and "
        "malformed messages; with --lifecycle also sign-ups, product views, carts and "
        "cancellations. The same --seed gives the same file."
    )
    parser.add_argument("--customers", type=int, default=1000, help="customers (default 1000)")
    parser.add_argument("--days", type=int, default=365, help="days of history (default 365)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--end",
        help="latest event time: YYYY-MM-DD (00:00 UTC) or RFC 3339 (default: today 00:00 UTC)",
    )
    parser.add_argument("--out", "-o", help="output file (default: stdout)")
    rates = parser.add_argument_group("delivery noise (probabilities per event; 0 disables)")
    _rate(rates, "--duplicate-rate", DEFAULT_DUPLICATE_RATE, "exact duplicate lines")
    _rate(rates, "--retry-rate", DEFAULT_RETRY_RATE, "orders re-sent with a new event_id")
    _rate(rates, "--malformed-rate", DEFAULT_MALFORMED_RATE, "malformed messages")
    _rate(rates, "--late-rate", DEFAULT_LATE_RATE, "events delivered up to --max-lateness late")
    _rate(rates, "--shuffle-rate", DEFAULT_SHUFFLE_RATE, "events shuffled locally (within 1h)")
    _span(
        rates,
        "--max-lateness",
        DEFAULT_MAX_LATENESS,
        HOUR_MICROS,
        "most event time an event may arrive after newer ones; under 24",
    )
    people = parser.add_argument_group("customers")
    _rate(people, "--consent-rate", DEFAULT_CONSENT_RATE, "share of customers who opt out")
    _rate(people, "--prospect-rate", DEFAULT_PROSPECT_RATE, "share of session-only prospects")
    people.add_argument(
        "--lifecycle",
        action="store_true",
        help="also sign-ups, product views (about 10 per order), carts (orders from a cart as "
        "purchase/2), checkouts, abandoned and emptied carts, cancellations "
        '(docs/lifecycle.md "Sample and demo"); orders, sessions and consents stay those '
        "without it",
    )
    hostile = parser.add_argument_group(
        "what real and hostile data do (off by default; the default output is unchanged)"
    )
    _rate(hostile, "--beyond-lateness-rate", 0.0, "events delivered --beyond-lateness late")
    _span(
        hostile,
        "--beyond-lateness",
        DEFAULT_BEYOND_LATENESS,
        HOUR_MICROS,
        "how late those events are, in event time; more than the stream's allowed "
        "lateness (24 h by default) makes them late for it",
    )
    hostile.add_argument(
        "--customer-order",
        action="store_true",
        help="group the file by customer, as warehouse exports are (not by time)",
    )
    _rate(hostile, "--far-duplicate-rate", 0.0, "purchases delivered again much later")
    _span(
        hostile,
        "--far-duplicate-after",
        DEFAULT_FAR_DUPLICATE_AFTER,
        DAY_MICROS,
        "how much later, in event time",
    )
    _rate(
        hostile,
        "--consent-tie-rate",
        0.0,
        "opting-out customers who also opt in at the same instant",
    )
    hostile.add_argument(
        "--currencies",
        type=int,
        default=3,
        metavar="N",
        help=f"currencies of the orders, 3 to {3 + len(EXTRA_CURRENCIES)} (default 3)",
    )


def _rate(group: argparse._ArgumentGroup, flag: str, default: float, what: str) -> None:
    group.add_argument(flag, type=float, default=default, metavar="P", help=f"{what} ({default:g})")


def _span(group: argparse._ArgumentGroup, flag: str, default: int, unit: int, what: str) -> None:
    """A length of event time given in hours or days (``unit``, in micros)."""
    group.add_argument(
        flag,
        type=float,
        default=default / unit,
        metavar="HOURS" if unit == HOUR_MICROS else "DAYS",
        help=f"{what} (default {default / unit:g})",
    )


def _write(lines: Iterable[bytes], out: BinaryIO) -> int:
    count = 0
    batch: list[bytes] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= WRITE_BATCH:
            out.write(b"\n".join(batch) + b"\n")
            count += len(batch)
            batch.clear()
    if batch:
        out.write(b"\n".join(batch) + b"\n")
        count += len(batch)
    return count


def run(args: argparse.Namespace) -> int:
    if args.customers < 0:
        return fail("--customers must not be negative", 2)
    if args.days < 1:
        return fail("--days must be at least 1", 2)
    try:
        end = date_or_time(args.end) if args.end else default_end()
    except ValueError as exc:
        return fail(f"--end: {exc}", 2)
    options = SampleOptions(
        duplicate_rate=args.duplicate_rate,
        retry_rate=args.retry_rate,
        malformed_rate=args.malformed_rate,
        late_rate=args.late_rate,
        shuffle_rate=args.shuffle_rate,
        max_lateness=round(args.max_lateness * HOUR_MICROS),
        consent_rate=args.consent_rate,
        prospect_rate=args.prospect_rate,
        beyond_lateness_rate=args.beyond_lateness_rate,
        beyond_lateness=round(args.beyond_lateness * HOUR_MICROS),
        customer_order=args.customer_order,
        far_duplicate_rate=args.far_duplicate_rate,
        far_duplicate_after=round(args.far_duplicate_after * DAY_MICROS),
        consent_tie_rate=args.consent_tie_rate,
        currencies=args.currencies,
        lifecycle=args.lifecycle,
    )
    try:
        options.check()
    except ValueError as exc:
        # Name the flags, not the Python fields: "--late-rate must be ...".
        return fail(_FIELD.sub(lambda m: "--" + m.group(0).replace("_", "-"), str(exc)), 2)
    lines = generate(args.customers, args.days, args.seed, end, options=options)
    if args.out is None:
        try:
            _write(lines, sys.stdout.buffer)
            sys.stdout.flush()
        except BrokenPipeError:
            # `retention sample | head`: the reader has seen enough; that is not an error.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    try:
        with open(args.out, "wb") as out:
            count = _write(lines, out)
    except OSError as exc:
        return fail(f"cannot write {args.out}: {exc.strerror}")
    print(
        f"wrote {count} lines ({args.customers} customers, {args.days} days up to {iso(end)}, "
        f"seed {args.seed}) to {args.out}",
        file=sys.stderr,
    )
    return 0
