"""Every use of Faust internals, in one place, pinned to the Faust version below.

The batched agents (docs/design.md, "The batched hot path") need three things
Faust 0.15 does not offer as public API:

* **the current event, set by hand.**  A table write takes its changelog
  partition (and a RocksDB read its partition database) from the *current
  event* of the task (``faust.streams._current_event``).  Inside
  ``Stream.take_events`` the agent's task has none (faust-streaming issues #497
  and #300), so :func:`event_context` sets it to an event of the partition whose
  rows are being read or written;
* **the producer buffer's flush threshold.**  ``ProducerBuffer.max_messages``
  (100) makes the conductor flush table changelog messages on every message once
  more than 100 are buffered, which a batch of table writes always exceeds;
* **the committed offsets** behind the consumer-lag figure.

``tests/unit/streams/test_faust_adapter.py`` checks each of these against the
installed Faust and fails loudly on an upgrade: re-read the Faust source for
these names before raising :data:`PINNED_FAUST`.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator
from importlib.metadata import version
from typing import Any

import faust.streams

PINNED_FAUST = "0.15.3"
FAUST_VERSION = version("faust-streaming")


def check_version() -> None:
    """Refuse to run on a Faust whose internals were not checked (see module doc)."""
    if FAUST_VERSION != PINNED_FAUST:
        raise RuntimeError(
            f"faust-streaming {FAUST_VERSION} is installed; streams.faust_adapter was "
            f"written against {PINNED_FAUST}. Re-check the internals it uses and update "
            "PINNED_FAUST (constraints.txt pins the tested version)."
        )


@contextlib.contextmanager
def event_context(event: Any) -> Iterator[None]:
    """Make ``event`` the task's current event for table reads and writes.

    The changelog partition of a write and the RocksDB partition of a read are
    ``event.message.partition``; the token restores whatever was set before.
    """
    token = faust.streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)


def write_rows(table: Any, partition: int, rows: Iterable[tuple[bytes, bytes]]) -> list[Any]:
    """Write rows to the local store and to the changelog; returns the changelog acks.

    ``table[key] = value`` would do the same but drop the changelog future, and
    Faust's commit-time producer flush gives up on a 0.1 s gap in its buffer
    (``ProducerBuffer.flush_atmost``), so offsets could be committed before the
    rows their events produced reach the changelog.  On a restart, recovery
    would then replay an older changelog value over the newer local row.  The
    agent awaits these acks before its batch is acked, so every committed event's
    row is in the changelog (and its persisted offset in the store) first.
    Call inside :func:`event_context` for an event of ``partition``.
    """
    data = table.data
    acks = []
    for key, value in rows:
        data[key] = value  # the store's partition comes from the current event
        acks.append(table.send_changelog(partition, key, value))
    return acks


def set_producer_buffer_limit(app: Any, max_messages: int) -> None:
    """Raise the buffered-changelog count above which the conductor flushes."""
    app.producer.buffer.max_messages = max_messages


def committed_offsets(consumer: Any) -> dict[Any, int]:
    """The consumer's last committed offset per topic-partition."""
    return dict(consumer._committed_offset)
