"""Per-partition index of when customers next need the clock.

A heap of (time, customer) with lazy deletion: re-indexing a customer pushes a
new entry and leaves the old one to be skipped when it surfaces.  A clock
advance pops only the entries it passes, so the cost of a tick grows with the
number of *due* customers (times log n), not with all of them.  The engine
re-checks every popped customer against its state, so a stale entry costs one
look-up and nothing else.
"""

from __future__ import annotations

import heapq


class DueIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._when: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._when)

    def set(self, customer_id: str, when: int | None) -> None:
        """Index ``customer_id`` at ``when``; None removes it."""
        if when is None:
            self._when.pop(customer_id, None)
            return
        if self._when.get(customer_id) == when:
            return
        self._when[customer_id] = when
        heapq.heappush(self._heap, (when, customer_id))
        if len(self._heap) > 2 * len(self._when) + 1024:
            self._compact()

    def pop_due(self, upto: int) -> list[str]:
        """Remove and return the customers due at or before ``upto``, earliest first."""
        out: list[str] = []
        heap, when = self._heap, self._when
        while heap and heap[0][0] <= upto:
            t, cid = heapq.heappop(heap)
            if when.get(cid) == t:
                del when[cid]
                out.append(cid)
        return out

    def next_time(self) -> int | None:
        heap, when = self._heap, self._when
        while heap and when.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _compact(self) -> None:
        self._heap = [(t, c) for c, t in self._when.items()]
        heapq.heapify(self._heap)
