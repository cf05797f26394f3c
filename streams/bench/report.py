"""The benchmark's report: docs/benchmarks.md and its JSON, from one run's figures.

``retention bench`` (streams/cli/bench.py) measures; this module renders.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]  # the repository: streams/bench/report.py


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank below); 0 when empty."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


# Text after this line in docs/benchmarks.md is kept when `make bench` rewrites the
# file (the large-scale figures, measured with their own command).
KEPT = "<!-- kept by make bench: text below is not rewritten -->"


def _rate(value: int) -> str:
    return f"{value:,} msg/s" if value else "not measured"


def _ratio(value: float | None, digits: int) -> str:
    return "not measured" if value is None else f"{value:.{digits}f}"


def _extra_lines(r: dict[str, Any]) -> str:
    out = ""
    if "recovery" in r:
        rec = r["recovery"]
        out += (
            f"| recovery of the whole table, empty data dir (start to ready) | "
            f"{rec['seconds']} s ({rec['changelog_messages']:,} changelog messages) |\n"
        )
    if "wall_clock_latency" in r:
        lat = r["wall_clock_latency"]
        out += (
            f"| wall clock: due time -> nudge, p50 / p99 / max ({lat['nudges']:,} nudges) | "
            f"{lat['p50_seconds']} / {lat['p99_seconds']} / {lat['max_seconds']} s |\n"
        )
    return out


def _backtest_lines(r: dict[str, Any]) -> str:
    """The backtest's figures (streams/bench/backtest.py), one row per history."""
    if "backtest" not in r:
        return ""
    b = r["backtest"]
    histories = (("sample", "bench sample"), (f"x{b['scale']}", f"{b['scale']}x larger"))
    rows = "".join(
        f"| {label} ({h['customers_generated']:,} customers, {h['lines']:,} lines) | "
        f"{h['events_per_s']:,} events/s ({h['seconds']} s) | {h['peak_rss_parent_mb']} MiB | "
        f"{h['peak_rss_worker_mb']} MiB | {h['peak_rss_bound_mb']} MiB |\n"
        for h, label in ((b[key], label) for key, label in histories if key in b)
    )
    workers = next((b[k]["workers"] for k in ("sample", f"x{b['scale']}") if k in b), 0)
    return f"""
## Backtest

`retention rules backtest` (docs/rules.md "Backtest") with the default rules, no
broker, {workers} worker processes: the history sorted on disk by customer, chunks
of customers through the offline reference (`streams/bench/backtest.py`, each
history measured in a process of its own).  Rate = non-blank input lines per
second of wall time; peak RSS of the sorting process and of the largest worker
(`getrusage`), and their bound sorting process + workers x largest worker.

| history | rate | sorting process | largest worker | bound |
|---|---|---|---|---|
{rows}"""


def _paired_table(w: dict[str, Any], off_name: str, on_name: str) -> str:
    """The runs without and with, in the order they ran (the first without is the
    worker line above)."""
    runs = [
        (off_name + (" (the worker line above)" if i == 0 else ""), us, rate)
        for i, (us, rate) in enumerate(
            zip(w["off_us_per_message"], w["off_events_per_s"], strict=True)
        )
    ]
    with_ = [
        (f"**{on_name}**", us, rate)
        for us, rate in zip(w["on_us_per_message"], w["on_events_per_s"], strict=True)
    ]
    order = [runs[0]]
    for pair in zip(with_, runs[1:], strict=True):
        order += pair
    return "".join(f"| {name} | {us:,} µs | {rate:,} events/s |\n" for name, us, rate in order)


def _windows_lines(r: dict[str, Any]) -> str:
    """Zones + send windows against the worker without them (streams/bench/windows.py)."""
    if "windows" not in r:
        return ""
    w = r["windows"]
    table = _paired_table(w, "without windows", "zones + windows")
    return f"""
## Zones and send windows

The worker's CPU (user + system) per input message with every customer in a zone and
a file-default send window on the default rules (`streams/bench/windows.py`; weekdays
09:00-20:00, weekends 10:00-18:00, deferred up to 36 h), against the same sample
without zones or windows, each run one worker in a deployment of its own, in this
order, in this run:

| run | CPU per input message | rate |
|---|---|---|
{table}
**Windows on / off: {_ratio(w["ratio_on_to_off"], 3)}** (the means of per-message CPU), against a
noise of {_ratio(w["noise_off_runs"], 3)} (the spread of the runs without, over their mean).
"""


def _churn_lines(r: dict[str, Any]) -> str:
    """The default rules plus a churn_risk ladder against them alone
    (streams/bench/churn.py)."""
    if "churn" not in r:
        return ""
    w = r["churn"]
    table = _paired_table(w, "default rules", "with churn_risk")
    return f"""
## churn_risk

The worker's CPU (user + system) per input message with the default rules plus a
churn_risk ladder (P(alive) below 0.6, 0.4, 0.2; MBG/NBD fitted on this sample by
`retention model fit`'s code, `streams/bench/churn.py`), against the default rules
alone, on the same sample, each run one worker in a deployment of its own, in this
order, in this run:

| run | CPU per input message | rate |
|---|---|---|
{table}
**churn_risk on / off: {_ratio(w["ratio_on_to_off"], 3)}** (the means of per-message CPU),
against a noise of {_ratio(w["noise_off_runs"], 3)} (the spread of the runs without, over
their mean).
"""


