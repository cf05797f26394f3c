"""The backtest's history sorted on disk by customer (docs/rules.md "Backtest"): an
external sort, as ``retention replay`` sorts by time.

:func:`sort_history` keys each non-blank line by (customer_id, line number) - in a
process pool, a block of lines a task (:func:`key_lines`) - and writes runs of at
most ``run_bytes`` to disk; a line that cannot name a customer goes to a file of
its own, except a ``control/rules`` line (a rules change, docs/rules.md "Changing
rules"), which is read and kept apart (:attr:`SortedHistory.rule_changes`).
:func:`customer_chunks` merges the runs (``heapq.merge``) into chunks of
whole customers.  :func:`ordered_map` is the bounded, ordered pool map both passes
use (so are the chunks' runs in :mod:`streams.ops.backtest`).
"""

from __future__ import annotations

import heapq
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

import orjson

from agents.core.timeutil import TimeFormatError, parse_timestamp, to_micros
from agents.core.validation import ValidationError, validate
from streams.config import Config
from streams.feed.history import RulesChange, rules_change

DEFAULT_RUN_BYTES = 64 * 1024 * 1024
# Lines keyed (customer id, validity of the latest time) per task of the sort pass.
KEY_BLOCK_LINES = 10_000

T = TypeVar("T")
R = TypeVar("R")
_RUN_HEADER = struct.Struct("<IQI")  # customer id bytes, line number, line bytes


@dataclass(slots=True)
class SortedHistory:
    """The history's lines in runs sorted by (customer_id, line number), on disk."""

    folder: Path
    runs: list[Path] = field(default_factory=list)
    # Lines that cannot name a customer: JSON-less, customer-less or oversized.
    strays: Path | None = None
    stray_lines: int = 0
    lines: int = 0  # non-blank lines read
    latest: int | None = None  # latest occurred_at of a valid line (micros)
    # The history's control/rules lines, in file order (not events, not strays).
    rule_changes: list[RulesChange] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class InputBounds:
    """What decides whether a line is a valid event: the reference's own bounds."""

    max_bytes: int
    future_tolerance: int
    earliest: int
    now: int

    @classmethod
    def of(cls, config: Config, now: int) -> InputBounds:
        return cls(config.max_message_bytes, config.future_tolerance, config.min_event_time, now)


def key_lines(bounds: InputBounds, lines: list[bytes]) -> tuple[list[str | None], int | None]:
    """Each line's customer_id (None: not a JSON object with a string one, or too
    large: it can only be a dead letter) and the latest occurred_at of a valid line.

    Only a line dated after the latest so far is validated (the chunks validate
    every line again); on a history in time order that is most of them, which is
    why this runs in the pool."""
    keys: list[str | None] = []
    latest: int | None = None
    for line in lines:
        customer, t = _key_and_time(line, bounds.max_bytes)
        keys.append(customer)
        if customer is None or t is None or (latest is not None and t <= latest):
            continue
        try:
            event = validate(
                line,
                now=bounds.now,
                max_bytes=bounds.max_bytes,
                future_tolerance=bounds.future_tolerance,
                earliest=bounds.earliest,
            )
        except ValidationError:
            continue
        latest = event.occurred_at
    return keys, latest


def _key_and_time(line: bytes, max_bytes: int) -> tuple[str | None, int | None]:
    if len(line) > max_bytes:
        return None, None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    customer = obj.get("customer_id")
    if not isinstance(customer, str):
        return None, None
    try:
        return customer, to_micros(parse_timestamp(obj.get("occurred_at")))
    except (TimeFormatError, ValueError, OverflowError):
        return customer, None


class _RunWriter:
    def __init__(self, history: SortedHistory, run_bytes: int) -> None:
        self.history = history
        self.run_bytes = run_bytes
        self.buffer: list[tuple[bytes, int, bytes]] = []
        self.size = 0

    def add(self, customer: bytes, number: int, line: bytes) -> None:
        self.buffer.append((customer, number, line))
        # The tuple and its two bytes objects cost about 150 bytes beyond the data.
        self.size += len(customer) + len(line) + 150
        if self.size >= self.run_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        self.buffer.sort()
        path = self.history.folder / f"run-{len(self.history.runs):05d}"
        with path.open("wb") as out:
            for customer, number, line in self.buffer:
                out.write(_RUN_HEADER.pack(len(customer), number, len(line)))
                out.write(customer)
                out.write(line)
        self.history.runs.append(path)
        self.buffer = []
        self.size = 0


