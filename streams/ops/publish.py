"""``retention rules publish``: a new rules version for a running deployment
(docs/operations.md "Changing rules live").

Reads the rules topic and the customer partitions' stream clocks (the clock rows
of the table's changelog, as ``retention report`` reads the table), checks the
file (:func:`streams.ops.registry.plan_publish`), then writes the version to the
rules topic and its ``control/rules`` marker to every input partition.  A dry run
reads the live rows instead and says per rule what the switch would do to the
customers mid-ladder (the engine's ``preview_switch``).  What it reads and writes
of the deployment is a :class:`Live`, so tests fake it at that boundary.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

from agents.core.clock import WallClock, system_clock
from agents.core.engine import Engine
from agents.core.rules.history import RuleHistory, Version
from agents.core.state import CustomerState
from agents.core.timeutil import iso
from streams.config import Config
from streams.ops.registry import (
    Published,
    Registry,
    plan_publish,
    read_registry,
    send_markers,
    write_version,
)
from streams.ops.tables import TableSnapshot, read_table


@dataclass(frozen=True)
class Live:
    """What ``publish`` reads and writes of the deployment (tests give fakes)."""

    registry: Callable[[Config], Awaitable[Registry]] = read_registry
    table: Callable[[Config], Awaitable[TableSnapshot]] = read_table
    write: Callable[[Config, Published], Awaitable[None]] = write_version
    markers: Callable[[Config, Version], Awaitable[list[tuple[str, int]]]] = send_markers
    now: WallClock = system_clock


LIVE = Live()


async def publish(
    config: Config,
    path: str,
    text: str,
    effective: int | None,
    *,
    dry_run: bool = False,
    live: Live | None = None,
) -> list[str]:
    """Check and publish the rules file ``text`` (read from ``path``); the lines to
    print.  PublishRefused: every reason not to, nothing written."""
    live = live or LIVE
    registry = await live.registry(config)
    table = await live.table(config)
    clocks = {p: c.watermark() for p, c in table.clocks.items()}
    p = plan_publish(config, registry, text, effective=effective, clocks=clocks, now=live.now())
    version = p.version
    assert version.effective_at is not None
    if dry_run:
        head = (
            f"{path}: version {version.id} effective {iso(version.effective_at)}: "
            "dry run, nothing published"
        )
        return [head, *dry_run_lines(config, registry, version, table.customers.values())]
    again = registry.find(version.id, version.effective_at) is not None
    if not again:
        await live.write(config, p)
    written = await live.markers(config, version)
    topics = sorted({t for t, _ in written})
    per_topic = ", ".join(f"{t} x{sum(1 for u, _ in written if u == t)}" for t in topics)
    done = "was published already" if again else f"published to {config.topics.rules}"
    return [
        f"{path}: version {version.id} effective {iso(version.effective_at)} {done}; "
        f"marker written to {len(written)} input partitions ({per_topic})"
    ]


def dry_run_lines(
    config: Config, registry: Registry, new: Version, customers: Iterable[CustomerState]
) -> list[str]:
    """Per rule: the customers mid-ladder and what the change does to them."""
    seed = registry.seed
    assert seed is not None and new.effective_at is not None
    history = RuleHistory((seed.version, *(q.version for q in registry.later)))
    engine = Engine(replace(config.core, rules=seed.version.rules)).with_history(history)
    actions: dict[str, Counter[str]] = defaultdict(Counter)
    superseded: Counter[str] = Counter()
    for state in customers:
        for rule, (action, steps) in engine.preview_switch(state, new, new.effective_at).items():
            actions[rule][action] += 1
            superseded[rule] += steps
    if not actions:
        return ["  no customer is mid-ladder: the change affects nobody's ladder in progress"]
    lines = []
    for rule in sorted(actions):
        n = sum(actions[rule].values())
        parts = []
        for action in ("unchanged", "pin", "restart", "stopped"):
            count = actions[rule][action]
            if not count:
                continue
            if action == "restart":
                parts.append(f"restarted {count} with {superseded[rule]} steps superseded")
            else:
                parts.append(f"{_DONE[action]} {count}")
        lines.append(
            f"  {rule}: {n} customer{'s' if n != 1 else ''} mid-ladder: {', '.join(parts)}"
        )
    return lines


_DONE = {"unchanged": "unchanged", "pin": "pinned", "stopped": "stopped"}