def _views_lines(r: dict[str, Any]) -> str:
    """The views sample against the orders-and-sessions sample (streams/bench/views.py)."""
    if "views" not in r:
        return ""
    v = r["views"]
    base = [
        ("orders and sessions" + (" (the worker line above)" if i == 0 else ""), us, rate)
        for i, (us, rate) in enumerate(
            zip(v["base_us_per_event"], v["base_events_per_s"], strict=True)
        )
    ]
    views = [
        ("**with views**", us, rate)
        for us, rate in zip(v["views_us_per_event"], v["views_events_per_s"], strict=True)
    ]
    order = [base[0]]
    for pair in zip(views, base[1:], strict=True):
        order += pair
    table = "".join(f"| {name} | {rate:,} events/s | {us:,} µs |\n" for name, us, rate in order)
    sample = v["sample"]
    orders = sample.get("orders", 0)
    per_order = sample.get("product_view/1", 0) / orders if orders else 0.0
    kinds = ", ".join(
        f"{n:,} {k}" for k, n in sample.items() if k not in ("orders", "malformed") and n
    )
    met = {True: "met", False: "**not met**", None: "not measured"}[v["meets_criterion"]]
    return f"""
## Product views

The worker on the views sample (`retention sample --lifecycle`, docs/lifecycle.md
"Sample and demo": the same customers, orders, sessions and consents plus sign-ups,
{per_order:.1f} views per order, carts and cancellations; {v["views_input_messages"]:,}
events: {kinds}) against the orders-and-sessions sample, each run one worker with the
default rules in a deployment of its own, in this order, in this run
(`streams/bench/views.py`):

| run | rate | CPU per event |
|---|---|---|
{table}
**Views / orders and sessions: {_ratio(v["ratio_views_to_base"], 3)}** (the means of the
rates; issue 24 asks for at least {v["criterion"]}: {met}), per-event CPU
{_ratio(v["cpu_ratio_views_to_base"], 3)}x, against a noise of
{_ratio(v["noise_base_runs"], 3)} (the spread of the runs without views, over their mean).
"""


def write_report(path: Path, r: dict[str, Any]) -> None:
    default = path.resolve() == (ROOT / "docs" / "benchmarks.md").resolve()
    data = ROOT / "artifacts" / "bench.json" if default else path.with_suffix(".json")
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2))
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = ""
    with contextlib.suppress(OSError):
        old = path.read_text()
        if KEPT in old:
            kept = "\n" + KEPT + old.split(KEPT, 1)[1]
    st = r["settings"]
    extra = _extra_lines(r)
    cpu = ""
    if r.get("worker_cpu_seconds"):
        per_event = r["worker_cpu_seconds"] / max(1, r["input_messages"]) * 1e6
        cpu = (
            f"| worker CPU (user + system) | {r['worker_cpu_seconds']} s "
            f"({per_event:,.0f} µs per input message) |\n"
        )
    multi = ""
    if "multi_workers" in r:
        n = r["multi_workers"]
        multi = (
            f"| {n} workers of one app (same machine) | "
            f"{r[f'workers_{n}_events_per_s']:,} events/s |\n"
        )
    path.write_text(
        f"""# Benchmarks

Written by `make bench` (`retention bench --customers {r["customers"]}`); the latest run
is below, and `artifacts/bench.json` holds the same figures.  Compare ratios, not
absolute rates: every line below was measured in one run on a shared machine.

## Method

1. `retention local up` (single-node Kafka 3.9.2 + Redis on loopback, same machine).
2. A generated sample (`retention sample`: {r["customers"]} customers, {r["days"]} days) is
   produced to the input topics, with a `control/advance` marker at the end.
3. **Raw ceiling**: a bare aiokafka `getmany` + `orjson.loads` loop reads the input topics.
4. **Bare Faust agent** (`streams/bench/bare_faust.py`): one Faust app with the worker's own
   settings, one agent over the input topics that only decodes (`async for value in
   stream`, then the same with `take_events`): what Faust itself costs per message.
5. **Worker**: one `retention worker` (stream clock, at-least-once, RocksDB, guardrails,
   conversions, read model, metrics and web on) processes the backlog; throughput =
   events / (first committed progress to zero lag on the input and internal topics,
   polled every 0.25 s).  *Tail* = from zero input lag to zero lag overall (the
   internal topic's backlog, the final `--until` advance and what it fires).
6. **2 workers**: the same input in a deployment of its own, two worker processes of
   one app sharing its {st["partitions"]} partitions.

## Latest run ({r["date"]})

Machine: {r["machine"]}

| figure | value |
|---|---|
| input messages | {r["input_messages"]:,} |
| produce rate (CLI producer) | {r["produce_msg_per_s"]:,} msg/s |
| raw consume + decode ceiling | {_rate(r["raw_consume_decode_msg_per_s"])} |
| bare Faust agent (`async for`) | {_rate(r["bare_faust_msg_per_s"])} |
| bare Faust agent (`take_events`) | {_rate(r["bare_faust_take_events_msg_per_s"])} |
| worker end-to-end | {r["worker_events_per_s"]:,} events/s ({r["worker_seconds"]} s) |
{multi}| tail after the inputs are consumed | {r["worker_tail_seconds"]} s |
| largest "woke up too late" drift in the worker log | {r["worker_max_drift_seconds"]} s |
| worker peak RSS | {r["worker_peak_rss_mb"]} MiB ({r["bytes_per_customer"]:,} bytes per customer) |
{cpu}{extra}| **worker / bare Faust agent** | **{_ratio(r["ratio_worker_to_bare_faust"], 3)}** |
| worker / raw ceiling | {_ratio(r["ratio_worker_to_raw"], 4)} |

Settings: batch_max {st["batch_max"]}, batch_within {st["batch_within"]} s, producer linger
{st["producer_linger"]} s, producer batch {st["producer_batch_bytes"]:,} bytes, commit interval
{st["commit_interval"]} s.  See `docs/performance.md` for where the time goes, what
each setting did when measured, and the levers left.
{_windows_lines(r)}{_churn_lines(r)}{_views_lines(r)}{_backtest_lines(r)}{kept}"""
    )
