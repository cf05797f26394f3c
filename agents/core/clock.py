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


def source_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"
