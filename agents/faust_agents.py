"""The worker's two Faust agents, thin loops around the processors they feed.

* :class:`IngestAgent` (input topics): each batch of raw events goes through
  :class:`agents.ingest.IngestProcessor`; dead letters are sent as they come, valid
  events and clock markers leave as one bundle per customer partition
  (agents/messages.py);
* :class:`CustomerAgent` (the internal topic): each batch is grouped by partition
  and run through :class:`agents.customer.CustomerProcessor` in slices: outputs
  sent and acknowledged, then the rows written to the changelog; at the end of the
  batch, once those are acknowledged, to the local store (docs/design.md, "The
  batched hot path", "Crash safety").

Neither imports Faust: :mod:`streams.worker.app` registers them on its Faust app
(``app.agent(topic)(crash_only(name, agent.run))``) and hands them what they need: the
producer's ``send``, the table (:class:`streams.faust_adapter.TableStore`), the
fault points - so the pure processors stay beside them and ``agents.core`` keeps no
Faust, Kafka or Redis import.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from agents.customer import CustomerProcessor, Result, group_by_partition
from agents.ingest import IngestProcessor
from agents.wire import bundles

log = logging.getLogger(__name__)

# Faust's ``Producer.send(topic, key, value, partition, timestamp, headers)``: it
# returns, once the message is buffered, the future of its acknowledgement.
Send = Callable[[str, bytes | None, bytes, int | None, Any, Any], Awaitable[Awaitable[Any]]]
# Sends records (topic, key, value, partition; None: the key's partition), in order
# within a topic partition, and returns awaitables that are all done once every record
# is acknowledged: one per record batch (streams.aiokafka_adapter.BatchSender), not one
# per record.
SendMany = Callable[
    [list[tuple[str, bytes | None, bytes, int | None]]], Awaitable[list[Awaitable[Any]]]
]
AgentRun = Callable[[Any], Awaitable[None]]


class CustomerTable(Protocol):
    """The customer table as the customers agent uses it (streams.faust_adapter.TableStore)."""

    def get(self, key: str) -> bytes | None: ...

    def scan(self, partition: int) -> Iterable[tuple[str, bytes]]: ...

    async def write(
        self, partition: int, rows: Sequence[tuple[bytes, bytes]]
    ) -> list[Awaitable[Any]]:
        """Send rows to the changelog; readable at once, in the local store at :meth:`settle`."""
        ...

    def settle(self, partition: int) -> None:
        """The partition's written rows, acknowledged, go to the local store."""
        ...

    def within(self, event: Any) -> AbstractContextManager[None]:
        """Table reads and writes go to the partition of ``event``."""
        ...


# Exit code of a worker that crashed, whatever crashed (an agent, the consumer, any
# other Faust service): a supervisor restarts it (docs/operations.md).
EXIT_CRASHED = 70


def crash_only(name: str, fn: AgentRun) -> AgentRun:
    """Exit the process when an agent fails instead of leaving a stalled worker.

    Faust logs a crashed agent and keeps the worker up with nothing consuming.
    A supervisor (systemd, Kubernetes, the test harness) restarts the process, and
    at-least-once processing replays from the last committed offset.
    """

    @functools.wraps(fn)
    async def wrapper(stream: Any) -> None:
        try:
            await fn(stream)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.critical("agent %s crashed; exiting so the worker restarts", name, exc_info=True)
            logging.shutdown()
            os._exit(EXIT_CRASHED)

    return wrapper


# Exit code when a stop will not wait for the batch in flight (see finish_before_stop).
EXIT_STOPPED_MID_BATCH = 75


async def finish_before_stop(batch: Awaitable[None]) -> None:
    """Run one batch to its end even when the agent is cancelled meanwhile.

    A worker stop (SIGTERM) cancels the agent's task; Faust then closes the
    ``take_events`` generator, whose ``finally`` acks every event of the batch in
    flight, processed or not, and the consumer commits them on its way out: the
    rest of the batch would never be processed (docs/crash-safety.md "Crash safety").  So a
    cancelled agent first lets its batch finish (outputs acknowledged, rows in the
    changelog and the table) and only then stops.  Cancelled a second time (the
    stop will not wait), the process exits at once, without acking anything: the
    batch is consumed again after the restart, as after a kill -9.
    """
    task = asyncio.ensure_future(batch)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if task.cancelled():
            raise
        try:
            await task
        except asyncio.CancelledError:
            log.critical("stopped twice while a batch was in flight; exiting without acking it")
            logging.shutdown()
            os._exit(EXIT_STOPPED_MID_BATCH)
        raise


