"""The customer-partition processor: the logic behind the customer agent.

It owns, per assigned partition of the customer-keyed topic, the stream clock
and the due index, both rebuilt from the tables when the partition is (re)
assigned and dropped on revocation.  It speaks bytes in and bytes out through a
small :class:`StateStore` protocol, so it runs the same over a Faust table and
over a dict in unit tests (both in :mod:`agents.partition`, with the reading and
writing of the table's rows).

Work is batched (docs/design.md, "The batched hot path"): the agent *feeds* a
partition's messages in offset order and then *steps* the processor in slices
of bounded work.  Each slice returns its outputs and one coalesced write per
touched row; the agent sends the outputs, awaits their acknowledgements once,
then writes the rows.  Inside a partition the work runs in exactly the order a
message-at-a-time loop would use (a message, then every customer its clock
advance made due, then the next message), and customer states touched earlier
in the slice are reused, so decisions never depend on where a batch or slice
boundary falls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from agents.contract import Output
from agents.core.clock import NEVER, WallClock, clock_mode, source_name
from agents.core.due_index import DueIndex
from agents.core.emissions import Conversion, Emission, Firing, Refused
from agents.core.engine import Engine
from agents.core.rules.history import Version
from agents.core.state import CustomerState
from agents.core.timeutil import DEFAULT_MIN_EVENT_TIME, iso
from agents.core.validation import (
    CODE_EARLY_TIMESTAMP,
    CODE_FUTURE_TIMESTAMP,
)
from agents.messages import (
    dead_letter_record,
    decision_record,
    dumps,
    outcome_record,
)
from agents.partition import (
    Loader,
    PartitionRuntime,
    StateStore,
    carrying_loader,
    load_state,
    read_history,
    rebuild_index,
    restore_clock,
    write_clock,
    write_history,
    write_state,
)
from agents.partition_rules import PartitionVersions
from agents.wire import (
    BUNDLE,
    BadMessage,
    bundle_items,
    read_wire_event,
    read_wire_rules,
    time_text,
)

# Persist a partition's stream clock at least this often (messages); a stale
# clock after a crash only delays firings, it never changes them.
CLOCK_PERSIST_EVERY = 500
# Units of work (a message, or one due customer) per slice: bounds the time the
# event loop is held by one call, e.g. when a clock advance makes thousands of
# customers due at once.
SLICE_WORK = 500
# Customer states are decoded from the table once per slice, not kept across
# slices: a cache across slices was tried and left a restarted worker acting on
# states older than its recovered table (docs/design.md, "The batched hot path").


@dataclass(slots=True)
class Result:
    outputs: list[Output] = field(default_factory=list)
    writes: dict[str, bytes] = field(default_factory=dict)
    # Delivered nudges by (UTC date of due time, rule, step), for the dashboard.
    delivered: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    # Every customer state the slice read or changed, as of its end: the next
    # slice's ``carry`` while this slice's rows are not written yet.
    states: dict[str, CustomerState] = field(default_factory=dict)


class CustomerProcessor:
    def __init__(
        self,
        engine: Engine,
        *,
        mode: str,
        sources: Iterable[str],
        nudges_topic: str,
        decisions_topic: str,
        outcomes_topic: str,
        dlq_topic: str,
        internal_topic: str,
        wall_clock: WallClock,
        future_tolerance: int,
        min_event_time: int = DEFAULT_MIN_EVENT_TIME,
        versions: Sequence[Version] = (),
    ) -> None:
        self.engine = engine
        # Each partition's rules versions: the worker's rules as the seed, the versions
        # it read from the rules topic at start, and those markers bring.
        self.versions = PartitionVersions(engine, versions)
        self.mode = mode
        self.clock = clock_mode(mode)
        self.sources = tuple(sources)
        self._known_sources = frozenset(self.sources)
        self.nudges_topic = nudges_topic
        self.decisions_topic = decisions_topic
        self.outcomes_topic = outcomes_topic
        self.dlq_topic = dlq_topic
        self.internal_topic = internal_topic
        self.wall_clock = wall_clock
        # Internal-topic events and advances are bounded like ingest's inputs:
        # at most this far after the wall clock (docs/time.md "Time").
        self.future_tolerance = future_tolerance
        # ...and no earlier than the earliest accepted event time.
        self.min_event_time = min_event_time
        self.runtimes: dict[int, PartitionRuntime] = {}
        self.counters: Counter[str] = Counter()
        self.decision_counts: Counter[tuple[str, int, str]] = Counter()
        # Decisions by (rule, rule_version, outcome): the dashboard's by-version view.
        self.version_counts: Counter[tuple[str, str, str]] = Counter()
        # Send windows (docs/send-windows.md "Outputs"): decisions of firings that
        # waited for their window, by rule, and delivered nudges by rule and local
        # send hour (0-23).  Empty while no rule has a window.
        self.deferred_counts: Counter[str] = Counter()
        self.send_hours: Counter[tuple[str, int]] = Counter()
        self.dead_letters: Counter[str] = Counter()
        # Events that arrived after the stream clock passed them, by input topic.
        self.late: Counter[str] = Counter()

    # --- partition lifecycle ---------------------------------------------------------

    def revoke(self, partitions: Iterable[int] | None = None) -> None:
        if partitions is None:
            self.runtimes.clear()
            return
        for p in partitions:
            self.runtimes.pop(p, None)

    def runtime(self, partition: int, store: StateStore) -> PartitionRuntime:
        rt = self.runtimes.get(partition)
        if rt is not None:
            return rt
        clock = restore_clock(
            partition, store, self.sources, self.engine.settings.stream_allowed_lateness
        )
        history = read_history(partition, store, self.versions.seed)
        rt = PartitionRuntime(partition, clock, DueIndex(), self.versions.engine_for(history))
        self.versions.restore(rt, self._watermark(rt))
        rt.index, rebuilt = rebuild_index(partition, store, rt.engine.wake_at)
        self.counters["index_rebuilds"] += 1
        self.counters["index_rebuilt_customers"] += rebuilt
        self.runtimes[partition] = rt
        return rt

    # --- messages ----------------------------------------------------------------------

    def feed(
        self, partition: int, messages: Iterable[tuple[int, bytes | None]], store: StateStore
    ) -> None:
        """Queue (offset, value) messages of one partition, in offset order."""
        work = self.runtime(partition, store).work
        work.extend(("m", offset, value) for offset, value in messages)

    def has_work(self, partition: int) -> bool:
        rt = self.runtimes.get(partition)
        return bool(rt is not None and rt.work)

    def step(
        self,
        partition: int,
        store: StateStore,
        limit: int = SLICE_WORK,
        carry: Mapping[str, CustomerState] | None = None,
    ) -> Result:
        """Process up to ``limit`` units of queued work; one write per touched row.

        ``carry`` is the previous slice's ``Result.states`` when its rows are not
        in ``store`` yet (the agent computes a slice while the previous one's
        outputs are being acknowledged): states are taken from it before the
        store, so the result is the one a single longer slice would give.
        """
        rt = self.runtime(partition, store)
        result = Result()
        states = result.states  # read or changed in this slice
        load = carrying_loader(carry) if carry else load_state
        dirty: dict[str, None] = {}  # changed in this slice, in first-touch order
        persist_clock = False
        work = rt.work
        done = 0
        # A message's firings and those of the customers its clock advance made due
        # go out together, sorted (see _emit).
        firings: list[Emission] = []
        while work and done < limit:
            done += 1
            kind, a, b = work.popleft()
            if kind == "m" and firings:
                self._emit(firings, result)
                firings = []
            if kind == "d":
                state = self._get(a, partition, store, states, load)
                firings.extend(rt.engine.advance(state, b))
                touched: str | None = a
            else:
                try:
                    msg = self._parse(b) if kind == "m" else b
                    if kind == "m" and msg.get("type") == BUNDLE:
                        # Its items run now, in order, each as one message would.
                        work.extendleft(("p", a, item) for item in reversed(bundle_items(msg)))
                        continue
                    touched, adv = self._message(rt, msg, store, states, firings, load, carry)
                except BadMessage as exc:
                    raw = b if kind == "m" else orjson.dumps(b)
                    self._dead_letter(result, partition, a, raw, exc.code, str(exc))
                    touched, adv = exc.touched, False
                persist_clock |= adv
                if self.clock.event_time:
                    rt.since_persist += 1
                wm = self._watermark(rt)
                if wm > rt.watermark:
                    rt.watermark = wm
                    rt.advanced_at = self.wall_clock()
                    # Due customers run before the next message, as they would one
                    # message at a time; they may spill into the next slice.
                    work.extendleft(("d", cid, wm) for cid in reversed(rt.index.pop_due(wm)))
            if touched is not None:
                dirty[touched] = None
                rt.index.set(touched, rt.engine.wake_at(states[touched]))
        self._emit(firings, result)
        writes = result.writes
        if rt.history_changed:
            rt.history_changed = False
            write_history(writes, partition, rt.engine.history, store)
        for cid in dirty:
            write_state(writes, cid, states[cid], partition)
        if self.clock.event_time and (persist_clock or rt.since_persist >= CLOCK_PERSIST_EVERY):
            rt.since_persist = 0
            write_clock(writes, rt)
        return result

    def handle(self, partition: int, value: bytes, store: StateStore, offset: int = -1) -> Result:
        """One message, processed to completion (tests and simple callers)."""
        self.feed(partition, [(offset, value)], store)
        result = Result()
        while self.has_work(partition):
            part = self.step(partition, store, limit=1 << 62)
            result.outputs.extend(part.outputs)
            result.writes.update(part.writes)
            result.delivered.update(part.delivered)
        return result

    @staticmethod
    def _parse(value: bytes | None) -> dict[str, Any]:
        try:
            msg = orjson.loads(value or b"")
        except orjson.JSONDecodeError as exc:
            raise BadMessage(f"not JSON: {exc}") from None
        if not isinstance(msg, dict):
            raise BadMessage("not a JSON object")
        return msg

    def _message(
        self,
        rt: PartitionRuntime,
        msg: Any,
        store: StateStore,
        states: dict[str, CustomerState],
        firings: list[Emission],
        load: Loader,
        carry: Mapping[str, CustomerState] | None = None,
    ) -> tuple[str | None, bool]:
        """Apply one internal-topic message; returns (customer touched, clock marked)."""
        if not isinstance(msg, dict):
            raise BadMessage("not a JSON object")
        kind = msg.get("type")
        if kind == "ev":
            src = msg.get("src")
            now = self.wall_clock()
            event = read_wire_event(
                msg.get("ev"), latest=now + self.future_tolerance, earliest=self.min_event_time
            )
            if not isinstance(src, str) or src not in self._known_sources:
                raise BadMessage(f"unknown source {src!r}"[:300])
            self.clock.observe(rt.clock, src, event.occurred_at)
            wm = self._watermark(rt)
            rt.last_event_at = now
            rt.first_event_at = rt.first_event_at or now
            state = self._get(event.customer_id, rt.partition, store, states, load)
            fired = rt.engine.ingest(state, event, wm)
            if fired is None:
                self.counters["duplicates"] += 1  # a duplicate, never also a late event
                return None, False
            if isinstance(fired, Refused):
                firings.extend(fired.emitted)
                raise BadMessage(fired.reason, fired.code, touched=event.customer_id)
            self.counters["events"] += 1
            if self.clock.is_late(event.occurred_at, wm):
                # Later than the allowed lateness: applied at once (docs/time.md "Time").
                self.late[src.rpartition(":")[0]] += 1
            firings.extend(fired)
            return event.customer_id, False
        if kind == "adv":
            src, until = msg.get("src"), msg.get("until")
            if not isinstance(src, str) or src not in self._known_sources:
                raise BadMessage(f"advance from unknown source {src!r}"[:300])
            if not isinstance(until, int) or isinstance(until, bool):
                raise BadMessage(f"advance 'until' must be integer micros, got {until!r}"[:300])
            if not self.clock.event_time:
                return None, False  # the wall clock ignores advances
            latest = self.wall_clock() + self.future_tolerance
            if until > latest:
                # Written by something other than ingest (which bounds it the same
                # way): an advance far ahead would fire every ladder at once.
                raise BadMessage(
                    f"advance: until {time_text(until)} is after {iso(latest)} "
                    "(now + the future tolerance)",
                    CODE_FUTURE_TIMESTAMP,
                )
            if until < self.min_event_time:
                # A clock before every accepted event, e.g. before year 1, would
                # only make the reports' as-of unreadable (docs/time.md "Time").
                raise BadMessage(
                    f"advance: until {time_text(until)} is before the earliest accepted "
                    f"event time {iso(self.min_event_time)}",
                    CODE_EARLY_TIMESTAMP,
                )
            rt.clock.mark(src, until)
            return None, True
        if kind == "tick":
            self.counters["ticks"] += 1
            return None, False
        if kind == "rules":
            self._rules(rt, msg, store, {**(carry or {}), **states})
            return None, False
        raise BadMessage(f"unknown message type {kind!r}"[:300])

    # --- rules changes (docs/rules.md "Changing rules") ---------------------------------

    def _rules(
        self,
        rt: PartitionRuntime,
        msg: dict[str, Any],
        store: StateStore,
        newer: Mapping[str, CustomerState],
    ) -> None:
        """A ``rules`` marker: the version is adopted once (every input partition sends
        it), then every customer of the partition wakes at its switch."""
        src, effective_at, text, version = read_wire_rules(msg)
        if src not in self._known_sources:
            raise BadMessage(f"rules from unknown source {src!r}"[:300])
        if self.versions.marker(rt, version, effective_at, text, self._watermark(rt)):
            rt.index, _ = rebuild_index(rt.partition, store, rt.engine.wake_at, newer)

    @property
    def rules_late(self) -> int:
        """Rules versions a partition learned of after its clock had passed their time."""
        return self.versions.late

    def rule_versions(self) -> dict[int, list[tuple[Version, bool, bool]]]:
        """Partition -> its versions with (in force, scheduled) as its clock stands
        (``GET /retention/rules``, the metrics)."""
        return {
            p: self.versions.states(rt, self._watermark(rt))
            for p, rt in sorted(self.runtimes.items())
        }

    def _dead_letter(
        self, result: Result, partition: int, offset: int, raw: bytes | None, code: str, why: str
    ) -> None:
        self.dead_letters[code] += 1
        record = dead_letter_record(
            raw or b"",
            code=code,
            message=why,
            topic=self.internal_topic,
            partition=partition,
            offset=offset,
            received_at=self.wall_clock(),
        )
        key = f"{self.internal_topic}:{partition}:{offset}"
        result.outputs.append(Output(self.dlq_topic, key, dumps(record.to_dict())))

    def stuck_for(self, rt: PartitionRuntime, now: int) -> int:
        """Wall micros the stream clock of ``rt`` has not moved while events it took
        in wait on it: since it last moved or, if it never has, since its first
        event; 0 once it moves after the newest event, so an idle partition whose
        clock caught up is never stuck (docs/time.md "Time", "A stuck clock")."""
        if not self.clock.event_time or rt.last_event_at <= rt.advanced_at:
            return 0
        return max(0, now - (rt.advanced_at or rt.first_event_at))

    def stuck_clocks(self, idle_timeout: int) -> dict[int, str]:
        """Partition -> warning, for each stream clock stuck for over ``idle_timeout``
        micros (:meth:`stuck_for`), naming the input partitions that hold it back."""
        now = self.wall_clock()
        out: dict[int, str] = {}
        for p, rt in sorted(self.runtimes.items()):
            stuck = self.stuck_for(rt, now)
            if stuck <= idle_timeout:
                continue
            wm = rt.clock.watermark()
            behind = [src for src in self.sources if rt.clock.own(src) <= wm]
            shown = ", ".join(behind[:5]) + (
                f" and {len(behind) - 5} more" if len(behind) > 5 else ""
            )
            if wm <= NEVER:
                # Producers that key by customer_id leave most input partitions of a
                # customer partition silent, so its clock never starts.
                out[p] = (
                    f"stream clock of partition {p} has not started {stuck // 1_000_000} s "
                    f"after its first event: {len(behind)} of {len(self.sources)} input "
                    f"partitions sent no event or control/advance ({shown}); on a live "
                    "deployment set RETENTION_STREAM_HEARTBEAT, else send a control/advance "
                    'to every input partition (docs/time.md "Time")'
                )
                continue
            out[p] = (
                f"stream clock of partition {p} stuck at {iso(max(wm, 0))} for "
                f"{stuck // 1_000_000} s with events waiting; "
                f"held back by {shown or 'no source'} (silent input partitions? "
                "set RETENTION_STREAM_HEARTBEAT, send a control/advance or check the topics' "
                "partition counts)"
            )
        return out

    def clock_warnings(self, idle_timeout: int) -> list[str]:
        """The warnings of :meth:`stuck_clocks`, by partition."""
        return list(self.stuck_clocks(idle_timeout).values())

    def _watermark(self, rt: PartitionRuntime) -> int:
        return self.clock.now(rt.clock, self.wall_clock)

    def _get(
        self,
        cid: str,
        partition: int,
        store: StateStore,
        states: dict[str, CustomerState],
        load: Loader,
    ) -> CustomerState:
        state = states.get(cid)
        if state is None:
            state = states[cid] = load(cid, partition, store)
        return state

    def _emit(self, emissions: list[Emission], result: Result) -> None:
        if not emissions:
            return
        firings = [e for e in emissions if isinstance(e, Firing)]
        # Simultaneous firings go out by (due time, rule order, step): docs/rules.md "Rules".
        firings.sort(key=lambda f: (f.due_at, f.customer_id, f.rule_index, f.step))
        now = iso(self.wall_clock())  # one fired_at for the message's firings
        for f in firings:
            if f.backfill:
                self.counters["backfill_silenced"] += 1
                continue
            decision = decision_record(
                f, fired_at=now, clock=self.clock.name, outcome=f.outcome, holdout=f.holdout
            )
            self.decision_counts[(f.rule, f.step, f.outcome)] += 1
            self.version_counts[(f.rule, f.rule_version or "", f.outcome)] += 1
            if f.zone is not None:
                self._count_window(f, decision.send_local)
            result.outputs.append(
                Output(self.decisions_topic, f.customer_id, dumps(decision.to_dict()))
            )
            if f.delivered:
                result.delivered[(decision.due_at[:10], f.rule, f.step)] += 1
                result.outputs.append(
                    Output(self.nudges_topic, f.customer_id, dumps(decision.nudge_dict()))
                )
        window = self.engine.settings.attribution_window
        for c in emissions:
            if isinstance(c, Conversion):
                self.counters["outcomes"] += 1
                record = outcome_record(c, attribution_window=window)
                result.outputs.append(
                    Output(self.outcomes_topic, c.customer_id, dumps(record.to_dict()))
                )

    def _count_window(self, f: Firing, send_local: str | None) -> None:
        if f.send_at is not None and f.send_at != f.due_at:
            self.deferred_counts[f.rule] += 1
        if f.delivered and send_local is not None:
            self.send_hours[(f.rule, local_hour(send_local))] += 1


def local_hour(send_local: str) -> int:
    """The hour (0-23) of a record's ``send_local`` (``2026-03-29T09:00:00+02:00``)."""
    return int(send_local[11:13])


def input_sources(topics: Iterable[str], partitions: int) -> list[str]:
    """Every input topic-partition that feeds the stream clock."""
    return [source_name(t, p) for t in topics for p in range(partitions)]


def group_by_partition(
    messages: Sequence[tuple[int, int, bytes | None]],
) -> dict[int, list[tuple[int, bytes | None]]]:
    """(partition, offset, value) -> {partition: [(offset, value), ...]} in arrival order."""
    out: dict[int, list[tuple[int, bytes | None]]] = {}
    for partition, offset, value in messages:
        out.setdefault(partition, []).append((offset, value))
    return out
