"""Fault injection for the crash tests: kill -9 this process at a named point.

``RETENTION_FAULT=<point>:<n>`` makes the worker SIGKILL itself at ``<point>`` of
the batched hot path (docs/design.md, "Crash safety") once its count reaches n:

* ``ingest_after_sends``: an ingest batch's outputs are acknowledged, the batch is
  not acked yet (counts batches);
* ``after_sends``: a slice's outputs are acknowledged, its table rows not written;
* ``after_writes``: a slice's table rows are written to the changelog, not yet to
  the local store, its events not committed;
* ``after_batch``: a customer batch's rows are in the changelog and the local
  store, its events not acked nor committed (counts batches).

The two slice points count *outputs* (decisions, nudges, outcomes, dead letters):
how many slices a replay takes depends on how many messages each batch happens
to find, so a slice count can land after the last decision; an output count lands
at the same place in the decisions whatever the timing.

Unset (always, outside the tests) it costs one attribute check per slice.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

POINTS = ("ingest_after_sends", "after_sends", "after_writes", "after_batch")


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

    def hit(self, point: str, weight: int = 1) -> None:
        if point != self.point:
            return
        before, self.seen = self.seen, self.seen + weight
        if before < self.at <= self.seen:
            os.kill(os.getpid(), signal.SIGKILL)
