"""What a running worker shows to whatever observes it: metrics, summary, web views.

A leaf module: :class:`streams.worker.app.RetentionApp` provides a :class:`Snapshot` (and
the few reads the web needs, :class:`ObservedWorker`); :mod:`streams.worker.metrics`,
:mod:`streams.web.summary` and :mod:`streams.web.views` consume them and import
nothing of the app, so none of them needs a Faust app to be tested (docs/design.md,
"Layout").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import aiohttp

    from agents.core.engine import Engine
    from streams.config import Config

# (rule, step, outcome) -> firings;  (UTC date of the due time, rule, step) -> nudges.
DecisionCounts = Mapping[tuple[str, int, str], int]
TriggerCounts = Mapping[tuple[str, str, int], int]
# Rows of one table partition, (key, value), safe to read in another thread.
PartitionRows = tuple[int, Iterable[tuple[str, bytes]]]


@dataclass(frozen=True, slots=True)
class PartitionClock:
    """The live stream clock and due index of one customer partition."""

    partition: int
    watermark: int  # micros; NEVER until the clock has a value
    advanced_at: int  # wall-clock micros when the watermark last moved (0: never)
    due: int  # customers waiting in the partition's due index
    # Wall-clock micros the clock's stall counts from: its last move, else its first
    # event (0: neither yet), so a clock that never starts shows from the first event.
    since: int = 0
    stuck: int = 0  # micros it has not moved while events wait on it (docs/time.md "Time")

    @property
    def started(self) -> bool:
        """The clock has a value (it moved at least once since the partition was assigned)."""
        return self.advanced_at != 0


@dataclass(frozen=True, slots=True)
class RulesVersion:
    """One rules version of a partition's history (docs/rules.md "Changing rules")."""

    id: str
    effective_at: int | None  # declared, micros; None for the seed
    applied_at: int | None  # when the partition switched (differs when late); None: seed
    in_force: bool  # the newest applied at or before the partition's clock
    scheduled: bool  # applied after the partition's clock: not switched to yet
    # name -> (rule_version, on_change), in file order
    rules: tuple[tuple[str, str, str], ...] = ()

    @property
    def late(self) -> bool:
        return self.applied_at != self.effective_at


@dataclass(frozen=True, slots=True)
class PartitionRules:
    """The rules versions one customer partition keeps: the one in force, those
    ladders may be pinned to and the scheduled ones."""

    partition: int
    versions: tuple[RulesVersion, ...]


@dataclass(frozen=True, slots=True)
class ReadModelStatus:
    """The Redis read-model writer, as its counters stand."""

    redis_up: bool = False
    lag: int = 0  # customers whose newest state is not in Redis yet
    oldest_age: float = 0.0  # seconds since the oldest change still waiting
    resync_partitions: int = 0
    written: int = 0
    skipped: int = 0
    errors: int = 0
    last_flush_at: int | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One worker at one instant: its counters since start, partitions and clocks."""

    at: int  # wall-clock micros when it was taken
    worker: str  # host:port others reach this worker's web server at
    url: str  # Faust's canonical URL of the worker
    clock_mode: str  # "stream" or "wall"
    ready: bool = False  # table recovery completed and not running again
    recovering: bool = False
    owned: tuple[int, ...] = ()  # customer partitions actively assigned, sorted
    accepted: int = 0  # input messages that passed validation
    events: int = 0
    duplicates: int = 0
    outcomes: int = 0
    ingest_dead_letters: Mapping[str, int] = field(default_factory=dict)
    customer_dead_letters: Mapping[str, int] = field(default_factory=dict)
    late: Mapping[str, int] = field(default_factory=dict)  # by input topic
    # Accepted occurred_at in a form a later version refuses, by form (README "Inputs").
    lenient_timestamps: Mapping[str, int] = field(default_factory=dict)
    # Accepted events whose timezone was ignored (docs/send-windows.md "The customer's zone").
    invalid_timezones: int = 0
    decisions: DecisionCounts = field(default_factory=dict)
    # Every (rule, step, outcome) the configured ladders can produce: /metrics
    # exports each from 0, so a rate or increase() over the first decisions after
    # a start is not lost (the "no decisions" alert, docs/operations.md).
    decision_series: tuple[tuple[str, int, str], ...] = ()
    # Decisions by (rule, rule_version, outcome): the dashboard's "by rule and
    # version" (docs/operations.md "Changing rules live").
    decisions_by_version: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    # Send windows (docs/send-windows.md "Outputs"): the rules in force that have one,
    # decisions of firings that waited for their window by rule, and delivered
    # nudges by (rule, local send hour 0-23).
    windowed_rules: tuple[str, ...] = ()
    deferred: Mapping[str, int] = field(default_factory=dict)
    send_hours: Mapping[tuple[str, int], int] = field(default_factory=dict)
    triggers_by_day: TriggerCounts = field(default_factory=dict)
    # Live clocks, by partition (every partition with a runtime, owned or not yet dropped).
    clocks: tuple[PartitionClock, ...] = ()
    # Stream mode: each owned partition's clock, the live one else the stored one
    # (None: it never ran); empty in wall-clock mode.
    watermarks: Mapping[int, int | None] = field(default_factory=dict)
    lag: Mapping[str, int] = field(default_factory=dict)  # uncommitted messages, by topic
    read_model: ReadModelStatus = ReadModelStatus()
    clock_warnings: tuple[str, ...] = ()  # docs/time.md "Time": stuck stream clocks
    # Start-up check: topic -> warning, for a partition count not the configured one.
    partition_warnings: Mapping[str, str] = field(default_factory=dict)
    # Rules versions by partition, and how many arrived after a partition's clock had
    # passed their effective time (docs/rules.md "Changing rules").
    rules: tuple[PartitionRules, ...] = ()
    rules_late: int = 0


class ObservedWorker(Protocol):
    """What the summary and the web views read of a worker besides its snapshot."""

    @property
    def config(self) -> Config: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def http_client(self) -> aiohttp.ClientSession: ...

    @property
    def web_address(self) -> str:
        """host:port others reach this worker's web server at (Snapshot.worker)."""
        ...

    def engine_for(self, partition: int) -> Engine:
        """The engine running the rules versions of a customer partition."""
        ...

    def wall_clock(self) -> int: ...

    def snapshot(self) -> Snapshot: ...

    def metrics_text(self) -> bytes: ...

    def owner_of(self, customer_id: str) -> str | None:
        """The canonical URL of the worker owning the customer, if known."""
        ...

    def owners(self) -> dict[str, list[int]]:
        """Canonical URL -> customer partitions it owns (empty: no assignment yet)."""
        ...

    def customer_row(self, customer_id: str) -> bytes | None:
        """The stored state of a customer of an owned partition."""
        ...

    def partition_rows(self, partitions: Iterable[int]) -> list[PartitionRows]:
        """Each partition's table rows, to be read off the event loop."""
        ...