class Undecodable(Protocol):
    """Record batches the consumer could not decode, each handed over as one
    stand-in record (:func:`streams.aiokafka_adapter.guard_undecodable_batches`)."""

    def __len__(self) -> int: ...

    def pop(self, topic: str, partition: int, offset: int) -> tuple[int, int, str] | None:
        """(first offset, last offset, why) if the record at this position stands
        in for an undecodable batch."""
        ...


class IngestAgent:
    """Input topics -> dead letters and per-partition bundles on the internal topic."""

    def __init__(
        self,
        processor: IngestProcessor,
        *,
        start: Callable[[], Awaitable[Send]],
        partition_of: Callable[[str], int],
        fault: Callable[[str, int], None],
        batch_max: int,
        batch_within: float,
        undecodable: Undecodable | None = None,
    ) -> None:
        self.processor = processor
        self.undecodable = undecodable
        self.start = start  # once per agent start; returns the producer's send
        self.partition_of = partition_of
        self.fault = fault
        self.batch_max = batch_max
        self.batch_within = batch_within

    async def run(self, stream: Any) -> None:
        send = await self.start()
        async for events in stream.take_events(self.batch_max, within=self.batch_within):
            await finish_before_stop(self._batch(send, events))

    async def _batch(self, send: Send, events: Sequence[Any]) -> None:
        handle = self.processor.handle
        partition_of = self.partition_of
        customer_topic = self.processor.customer_topic
        acks: list[Awaitable[Any]] = []
        # Valid events and clock markers, per customer partition, in order:
        # one bundle each per batch (agents/messages.py).
        routed: dict[int, list[bytes]] = {}
        undecodable = self.undecodable
        for event in events:
            m = event.message
            bad = undecodable.pop(m.topic, m.partition, m.offset) if undecodable else None
            if bad is not None:
                first, last, why = bad
                outputs = self.processor.undecodable_batch(
                    event.value, m.topic, m.partition, first, last, why
                )
                controls: list[tuple[int, bytes]] = []
            else:
                outputs, controls = handle(event.value, m.topic, m.partition, m.offset)
            for out in outputs:
                if out.topic == customer_topic:
                    routed.setdefault(partition_of(out.key), []).append(out.value)
                else:
                    acks.append(
                        await send(out.topic, out.key.encode(), out.value, None, None, None)
                    )
            for partition, payload in controls:
                routed.setdefault(partition, []).append(payload)
        for partition, items in routed.items():
            for record in bundles(items):
                acks.append(
                    await send(customer_topic, b"__bundle__", record, partition, None, None)
                )
        # A failed send raises here and stops the agent (crash_only): the
        # batch is not acked, so it is consumed again after the restart.
        await asyncio.gather(*acks)
        self.fault("ingest_after_sends", 1)


