"""retention demo: the whole product on one machine, in a few minutes.

local Kafka + Redis up -> a worker in stream-clock mode -> a realistic sample
replayed and the clock advanced to its end -> a readable summary.  The worker
then keeps running (Faust web on the configured port) until Ctrl-C, unless
--exit-after-summary (or RETENTION_DEMO_EXIT=1) is given.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

import agents.core.rules
from agents.core.guardrails import SUPPRESSIONS
from agents.core.timeutil import iso
from streams.config import Config
from streams.feed.producer import produce_lines
from streams.feed.sample import default_end, generate
from streams.feed.sample_options import SampleOptions
from streams.local.procs import LocalStackError
from streams.local.workers import (
    borrowed_stack,
    dashboard_url,
    say,
    start_worker,
    stop_worker,
    stream_deployment,
)
from streams.ops.offsets import end_offsets, group_lag, read_all
from streams.ops.reporting import live_report, printable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--customers", type=int, default=3000, help="customers in the sample (3000)"
    )
    # A little over a year, so that some first orders have their first anniversary.
    parser.add_argument("--days", type=int, default=400, help="days of history (400)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--exit-after-summary",
        action="store_true",
        default=os.environ.get("RETENTION_DEMO_EXIT") == "1",
        help="stop everything after printing the summary (for tests and CI)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the worker")
    parser.add_argument(
        "--orders-and-sessions",
        action="store_true",
        help="the demo before the lifecycle: the sample without sign-ups, views, carts and "
        "cancellations, and the default rules (default: the sample with them and "
        "lifecycle.toml, docs/lifecycle.md)",
    )


# The demo's rules: the default rules plus welcome, browse and cart abandonment,
# milestones and anniversaries (docs/lifecycle.md "Rules").
LIFECYCLE_RULES = Path(agents.core.rules.__file__).with_name("lifecycle.toml")
# The rules lifecycle.toml adds to the default ones, in the summary's order.
LIFECYCLE_RULE_NAMES = (
    "welcome",
    "browse_abandonment",
    "cart_abandonment",
    "order_milestone",
    "anniversary",
)
# Rule names in the summary's columns: the longest shipped one, browse_abandonment.
RULE_WIDTH = 18
# The lifecycle's input kinds (docs/lifecycle.md "Inputs"), as the summary names them.
LIFECYCLE_KINDS = ("signup", "product_view", "cart", "order_cancelled")


def run(args: argparse.Namespace) -> int:
    try:
        with borrowed_stack() as info:
            config, folder = stream_deployment(info, "demo")
            if not args.orders_and_sessions:
                config = dataclasses.replace(config, rules_file=str(LIFECYCLE_RULES))
            worker = start_worker(config, folder)
            where = Keep(folder, info.already_running, not args.exit_after_summary)
            try:
                return asyncio.run(demo(config, args, worker, where))
            except KeyboardInterrupt:
                say("\nstopping ...")
                return 0
            finally:
                stop_worker(worker)
    except LocalStackError as exc:
        print(f"retention demo: {exc}", file=sys.stderr)
        return 1


@dataclass(frozen=True, slots=True)
class Keep:
    """What outlives the demo's summary, so that "where to look next" names only that."""

    folder: Path  # the deployment's run folder: the sample and the worker's log
    stack_stays: bool  # the local stack was running before the demo (it is left up)
    worker_stays: bool  # the worker (and its dashboard) runs on until Ctrl-C

    @property
    def sample(self) -> Path:
        return self.folder / "sample.jsonl"