def _blocks(source: IO[bytes], size: int) -> Iterator[list[tuple[int, bytes]]]:
    """Non-blank lines with their line numbers, ``size`` at a time."""
    block: list[tuple[int, bytes]] = []
    for number, raw in enumerate(source):
        line = raw.rstrip(b"\r\n")
        if line.strip():
            block.append((number, line))
            if len(block) >= size:
                yield block
                block = []
    if block:
        yield block


def _key_block(
    args: tuple[InputBounds, list[tuple[int, bytes]]],
) -> tuple[list[str | None], int | None]:
    bounds, block = args
    return key_lines(bounds, [line for _, line in block])


def sort_history(
    source: IO[bytes],
    folder: Path,
    bounds: InputBounds,
    *,
    run_bytes: int = DEFAULT_RUN_BYTES,
    pool: ProcessPoolExecutor | None = None,
    in_flight: int = 1,
    block_lines: int = KEY_BLOCK_LINES,
) -> SortedHistory:
    """Key every non-blank line of ``source`` by customer and write sorted runs to
    ``folder``; with a pool, blocks of lines are keyed there, in file order."""
    history = SortedHistory(folder=folder)
    writer = _RunWriter(history, run_bytes)
    strays_path = folder / "strays"
    blocks = ((bounds, block) for block in _blocks(source, block_lines))
    with strays_path.open("wb") as strays:
        for (_, block), (keys, latest) in ordered_map(pool, _key_block, blocks, in_flight):
            history.lines += len(block)
            if latest is not None and (history.latest is None or latest > history.latest):
                history.latest = latest
            for (number, line), customer in zip(block, keys, strict=True):
                if customer is None:
                    change = rules_change(line, number + 1)
                    if change is not None:
                        history.rule_changes.append(change)
                        continue
                    strays.write(line + b"\n")
                    history.stray_lines += 1
                else:
                    writer.add(customer.encode("utf-8", "surrogatepass"), number, line)
    writer.flush()
    history.strays = strays_path
    return history


def _read_run(path: Path) -> Iterator[tuple[bytes, int, bytes]]:
    header = _RUN_HEADER.size
    with path.open("rb") as run:
        while head := run.read(header):
            key_len, number, line_len = _RUN_HEADER.unpack(head)
            customer = run.read(key_len)
            yield customer, number, run.read(line_len)


def customer_chunks(history: SortedHistory, chunk_lines: int) -> Iterator[list[bytes]]:
    """Lines in chunks of whole customers (each customer's lines in file order), then
    the stray lines in chunks of ``chunk_lines``."""
    chunk: list[bytes] = []
    previous: bytes | None = None
    for customer, _, line in heapq.merge(*(_read_run(p) for p in history.runs)):
        if customer != previous and len(chunk) >= chunk_lines:
            yield chunk
            chunk = []
        previous = customer
        chunk.append(line)
    if chunk:
        yield chunk
    if history.strays is not None and history.stray_lines:
        chunk = []
        with history.strays.open("rb") as strays:
            for line in strays:
                chunk.append(line.rstrip(b"\n"))
                if len(chunk) >= chunk_lines:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk


def ordered_map(
    pool: ProcessPoolExecutor | None,
    fn: Callable[[T], R],
    items: Iterable[T],
    in_flight: int = 1,
) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` in the items' order, computed in ``pool`` (in this process
    without one) with at most ``in_flight`` items submitted and not yet taken: the
    parent holds only those, whatever the number of items."""
    if pool is None:
        for item in items:
            yield item, fn(item)
        return
    pending: deque[tuple[T, Future[R]]] = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= in_flight:
            first, future = pending.popleft()
            yield first, future.result()
    while pending:
        first, future = pending.popleft()
        yield first, future.result()