class CustomerAgent:
    """The internal topic -> decisions, nudges, outcomes, dead letters and table rows."""

    def __init__(
        self,
        processor: CustomerProcessor,
        table: CustomerTable,
        *,
        start: Callable[[], Awaitable[SendMany]],
        revoke: Callable[[set[int]], None],
        mark: Callable[[int, str, bytes], None],
        observe_slice: Callable[[float], None],
        fault: Callable[[str, int], None],
        batch_max: int,
        batch_within: float,
    ) -> None:
        self.processor = processor
        self.table = table
        self.start = start
        self.revoke = revoke  # drops the partitions' runtimes (processor, read model)
        self.mark = mark  # a customer row written: the read model writes it to Redis
        self.observe_slice = observe_slice  # seconds one slice took
        self.fault = fault
        self.batch_max = batch_max
        self.batch_within = batch_within
        # Delivered nudges by (UTC date of due time, rule, step), since start.
        self.triggers_by_day: Counter[tuple[str, str, int]] = Counter()
        self._in_batch = False  # inside a batch
        self._revoked: set[int] = set()  # revoked while it was

    async def run(self, stream: Any) -> None:
        send = await self.start()
        async for events in stream.take_events(self.batch_max, within=self.batch_within):
            await finish_before_stop(self._batch(send, events))

    async def _batch(self, send: SendMany, events: Sequence[Any]) -> None:
        last: dict[int, Any] = {}
        for event in events:
            last[event.message.partition] = event
        groups = group_by_partition(
            [(e.message.partition, e.message.offset, e.value) for e in events]
        )
        changelog: list[Any] = []
        self._in_batch = True
        try:
            for partition, messages in groups.items():
                await self._process(send, partition, messages, last[partition], changelog)
            # Every row of the batch is in the changelog before its events
            # are acked (and so before their offsets can be committed), and
            # only then in the local store: the store stays a prefix of the
            # changelog, so a kill -9 never leaves it torn on restart
            # (docs/design.md, "Crash safety").
            await asyncio.gather(*changelog)
            for partition in groups:
                with self.table.within(last[partition]):
                    self.table.settle(partition)
            self.fault("after_batch", 1)
        finally:
            self._in_batch = False
            self._apply_revoked()

    def partitions_revoked(self, partitions: Iterable[int]) -> None:
        """Rebalance: a batch in flight finishes first, as Faust lets an event in
        flight finish: dropping its partition's runtime mid-batch would drop the
        rest of its queued work (events the batch then acks)."""
        self._revoked.update(partitions)
        if not self._in_batch:
            self._apply_revoked()

    def _apply_revoked(self) -> None:
        gone, self._revoked = self._revoked, set()
        if gone:
            self.revoke(gone)

    async def _process(
        self, send: SendMany, partition: int, messages: list[Any], event: Any, changelog: list[Any]
    ) -> None:
        """One partition's share of a batch, in slices of bounded work.

        Per slice: send every output, await the acknowledgements once, then write
        the table rows.  An output is acknowledged before the state that produced
        it is written, so a crash in between replays the events and re-fires with
        the same trigger_id (a duplicate), never a lost decision.  The next slice
        is computed while a slice's acknowledgements are on their way (from the
        previous slice's states, its ``carry``), so the loop does not idle a
        produce round trip per slice (docs/performance.md).  The rows' changelog
        acks are collected in ``changelog``; the batch awaits them before its
        events are acked.  Between slices the loop gets control back, so a big
        clock advance does not starve it.
        """
        proc, table = self.processor, self.table
        with table.within(event):  # reads and writes go to this partition
            proc.feed(partition, messages, table)
            inflight: tuple[Result, list[Any]] | None = None
            while proc.has_work(partition):
                started = time.perf_counter()
                result = proc.step(partition, table, carry=inflight[0].states if inflight else None)
                outputs = result.outputs
                acks = (
                    await send([(o.topic, o.key.encode(), o.value, None) for o in outputs])
                    if outputs
                    else []
                )
                if inflight is not None:
                    await self._finish(partition, *inflight, changelog)
                inflight = (result, acks)
                self.observe_slice(time.perf_counter() - started)
                if proc.has_work(partition):
                    await asyncio.sleep(0)
            if inflight is not None:
                await self._finish(partition, *inflight, changelog)

    async def _finish(
        self, partition: int, result: Result, acks: list[Any], changelog: list[Any]
    ) -> None:
        """A slice's outputs are acknowledged: write its rows to the changelog
        (readable from the table at once; in the local store at the batch's end)."""
        if result.outputs:
            # A failed send raises here and stops the agent (crash_only).
            await asyncio.gather(*acks)
            self.triggers_by_day.update(result.delivered)
            self.fault("after_sends", len(result.outputs))
        rows = [(k.encode(), v) for k, v in result.writes.items()]
        changelog.extend(await self.table.write(partition, rows))
        mark = self.mark
        for key, value in result.writes.items():
            if key.startswith("c/"):
                # Only remembered here; the read-model task writes Redis.
                mark(partition, key[2:], value)
        if result.outputs:  # counts outputs, as after_sends does (streams/worker/faults.py)
            self.fault("after_writes", len(result.outputs))