async def demo(
    config: Config, args: argparse.Namespace, worker: subprocess.Popen[bytes], keep: Keep
) -> int:
    end = default_end()
    options = SampleOptions(lifecycle=not args.orders_and_sessions)
    lines = list(generate(args.customers, args.days, seed=args.seed, end=end, options=options))
    keep.sample.write_bytes(b"\n".join(lines) + b"\n")
    say(
        f"sample: {len(lines)} messages, {args.customers} customers, "
        f"{args.days} days up to {iso(end)} (kept in {keep.sample})"
    )
    t0 = time.monotonic()
    await produce_lines(config, lines, until=iso(end))
    say(f"replayed to {config.kafka} in {time.monotonic() - t0:.1f} s; waiting for the worker ...")
    try:
        caught_up = await caught_up_at(config, timeout=args.timeout)
    except TimeoutError as exc:
        print(f"retention demo: {exc}", file=sys.stderr)
        return 1
    if worker.poll() is not None:
        print("retention demo: the worker stopped; see its log", file=sys.stderr)
        return 1
    say(
        f"processed in {caught_up - t0:.1f} s (replay start to zero lag; "
        f"no new lag for {SETTLE:.0f} s after)\n"
    )
    await summary(config, len(lines), keep)
    if not keep.worker_stays:
        return 0
    say(f"\ndashboard: {dashboard_url(config)}")
    say(
        f"Faust web: http://{config.web_host}:{config.web_port}/  "
        "(the worker keeps running; Ctrl-C stops everything)"
    )
    while worker.poll() is None:
        await asyncio.sleep(1)
    return 1


# Zero lag must last this long to count as caught up (a partition can show zero lag
# for a moment, e.g. before the worker's first commit); the wait is not processing.
SETTLE = 6.0
POLL = 0.25


async def caught_up_at(config: Config, *, timeout: float) -> float:
    """When (``time.monotonic()``) the group's lag reached zero and then stayed zero
    for SETTLE seconds: the moment the worker had processed everything."""
    start = time.monotonic()
    zero_since: float | None = None
    lag: int | None = None
    while time.monotonic() - start < timeout:
        lag = await group_lag(config)
        now = time.monotonic()
        if lag == 0:
            zero_since = zero_since or now
            if now - zero_since >= SETTLE:
                return zero_since
        else:
            zero_since = None
        await asyncio.sleep(POLL)
    raise TimeoutError(f"group {config.app_id} still has lag {lag} after {timeout} s")


