"""Clocks: the injected wall clock and the per-partition stream clock.

A customer partition is fed by every partition of every input topic (the
*sources*).  In stream-clock mode its watermark is the minimum over the sources
of (newest event time seen from that source - allowed lateness), raised by any
explicit "advance to T" marker from that source.  Taking the minimum over
sources is what makes the watermark - and so every decision - independent of
how fast each input topic happens to be consumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agents.core.timeutil import MICROS_PER_SECOND

NEVER = -(2**62)

WallClock = Callable[[], int]


def system_clock() -> int:
    """Wall time in microseconds since the epoch."""
    return time.time_ns() // 1000


class ManualClock:
    """A wall clock for tests: it only moves when told to."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * MICROS_PER_SECOND)


@dataclass(slots=True)
class StreamClock:
    """The stream clock of one customer partition."""

    sources: tuple[str, ...]
    lateness: int
    newest: dict[str, int] = field(default_factory=dict)
    markers: dict[str, int] = field(default_factory=dict)
    # The last watermark computed, until a source moves (it is read once or twice
    # per event, and is a min over every input topic-partition).
    cached: int | None = field(default=None, repr=False, compare=False)

    def observe(self, source: str, occurred_at: int) -> None:
        if occurred_at > self.newest.get(source, NEVER):
            self._moved(source)
            self.newest[source] = occurred_at

    def mark(self, source: str, until: int) -> None:
        if until > self.markers.get(source, NEVER):
            self._moved(source)
            self.markers[source] = until

    def _moved(self, source: str) -> None:
        """Call before ``source`` moves forward: drop the cached watermark unless
        the source was above it (then it is not the minimum, and stays above)."""
        if self.cached is not None and self.own(source) > self.cached:
            return
        self.cached = None

    def own(self, source: str) -> int:
        """The watermark ``source`` alone allows (NEVER: it sent nothing yet)."""
        return max(self.newest.get(source, NEVER) - self.lateness, self.markers.get(source, NEVER))

    def watermark(self) -> int:
        if self.cached is None:
            self.cached = self._compute()
        return self.cached

    def _compute(self) -> int:
        wm: int | None = None
        for source in self.sources:
            own = max(
                self.newest.get(source, NEVER) - self.lateness, self.markers.get(source, NEVER)
            )
            wm = own if wm is None else min(wm, own)
        return NEVER if wm is None else wm

    def to_dict(self) -> dict[str, Any]:
        return {"newest": self.newest, "markers": self.markers}

    @classmethod
    def restore(
        cls, sources: Iterable[str], lateness: int, data: dict[str, Any] | None
    ) -> StreamClock:
        clock = cls(tuple(sources), lateness)
        if data:
            clock.newest.update(data.get("newest", {}))
            clock.markers.update(data.get("markers", {}))
        return clock


class ClockMode:
    """What "now" is for the rules: the wall clock (live) or each customer
    partition's stream clock (replay and backfill; docs/time.md "Time").

    Chosen once from the configuration string by :func:`clock_mode`; the string
    itself (``name``) stays the config value and a decision's ``clock`` field.
    """

    name: str
    # Time follows the events: the stream clock is observed, moved by advances,
    # persisted, and can get stuck waiting on a silent input partition.  Else the
    # leader's ticks move the wall clock's decisions along.
    event_time: bool

    def now(self, clock: StreamClock, wall: WallClock) -> int:
        """The time due rules fire up to."""
        raise NotImplementedError

    def observe(self, clock: StreamClock, source: str, occurred_at: int) -> None:
        """An event from ``source`` went in."""

    def is_late(self, occurred_at: int, now: int) -> bool:
        """An event the clock already passed (applied at once, counted late)."""
        return False


class _WallMode(ClockMode):
    name = "wall"
    event_time = False

    def now(self, clock: StreamClock, wall: WallClock) -> int:
        return wall()


class _StreamMode(ClockMode):
    name = "stream"
    event_time = True

    def now(self, clock: StreamClock, wall: WallClock) -> int:
        return clock.watermark()

    def observe(self, clock: StreamClock, source: str, occurred_at: int) -> None:
        clock.observe(source, occurred_at)

    def is_late(self, occurred_at: int, now: int) -> bool:
        return occurred_at <= now


WALL = _WallMode()
STREAM = _StreamMode()
CLOCK_MODES = {m.name: m for m in (WALL, STREAM)}


def clock_mode(name: str) -> ClockMode:
    """The mode a configuration string names ("wall" or "stream")."""
    try:
        return CLOCK_MODES[name]
    except KeyError:
        raise ValueError(
            f"unknown clock mode {name!r}: expected one of {sorted(CLOCK_MODES)}"
        ) from None


def source_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"
