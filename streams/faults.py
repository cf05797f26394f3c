"""Fault injection for the crash tests: kill -9 this process at a named point.

``RETENTION_FAULT=<point>:<n>`` makes the worker SIGKILL itself the n-th time it
reaches ``<point>`` of the batched hot path (docs/design.md, "Crash safety"):

* ``ingest_after_sends``: an ingest batch's outputs are acknowledged, the batch is
  not acked yet;
* ``after_sends``: a slice's outputs are acknowledged, its table rows not written;
* ``after_writes``: a slice's table rows are written, its events not committed
  (counting, like ``after_sends``, only slices that had outputs).

Unset (always, outside the tests) it costs one attribute check per slice.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

POINTS = ("ingest_after_sends", "after_sends", "after_writes")


class FaultInjector:
    def __init__(self, spec: str | None) -> None:
        self.point: str | None = None
        self.at = 0
        self.seen = 0
        if spec:
            point, _, n = spec.partition(":")
            if point not in POINTS or not n.isdigit() or int(n) < 1:
                raise ValueError(f"RETENTION_FAULT: expected <point>:<n> with point in {POINTS}")
            self.point, self.at = point, int(n)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> FaultInjector:
        return cls(env.get("RETENTION_FAULT"))

    def hit(self, point: str) -> None:
        if point != self.point:
            return
        self.seen += 1
        if self.seen == self.at:
            os.kill(os.getpid(), signal.SIGKILL)