async def summary(config: Config, sent: int, keep: Keep) -> None:
    topics = config.topics
    inputs = sum((await end_offsets(config, topics.inputs())).values())
    internal: list[dict[str, Any]] = []
    for v in await read_all(config, topics.customer_events):
        m = orjson.loads(v)
        internal.extend(m["items"] if m.get("type") == "bundle" else [m])
    customers = {m["ev"]["c"] for m in internal if m.get("type") == "ev"}
    letters = [orjson.loads(v) for v in await read_all(config, topics.dlq)]
    decisions = [orjson.loads(v) for v in await read_all(config, topics.decisions)]
    nudges = [orjson.loads(v) for v in await read_all(config, topics.nudges)]
    say("=" * 72)
    say("retention-processor demo summary")
    say("=" * 72)
    say(f"messages in            {inputs:>8}   (sample lines {sent}, plus clock markers)")
    say(f"valid events forwarded {sum(1 for m in internal if m.get('type') == 'ev'):>8}")
    say(f"customers              {len(customers):>8}")
    kinds = Counter(m["ev"]["k"] for m in internal if m.get("type") == "ev")
    if any(kinds[k] for k in LIFECYCLE_KINDS):
        say("    " + ", ".join(f"{k} {kinds[k]}" for k in sorted(kinds)))
    say(f"dead letters           {len(letters):>8}")
    for code, n in sorted(Counter(d["error_code"] for d in letters).items()):
        say(f"    {code:<22}{n:>6}")
    say(f"decisions              {len(decisions):>8}   nudges delivered {len(nudges)}")
    per_step: Counter[tuple[str, int]] = Counter((d["rule"], d["step"]) for d in decisions)
    for (rule, step), n in sorted(per_step.items()):
        say(f"    {rule:<{RULE_WIDTH}} step {step}  {n:>6}")
    if config.rules_file:
        _lifecycle_lines(decisions, nudges)
    outcomes = Counter(d["outcome"] for d in decisions)
    say(f"delivered              {outcomes['delivered']:>8}")
    say(f"suppressed             {sum(outcomes.values()) - outcomes['delivered']:>8}   by reason:")
    for reason in SUPPRESSIONS:
        say(f"    {reason:<22}{outcomes[reason]:>6}")
    conversions = [orjson.loads(v) for v in await read_all(config, topics.outcomes)]
    say(f"conversions            {len(conversions):>8}   (orders within the attribution window)")
    report = (await asyncio.to_thread(live_report, config))["report"]
    say(f"repeat purchase rate   {report['rpr']['rate'] or 0:>8.1%}")
    ttsp = report["ttsp"]["overall"]
    if ttsp["median_days"] is not None:
        say(f"median days to 2nd order {ttsp['median_days']:>6}")
    say("lifecycle stages       " + ", ".join(f"{k} {v}" for k, v in report["lifecycle"].items()))
    say("\nlift per rule and step (conversion rate, delivered vs holdout control group):")
    say(NO_REACTION)
    for x in report["lift"]:
        d, h = x["delivered"], x["holdout"]
        lift = "   n/a" if x["lift_percent"] is None else f"{x['lift_percent']:+6.1f}%"
        rule = f"{x['rule']:<{RULE_WIDTH}} step {x['step']}"
        say(
            f"    {rule}  delivered {d['conversions']:>4}/{d['firings']:<5}"
            f" holdout {h['conversions']:>4}/{h['firings']:<5} lift {lift}"
        )
    say("\nexample triggers:")
    for ex in _examples(nudges):
        who = printable(ex["customer_id"])
        head = f"  {ex['due_at'][:10]}  {who:<12} {ex['rule']}#{ex['step']}"
        say(f"{head}: {printable(ex['reason'])}")
        say(f"      trigger_id {ex['trigger_id']}")
    say("\nwhere to look next:")
    rules = f"RETENTION_RULES_FILE={config.rules_file} " if config.rules_file else ""
    say(f"  {rules}retention report --from-file {keep.sample}   (the offline reference)")
    if not keep.stack_stays:
        say("  the demo stops the local stack it started; `retention local up` brings it")
        say("  back with the demo's topics, for:")
    env = f"RETENTION_TOPIC_PREFIX={config.topic_prefix} RETENTION_APP_ID={config.app_id}"
    say(f"  {env} RETENTION_CLOCK=stream retention report   (live, from the tables)")
    say(f"  {env} retention tail nudges")
    if not keep.worker_stays:
        say("  the dashboard stops with the worker now (--exit-after-summary); `retention")
        say("  demo` without it keeps both running until Ctrl-C")


def _lifecycle_lines(decisions: list[dict[str, Any]], nudges: list[dict[str, Any]]) -> None:
    """The rules lifecycle.toml adds: their firings (decisions), delivered, and what
    their nudges name (the carts, the viewed products, the milestones)."""
    fired = Counter(d["rule"] for d in decisions)
    delivered = Counter(d["rule"] for d in decisions if d["outcome"] == "delivered")
    carts = {
        n["context"]["cart"]["cart_id"]
        for n in nudges
        if n["rule"] == "cart_abandonment" and "cart" in n.get("context", {})
    }
    say("lifecycle rules (lifecycle.toml): firings, delivered")
    for rule in LIFECYCLE_RULE_NAMES:
        extra = f"   ({len(carts)} carts)" if rule == "cart_abandonment" and carts else ""
        say(f"    {rule:<22}{fired[rule]:>6} {delivered[rule]:>6}{extra}")


# The generated customers buy on their own schedule whatever they are sent, so a
# lift here is noise around zero: the figures show the computation, not an effect.
NO_REACTION = (
    "    (the sample's customers do not react to nudges: these lifts are chance "
    "around 0,\n     shown to demonstrate the computation, not an effect)"
)


def _examples(nudges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, int]] = set()
    out: list[dict[str, Any]] = []
    for n in sorted(nudges, key=lambda x: x["due_at"], reverse=True):
        if (n["rule"], n["step"]) not in seen:
            seen.add((n["rule"], n["step"]))
            out.append(n)
        if len(out) == 5:
            break
    return out
