"""The pure core alone, no Kafka and no Faust: ``python -m streams.bench_core``.

Runs the ingest and customer processors over a dict store on the bench's generated
sample (routed to input partitions as ``retention produce`` would, one
``control/advance`` per input partition at the end), in batches as the worker takes
them, and prints the CPU seconds of each step and two digests: of every output
(without its wall-clock ``fired_at``/``received_at`` and its ``rule_version``, which
names the rules rather than what they decided) and of every row.  A change to
the core that claims to keep exact semantics must leave both digests unchanged
(docs/performance.md, "The core fast paths").  Options: ``--customers`` (10000),
``--days`` (365), ``--seed`` (7), ``--batch`` (2000), ``--partitions`` (4);
``--zones`` gives customers time zones (``streams.bench.windows.ZONED``), and
``--windows`` also runs the default rules with a file-default send window
(``streams.bench.windows.windows_rules_text``), so that what zones and windows cost
the core can be told apart from the worker's own (docs/benchmarks.md); ``--rules FILE``
runs that rules file instead (docs/benchmarks.md "churn_risk").
"""

from __future__ import annotations

import argparse
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner

from agents.core.clock import system_clock
from agents.core.rules import load_rules
from agents.core.timeutil import iso
from agents.ingest import IngestProcessor
from agents.wire import bundles
from streams.bench import windows as windows_bench
from streams.config import load_config
from streams.feed.producer import advance_marker, route
from streams.feed.sample import default_end, generate
from streams.worker.processors import build_processors

_WALL_TIMES = re.compile(rb'"(fired_at|received_at)":"[^"]*"')
_RULE_VERSION = re.compile(rb',"rule_version":"[0-9a-f]*"')


class DictStore:
    def __init__(self) -> None:
        self.rows: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.rows.get(key)

    def scan(self, partition: int) -> list[tuple[str, bytes]]:
        """The rows of ``partition``, as a table partition holds them."""
        return [
            (key, value)
            for key, value in self.rows.items()
            if key == f"clock/{partition}"
            or (key.startswith("c/") and orjson.loads(value).get("partition") == partition)
        ]


def run(args: argparse.Namespace, rows: list[bytes] | None = None) -> dict[str, Any]:
    """The run's figures; ``rows``, when given, receives every customer row written,
    in order (``python -m streams.bench_readmodel`` writes them to Redis)."""
    # The worker's processors (streams.worker.processors), in stream-clock mode.
    config = replace(load_config(use_stack_file=False), partitions=args.partitions, clock="stream")
    with_windows = getattr(args, "windows", False)
    options = windows_bench.ZONED if with_windows or getattr(args, "zones", False) else None
    rules_file = getattr(args, "rules", None)
    if with_windows or rules_file:
        # As a rules file named by RETENTION_RULES_FILE is run (streams/config/loading.py).
        text = Path(rules_file).read_text() if rules_file else windows_bench.windows_rules_text()
        config = replace(config, core=replace(config.core, rules=load_rules(text)), rules_text=text)
    topics = config.topics
    parts = list(range(args.partitions))
    partitioner = DefaultPartitioner()
    end = default_end()
    messages: list[tuple[str, int, bytes]] = []
    for line in generate(args.customers, args.days, seed=args.seed, end=end, options=options):
        topic, key = route(config, line, None)
        messages.append((topic, partitioner(key, parts, parts) if key else 0, line))
    marker = advance_marker(iso(end))
    messages += [(t, p, marker) for t in topics.inputs() for p in parts]
    ingest, proc = build_processors(config, system_clock)
    store = DictStore()
    # The multiset of outputs: their order across partitions, and of simultaneous
    # firings within a bundle, follows batch boundaries (agents/customer.py, _emit).
    output_hashes: list[bytes] = []
    outputs = rows_written = 0
    ingest_cpu = customer_cpu = 0.0
    for start in range(0, len(messages), args.batch):
        t0 = time.process_time()
        routed = _ingest(ingest, messages[start : start + args.batch], topics.customer_events)
        t1 = time.process_time()
        ingest_cpu += t1 - t0
        for partition in sorted(routed):
            proc.feed(partition, [(0, b) for b in bundles(routed[partition])], store)
            while proc.has_work(partition):
                result = proc.step(partition, store)
                outputs += len(result.outputs)
                rows_written += len(result.writes)
                for o in result.outputs:
                    value = _RULE_VERSION.sub(b"", _WALL_TIMES.sub(b"", o.value))
                    output_hashes.append(hashlib.sha256(o.topic.encode() + b"\0" + value).digest())
                if rows is not None:
                    rows += (v for k, v in result.writes.items() if k.startswith("c/"))
                store.rows.update(result.writes)
        customer_cpu += time.process_time() - t1
    outputs_digest = hashlib.sha256(b"".join(sorted(output_hashes)))
    rows_digest = hashlib.sha256()
    for row in sorted(store.rows):
        # A row's version counts its writes, one per slice that touched it: it
        # follows slice boundaries, the rest of the row must not.
        fields = orjson.loads(store.rows[row])
        fields.pop("version", None)
        rows_digest.update(row.encode() + orjson.dumps(fields, option=orjson.OPT_SORT_KEYS))
    return {
        "messages": len(messages),
        "outputs": outputs,
        "rows_written": rows_written,
        "ingest_cpu_seconds": round(ingest_cpu, 2),
        "customer_cpu_seconds": round(customer_cpu, 2),
        "outputs_digest": outputs_digest.hexdigest()[:16],
        "rows_digest": rows_digest.hexdigest()[:16],
    }


def _ingest(
    ingest: IngestProcessor, batch: Sequence[tuple[str, int, bytes]], customer_topic: str
) -> dict[int, list[bytes]]:
    """One batch through ingest: internal-topic payloads by customer partition, as the
    ingest agent bundles them (murmur2 of the customer id; dead letters dropped)."""
    partitioner = DefaultPartitioner()
    parts = list(range(ingest.customer_partitions))
    routed: dict[int, list[bytes]] = {}
    for offset, (topic, partition, raw) in enumerate(batch):
        outs, controls = ingest.handle(raw, topic, partition, offset)
        for out in outs:
            if out.topic == customer_topic:
                routed.setdefault(partitioner(out.key.encode(), parts, parts), []).append(out.value)
        for target, payload in controls:
            routed.setdefault(target, []).append(payload)
    return routed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sample's and the batches' options (``python -m streams.bench_readmodel`` too)."""
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--partitions", type=int, default=4)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.bench_core", description=__doc__)
    add_arguments(parser)
    parser.add_argument("--zones", action="store_true", help="customers with time zones")
    parser.add_argument(
        "--windows", action="store_true", help="zones and a file-default send window"
    )
    parser.add_argument("--rules", metavar="FILE", help="run this rules file (not the default)")
    print(orjson.dumps(run(parser.parse_args(argv)), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
