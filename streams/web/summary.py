"""``summary/1``: what one worker knows, for the dashboard and for people.

Counters are this process's since it started; the report is built from the
table partitions this worker owns (``scope`` says which), so with several workers
each shows its share.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from agents.core import reports
from agents.core.clock import NEVER
from agents.core.guardrails import OUTCOME_DELIVERED, SUPPRESSIONS
from agents.core.reports import CustomerRow
from agents.core.state import CustomerState
from agents.core.timeutil import iso
from agents.customer import CUSTOMER_KEY_PREFIX

if TYPE_CHECKING:
    from streams.app import RetentionApp

SCHEMA_SUMMARY = "summary/1"


def owned_states(rapp: RetentionApp) -> Iterator[CustomerState]:
    for partition in sorted(rapp.owned_partitions()):
        for key, value in rapp.store.scan(partition):
            if not key.startswith(CUSTOMER_KEY_PREFIX):
                continue
            state = CustomerState.from_dict(orjson.loads(value))
            if state.partition == partition:  # a memory store scans every partition
                yield state


def build_report(rapp: RetentionApp, states: list[CustomerState], as_of: int) -> dict[str, Any]:
    rows = [CustomerRow.from_state(s) for s in states]
    return reports.build_report(rows, as_of=as_of, settings=rapp.config.report)


def build_summary(rapp: RetentionApp) -> dict[str, Any]:
    now = rapp.wall_clock()
    proc, ingest, rm = rapp.processor, rapp.ingest, rapp.readmodel
    owned = sorted(rapp.owned_partitions())
    states = list(owned_states(rapp))
    by_outcome: Counter[str] = Counter()
    for (_, _, outcome), n in proc.decision_counts.items():
        by_outcome[outcome] += n
    marks = [rt.watermark for p, rt in proc.runtimes.items() if p in owned]
    watermark = min(marks) if marks and min(marks) > NEVER else None
    lag = rapp.consumer_lag()
    return {
        "schema": SCHEMA_SUMMARY,
        "generated_at": iso(now),
        "scope": {
            "worker": rapp.web_address,
            "partitions": owned,
            "all_partitions": len(owned) == rapp.config.partitions,
        },
        "clock": {
            "mode": rapp.config.clock,
            "watermark": iso(watermark) if watermark is not None else None,
        },
        "counts": {
            "customers": len(states),
            "events": proc.counters["events"],
            "duplicates": proc.counters["duplicates"],
            "dead_letters": sum(ingest.dead_letters.values()),
            "decisions": sum(by_outcome.values()),
            "delivered": by_outcome[OUTCOME_DELIVERED],
            "outcomes": proc.counters["outcomes"],
        },
        "decisions": [
            {"rule": rule, "step": step, "outcome": outcome, "count": n}
            for (rule, step, outcome), n in sorted(proc.decision_counts.items())
        ],
        "suppression": {reason: by_outcome[reason] for reason in SUPPRESSIONS},
        "triggers_over_time": [
            {"date": date, "rule": rule, "step": step, "count": n}
            for (date, rule, step), n in sorted(rapp.triggers_by_day.items())
        ],
        "dead_letters": dict(sorted(ingest.dead_letters.items())),
        "lag": {"total": sum(lag.values()), "by_topic": lag},
        "read_model": {
            "enabled": True,
            "redis_up": rm.redis_up,
            "lag": rm.lag,
            "last_flush_at": iso(rm.last_flush_at) if rm.last_flush_at is not None else None,
        },
        "report": build_report(rapp, states, now),
    }
