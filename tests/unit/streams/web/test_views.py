"""The worker's wiring and web views in-process: a real RetentionApp on ``memory://``,
its agents driven with batches of raw input, its views served by aiohttp; no broker.

Only the Kafka side is played by the test: the producer's sends are recorded and
acknowledged at once (so are the table's changelog sends), and the batches come
from a list instead of a consumer.  Everything between - ingest, bundles, the
customers agent, the Faust memory table, the read model's marks, the snapshot,
metrics, summary and lookup - is the worker's own code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from prometheus_client.parser import text_string_to_metric_families

from agents.core.clock import ManualClock
from agents.core.ids import trigger_id
from agents.core.prediction import GammaGammaParams, NbdParams, expected_order_value, p_alive
from agents.core.rules import default_rules, default_text, load_rules
from agents.core.rules.history import set_id
from agents.core.settings import CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import TIME_MIN, to_micros
from agents.core.zones import TZDATA_VERSION
from agents.faust_agents import Send, SendMany
from streams.aiokafka_adapter import BatchSender, Record
from streams.config import load_config
from streams.web import views
from streams.web.summary import AS_OF_MAX, AS_OF_MIN
from streams.worker.app import RetentionApp
from streams.worker.observe import PartitionClock, PartitionRules, RulesVersion, Snapshot
from tests.fixtures.asyncapi_parser import errors as asyncapi_errors
from tests.fixtures.fake_producer import FakeKafkaProducer

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
NOW = to_micros(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
PARTITIONS = 2
CUSTOMERS = ("cus_a", "cus_b", "cus_c")
HIDDEN = {"recent_event_ids", "recent_order_ids", "event_ids", "order_ids", "pending"}


class Stream:
    """What the agents read of a Faust stream: batches of events."""

    def __init__(self, batches: Iterable[list[Any]]) -> None:
        self.batches = list(batches)

    async def take_events(self, max_: int, within: float) -> AsyncIterator[list[Any]]:
        for batch in self.batches:
            yield batch


class Event:
    """A consumed message as the agents read it (weak-referenceable, as Faust's is)."""

    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self.value = value
        self.message = SimpleNamespace(topic=topic, partition=partition, offset=offset)


class Broker:
    """The Kafka side: records every send and acknowledges it at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        timestamp: Any,
        headers: Any,
    ) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value, partition))
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        ack.set_result(SimpleNamespace(offset=len(self.sent)))  # RecordMetadata's offset
        return ack

    def on(self, topic: str) -> list[tuple[bytes | None, bytes, int | None]]:
        return [(k, v, p) for t, k, v, p in self.sent if t == topic]

    def record(self, topic: str, key: bytes | None, value: bytes, partition: int) -> int:
        """One record of a record batch (streams.aiokafka_adapter.BatchSender)."""
        self.sent.append((topic, key, value, partition))
        return len(self.sent)

    def kafka_producer(self) -> FakeKafkaProducer:
        return FakeKafkaProducer(self.record, partitions=PARTITIONS)


class AckedTable:
    """The worker's TableStore, its changelog sends acknowledged as a broker would."""

    def __init__(self, store: Any, broker: Broker) -> None:
        self.store = store
        self.get, self.scan, self.within = store.get, store.scan, store.within
        self.settle = store.settle
        # The changelog rows leave through the producer (streams.faust_adapter.send_rows).
        store.table.app.producer._ensure_producer = broker.kafka_producer

    async def write(self, partition: int, rows: Sequence[tuple[bytes, bytes]]) -> list[Any]:
        acks: list[Any] = await self.store.write(partition, rows)
        return acks


class OwnsEverything(RetentionApp):
    """A worker that was assigned every partition (there is no broker to assign them)."""

    def owned_partitions(self) -> set[int]:
        return set(range(self.config.partitions))

    def owner_of(self, customer_id: str) -> str | None:
        return self.canonical_url


def day(n: int) -> str:
    """Day ``n`` of the history (day 1: 2026-03-01), 10:00 UTC."""
    return (T0 + timedelta(days=n - 1)).isoformat().replace("+00:00", "Z")


def purchase(cid: str, n: int, on: int) -> bytes:
    return orjson.dumps(
        {
            "schema": "purchase/1",
            "event_id": f"evt-{cid}-{n}",
            "customer_id": cid,
            "occurred_at": day(on),
            "order_id": f"ORD-{cid}-{n}",
            "amount": 20.0,
            "currency": "EUR",
        }
    )


def advance(on: int) -> bytes:
    return orjson.dumps({"schema": "control/advance", "until": day(on)})


class Worker:
    """A RetentionApp, its broker stand-in and its wall clock."""

    def __init__(self, **env: str) -> None:
        self.clock = ManualClock(NOW)
        # A rules file holds the holdout itself (docs/rules.md "Environment aliases").
        holdout = {} if "RETENTION_RULES_FILE" in env else {"RETENTION_HOLDOUT_PERCENT": "0"}
        config = load_config(
            {
                "RETENTION_STORE": "memory://",
                "RETENTION_CLOCK": "stream",
                "RETENTION_PARTITIONS": str(PARTITIONS),
                **holdout,
                **env,
            },
            use_stack_file=False,
        )
        self.app = OwnsEverything(config, wall_clock=self.clock)
        self.broker = Broker()
        self.offsets: dict[tuple[str, int], int] = {}

        async def start() -> Send:
            return self.broker.send

        async def start_many() -> SendMany:
            async def send_many(records: list[Record]) -> list[Any]:
                batches = await BatchSender(self.broker.kafka_producer()).send(records)
                return [b.ack for b in batches]

            return send_many

        self.app.ingest_agent.start = start
        self.app.customer_agent.start = start_many
        self.app.customer_agent.table = AckedTable(self.app.store, self.broker)

    def recovered(self) -> None:
        """Table recovery completed (what Faust's Recovery service sets)."""
        tables: Any = self.app.faust_app.tables  # TableManagerT does not declare .recovery
        tables.recovery.completed.set()

    def _event(self, topic: str, partition: int, value: bytes) -> Any:
        offset = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = offset + 1
        return Event(topic, partition, offset, value)

    async def feed(self, inputs: list[tuple[str, int, bytes]]) -> None:
        """One batch of input messages through the ingest agent, then what it sent to
        the internal topic through the customers agent."""
        internal = self.app.config.topics.customer_events
        before = len(self.broker.on(internal))
        batch = [self._event(t, p, v) for t, p, v in inputs]
        await self.app.ingest_agent.run(Stream([batch]))
        bundles = [
            self._event(internal, p or 0, v) for _, v, p in self.broker.on(internal)[before:]
        ]
        await self.app.customer_agent.run(Stream([bundles]))


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    yield Worker()


@pytest.fixture
async def client(worker: Worker) -> AsyncIterator[TestClient[Any, Any]]:
    web: Any = worker.app.faust_app.web  # Faust's aiohttp driver: its aiohttp Application
    async with TestClient(TestServer(web.web_app)) as c:
        yield c


async def test_before_recovery_the_worker_is_live_but_not_ready(
    worker: Worker, client: TestClient[Any, Any]
) -> None:
    live = await client.get("/health/live")
    assert live.status == 200
    assert await live.json() == {"status": "live", "worker": worker.app.web_address}
    ready = await client.get("/health/ready")
    assert ready.status == 503
    assert await ready.json() == {
        "ready": False,
        "worker": worker.app.web_address,
        "recovering": False,
        "partitions": [0, 1],
        "warnings": [],
        "stream_clocks": [],  # no event yet
    }
    lookup = await client.get("/retention/customers/cus_a")
    assert lookup.status == 503
    assert (await lookup.json())["error"] == "not ready: tables are recovering"
    text = (await (await client.get("/metrics")).read()).decode()
    assert metrics(text)[("retention_ready", ())] == 0


async def test_the_served_contract_is_self_contained_for_the_official_asyncapi_parser(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    # A consumer saves GET /retention/asyncapi and hands it to AsyncAPI tooling: every
    # payload must resolve with no schema file beside it (README "Topics and schemas").
    resp = await client.get("/retention/asyncapi")
    assert resp.status == 200
    served = await resp.json()
    assert asyncapi_errors(served, tmp_path / "asyncapi.json") == []
    # the 12 record schemas (8 input contracts, 4 outputs) and the control/rules marker
    assert len(served["components"]["schemas"]) == 13


async def test_events_flow_through_the_agents_into_lookup_summary_and_metrics(
    worker: Worker, client: TestClient[Any, Any]
) -> None:
    topics = worker.app.config.topics
    worker.recovered()
    inputs = [
        (topics.purchases, i % PARTITIONS, purchase(c, 1, 1)) for i, c in enumerate(CUSTOMERS)
    ]
    inputs.append((topics.purchases, 0, b"{not json"))
    await worker.feed(inputs)
    # Every input partition's clock to day 40: the ladders' first steps fall due.
    sources = [(t, p) for t in topics.inputs() for p in range(PARTITIONS)]
    await worker.feed([(t, p, advance(40)) for t, p in sources])

    decisions = worker.broker.on(topics.decisions)
    nudges = worker.broker.on(topics.nudges)
    assert decisions and nudges  # the first steps fired
    assert len(worker.broker.on(topics.dlq)) == 1

    # The lookup: the stored state, without the dedup memory and raw waiting events.
    lookup = await client.get("/retention/customers/cus_b")
    assert lookup.status == 200
    body = await lookup.json()
    assert set(body) == {
        "customer_id",
        "state",
        "scores",
        "timezone",
        "pending",
        "next_steps",
        "deferred",
        "recent_decisions",
        "holdout",
        "served_by",
    }
    assert body["customer_id"] == "cus_b" and body["served_by"] == worker.app.web_address
    # Day 40, one order on day 1: second_purchase's ladder is done, inactivity's last
    # step is next, with the version of the rule that will judge it.
    assert body["next_steps"] == [
        {
            "rule": "inactivity",
            "step": 3,
            "due_at": day(61),
            "anchor_at": day(1),
            "threshold": {"iso": "P60D", "seconds": 60 * 86400},
            "rule_version": default_rules().rule("inactivity").version,  # type: ignore[union-attr]
        }
    ]
    assert [(p["rule"], p["step"], p["due_at"]) for p in body["pending"]] == [
        ("inactivity", 3, day(61))
    ]
    assert body["state"]["orders"] == 1 and body["state"]["pending_events"] == 0
    assert not HIDDEN & set(body["state"])
    assert body["recent_decisions"] and body["holdout"] is False
    # No rule has a send window: nothing waits for one, no decision has a send time.
    assert body["deferred"] == []
    assert not any("send_at" in d for d in body["recent_decisions"])
    missing = await client.get("/retention/customers/nobody")
    assert missing.status == 404
    assert await missing.json() == {"error": "unknown customer", "customer_id": "nobody"}

    # The summary counts what the agents did, over the memory table's rows.
    resp = await client.get("/retention/summary")
    assert resp.status == 200 and "Age" in resp.headers
    summary = await resp.json()
    assert summary["schema"] == "summary/1"
    assert summary["scope"]["partitions"] == [0, 1] and summary["scope"]["all_partitions"]
    assert summary["clock"]["mode"] == "stream"
    assert summary["clock"]["watermark"] is not None
    counts = summary["counts"]
    assert counts["customers"] == len(CUSTOMERS) and counts["events"] == len(CUSTOMERS)
    assert counts["decisions"] == len(decisions) and counts["delivered"] == len(nudges)
    assert counts["dead_letters"] == 1
    assert sum(t["count"] for t in summary["triggers_over_time"]) == len(nudges)
    part = await (await client.get("/retention/summary/part")).json()
    assert part["schema"] == "summary-part/1" and part["partitions"] == [0, 1]
    assert (await client.get("/retention/summary?scope=everything")).status == 400

    # /metrics says the same.
    resp = await client.get("/metrics")
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    values = metrics((await resp.read()).decode())
    assert values[("retention_events_accepted_total", ())] == len(CUSTOMERS)
    assert values[("retention_events_processed_total", (("result", "applied"),))] == 3
    assert values[("retention_dead_letters_total", (("code", "invalid_json"),))] == 1
    fired = sum(v for (name, _), v in values.items() if name == "retention_decisions_total")
    assert fired == len(decisions)
    assert values[("retention_partitions_owned", ())] == PARTITIONS
    assert values[("retention_read_model_lag", ())] == len(CUSTOMERS)  # no Redis: all waiting
    assert values[("retention_tick_duration_seconds_count", ())] >= 2
    assert values[("retention_ready", ())] == 1


def zoned(message: bytes, zone: object) -> bytes:
    return orjson.dumps(orjson.loads(message) | {"timezone": zone})


async def test_a_customers_zone_reaches_the_lookup_and_an_ignored_one_the_metrics(
    worker: Worker, client: TestClient[Any, Any]
) -> None:
    # docs/send-windows.md "The customer's zone": the newest valid zone by event time
    # (an older one arriving later does not replace it), an unknown one ignored,
    # counted and shown, never a dead letter.
    topics = worker.app.config.topics
    worker.recovered()
    await worker.feed(
        [
            (topics.purchases, 0, zoned(purchase("cus_a", 2, 3), "Asia/Tehran")),
            (topics.purchases, 0, zoned(purchase("cus_a", 1, 1), "Europe/Berlin")),
            (topics.purchases, 0, zoned(purchase("cus_a", 3, 2), "Mars/Olympus_Mons")),
            (topics.purchases, 0, zoned(purchase("cus_b", 1, 1), 3600)),
        ]
    )
    # Dated after the stream clock: waiting, zones included, not in force yet.
    body = await (await client.get("/retention/customers/cus_a")).json()
    assert body["state"]["pending_events"] == 3 and body["timezone"]["name"] is None
    sources = [(t, p) for t in topics.inputs() for p in range(PARTITIONS)]
    await worker.feed([(t, p, advance(5)) for t, p in sources])
    body = await (await client.get("/retention/customers/cus_a")).json()
    assert body["state"]["orders"] == 3
    assert body["timezone"] == {
        "name": "Asia/Tehran",
        "since": day(3),
        "ignored": "Mars/Olympus_Mons",
        "ignored_at": day(2),
    }
    assert not {"tz", "tzx"} & set(body["state"])
    [(_, letter, _)] = worker.broker.on(topics.dlq)
    assert orjson.loads(letter)["error_code"] == "invalid_field" and b"timezone" in letter
    values = metrics((await (await client.get("/metrics")).read()).decode())
    assert values[("retention_invalid_timezones_total", ())] == 1
    assert values[("retention_tzdata_info", (("version", TZDATA_VERSION),))] == 1


@pytest.mark.parametrize("as_of", [10**20, -(10**20), 2**63, "1e20", "soon"])
async def test_a_summary_part_for_an_impossible_instant_is_a_400_with_one_line(
    as_of: object, worker: Worker, client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    worker.recovered()
    resp = await client.get(f"/retention/summary/part?as_of={as_of}")
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error.startswith("as_of must be") and "\n" not in error
    assert "Traceback" not in caplog.text


async def test_a_summary_part_at_the_edges_of_the_instants_it_takes(
    worker: Worker, client: TestClient[Any, Any]
) -> None:
    worker.recovered()
    await worker.feed([(worker.app.config.topics.purchases, 0, purchase("cus_a", 1, 1))])
    for as_of in (AS_OF_MIN, AS_OF_MAX):
        resp = await client.get(f"/retention/summary/part?as_of={as_of}")
        assert resp.status == 200
        assert (await resp.json())["inputs"]["as_of"] == as_of


async def test_the_summary_counts_the_customers_agents_dead_letters_as_metrics_do(
    worker: Worker, client: TestClient[Any, Any]
) -> None:
    topics = worker.app.config.topics
    worker.recovered()
    await worker.feed([(topics.purchases, 0, b"{not json")])  # ingest's dead letter
    # One the customers agent writes: an item of the internal topic it cannot read.
    bad = worker._event(topics.customer_events, 0, b'{"type": "ev", "ev": {}}')
    await worker.app.customer_agent.run(Stream([[bad]]))
    assert len(worker.broker.on(topics.dlq)) == 2
    values = metrics((await (await client.get("/metrics")).read()).decode())
    by_code = {
        dict(labels)["code"]: v
        for (name, labels), v in values.items()
        if name == "retention_dead_letters_total"
    }
    assert by_code == {"invalid_json": 1, "invalid_internal_message": 1}
    summary = await (await client.get("/retention/summary")).json()
    assert summary["counts"]["dead_letters"] == 2
    assert summary["dead_letters"] == by_code
    part = await (await client.get("/retention/summary/part")).json()
    assert part["dead_letters"] == by_code


async def test_faust_stats_page_shows_counters_and_no_file_paths(worker: Worker) -> None:
    # docs/operations.md: Faust's "/" is counters by topic, task and partition. A
    # pending task's repr names the file and line it waits at.
    app = worker.app.faust_app
    monitor = app.monitor
    app.sensors.add(monitor)  # what the worker does when it starts
    web: Any = app.web
    web.blueprints.apply(web)  # Faust's own pages, as the web server mounts them
    blocker: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def agent_body() -> None:
        await blocker

    task = asyncio.ensure_future(agent_body())
    await asyncio.sleep(0)
    assert __file__ in repr(task)
    monitor.events_by_task[task] += 95
    try:
        async with TestClient(TestServer(web.web_app)) as client:
            resp = await client.get("/")
            assert resp.status == 200
            text = await resp.text()
    finally:
        task.cancel()
    assert ".py" not in text and "/" not in text, text[:500]
    [stats] = orjson.loads(text).values()
    assert list(stats["events_by_task"].values()) == [95]
    assert "agent_body" in next(iter(stats["events_by_task"]))


async def test_ready_warns_of_a_stream_clock_held_back_by_a_silent_partition(
    worker: Worker, client: TestClient[Any, Any]
) -> None:
    topics = worker.app.config.topics
    worker.recovered()
    quiet = (topics.consents, 1)
    sources = [(t, p) for t in topics.inputs() for p in range(PARTITIONS)]
    await worker.feed([(t, p, advance(5 if (t, p) == quiet else 30)) for t, p in sources])
    ready = await (await client.get("/health/ready")).json()
    assert ready["ready"] is True and ready["warnings"] == []
    for n in range(2, 9):  # events keep coming for 7 minutes; one partition stays silent
        worker.clock.advance(60)
        await worker.feed([(topics.purchases, 0, purchase("cus_a", n, 6))])
    resp = await client.get("/health/ready")
    assert resp.status == 200  # ready: the warning does not take the worker out
    # Only cus_a's partition takes events: only its clock is stuck while they arrive.
    [warning] = (await resp.json())["warnings"]
    p = worker.app.partition_of("cus_a")
    assert f"stream clock of partition {p} stuck at 2026-03-05T10:00:00Z for 420 s" in warning
    assert f"held back by {topics.consents}:1 (" in warning


async def test_the_stuck_clock_warning_waits_for_the_configured_idle_timeout() -> None:
    worker = Worker(RETENTION_CLOCK_IDLE_TIMEOUT="PT30M")
    async with TestClient(TestServer(worker.app.faust_app.web.web_app)) as client:  # type: ignore[attr-defined]
        topics = worker.app.config.topics
        worker.recovered()
        sources = [(t, p) for t in topics.inputs() for p in range(PARTITIONS)]
        await worker.feed([(t, p, advance(5 if t == topics.consents else 30)) for t, p in sources])
        for n in range(2, 9):  # 7 minutes: stuck by the default of 5, not by 30
            worker.clock.advance(60)
            await worker.feed([(topics.purchases, 0, purchase("cus_a", n, 6))])
        assert (await (await client.get("/health/ready")).json())["warnings"] == []
        worker.clock.advance(25 * 60)
        await worker.feed([(topics.purchases, 0, purchase("cus_a", 10, 6))])
        [warning] = (await (await client.get("/health/ready")).json())["warnings"]
        assert "for 1920 s with events waiting" in warning


async def test_a_clock_that_never_starts_shows_from_the_first_event_and_the_heartbeat_starts_it(
    worker: Worker, client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # docs/time.md "Time": a producer keyed by customer_id, no control/advance; only
    # purchases partition 0 ever sends, so no customer partition's clock starts.
    topics = worker.app.config.topics
    worker.recovered()
    await worker.feed([(topics.purchases, 0, purchase(c, 1, 2)) for c in CUSTOMERS])
    p = worker.app.partition_of("cus_a")
    label = (("partition", str(p)),)
    values = metrics((await (await client.get("/metrics")).read()).decode())
    assert values[("retention_stream_clock_stalled_seconds", label)] == 0
    assert values[("retention_stream_clock_stuck_seconds", label)] == 0
    assert ("retention_stream_clock_seconds", label) not in values  # it has no value
    ready = await (await client.get("/health/ready")).json()
    assert {"partition": p, "started": False, "stuck_seconds": 0} in ready["stream_clocks"]
    worker.clock.advance(360)  # six quiet minutes: nothing more arrives
    values = metrics((await (await client.get("/metrics")).read()).decode())
    assert values[("retention_stream_clock_stuck_seconds", label)] == 360
    resp = await client.get("/health/ready")
    assert resp.status == 200
    warnings = (await resp.json())["warnings"]
    assert f"stream clock of partition {p} has not started 360 s after its first event" in "".join(
        warnings
    )
    with caplog.at_level("WARNING", logger="streams.worker.app"):
        worker.app.log_stuck_clocks()
        worker.app.log_stuck_clocks()  # logged once, not at every look
    logged = [r.getMessage() for r in caplog.records if "has not started" in r.getMessage()]
    assert len(logged) == len(warnings)

    # The heartbeat: every input partition advanced to now - the allowed lateness.
    marker = orjson.loads(worker.app.heartbeat_marker())
    assert marker == {"schema": "control/advance", "until": "2026-05-31T12:06:00Z"}
    sources = [(t, q) for t in topics.inputs() for q in range(PARTITIONS)]
    await worker.feed([(t, q, worker.app.heartbeat_marker()) for t, q in sources])
    values = metrics((await (await client.get("/metrics")).read()).decode())
    assert values[("retention_stream_clock_stuck_seconds", label)] == 0
    assert values[("retention_stream_clock_seconds", label)] == marker_seconds(marker)
    ready = await (await client.get("/health/ready")).json()
    assert ready["warnings"] == []
    assert {"partition": p, "started": True, "stuck_seconds": 0} in ready["stream_clocks"]
    # The purchases were dated day 2: their first steps are due and have fired.
    assert worker.broker.on(topics.decisions)


def marker_seconds(marker: dict[str, str]) -> float:
    return to_micros(datetime.fromisoformat(marker["until"])) / 1e6


async def test_the_heartbeat_sends_its_marker_to_every_input_partition() -> None:
    worker = Worker(RETENTION_STREAM_HEARTBEAT="PT30S")
    assert worker.app.config.stream_heartbeat == 30_000_000
    worker.app.faust_app.producer.send = worker.broker.send
    await worker.app.send_heartbeat()
    topics = worker.app.config.topics
    sent = {(t, p): v for t, _, v, p in worker.broker.sent}
    assert set(sent) == {(t, p) for t in topics.inputs() for p in range(PARTITIONS)}
    assert set(sent.values()) == {worker.app.heartbeat_marker()}


async def test_a_lookup_is_answered_by_the_owner_and_never_bounced_back() -> None:
    config = load_config(
        {"RETENTION_STORE": "memory://", "RETENTION_PARTITIONS": str(PARTITIONS)},
        use_stack_file=False,
    )
    app = RetentionApp(config)
    tables: Any = app.faust_app.tables
    tables.recovery.completed.set()
    web: Any = app.faust_app.web
    async with TestClient(TestServer(web.web_app)) as client:
        other = str(client.make_url("")).rstrip("/")  # "another worker": this very server
        me = app.canonical_url
        assert other != me
        ids = [f"cus_{i}" for i in range(20)]
        theirs = next(c for c in ids if app.partition_of(c) == 0)
        mine = next(c for c in ids if app.partition_of(c) == 1)
        # Faust's changelog distribution, as a rebalance leaves it.
        changelog = app.table.changelog_topic.get_topic_name()
        assignor: Any = app.faust_app.assignor  # PartitionAssignorT does not declare it
        assignor.changelog_distribution = {
            other: {changelog: [0]},
            me: {changelog: [1]},
        }
        assert app.owners() == {other: [0], me: [1]}
        assert (app.owner_of(theirs), app.owner_of(mine)) == (other, me)

        # Not ours: forwarded to the owner, marked as routed; the owner (which here
        # still sees another owner) refuses to route it again.
        resp = await client.get(f"/retention/customers/{theirs}")
        assert resp.status == 503
        assert await resp.json() == {
            "error": "ownership changed while routing; retry",
            "owner": other,
        }
        # Ours: answered from the local table.
        resp = await client.get(f"/retention/customers/{mine}")
        assert resp.status == 404 and (await resp.json())["customer_id"] == mine
        # No assignment at all: the owner is unknown.
        assignor.changelog_distribution = {}
        resp = await client.get(f"/retention/customers/{mine}")
        assert resp.status == 503
        assert (await resp.json())["error"] == "partition owner unknown (rebalancing)"


# --- zero times: Go's time.Time{}, .NET's DateTime.MinValue (docs/time.md "Time") ------------

ZERO_TIME = "0001-01-01T00:00:00Z"


def zero_time_purchase(cid: str) -> bytes:
    return orjson.dumps(
        {
            "schema": "purchase/1",
            "event_id": f"evt-{cid}-0",
            "customer_id": cid,
            "occurred_at": ZERO_TIME,
            "order_id": f"ORD-{cid}-0",
            "amount": 20.0,
            "currency": "EUR",
        }
    )


async def test_zero_times_are_counted_dead_letters_and_the_summary_still_answers(
    worker: Worker, client: TestClient[Any, Any]
) -> None:
    topics = worker.app.config.topics
    worker.recovered()
    sources = [(t, p) for t in topics.inputs() for p in range(PARTITIONS)]
    await worker.feed([(t, p, zero_time_purchase(f"cus_{t}_{p}")) for t, p in sources])
    dlq = [orjson.loads(v) for _, v, _ in worker.broker.on(topics.dlq)]
    assert [d["error_code"] for d in dlq] == ["early_timestamp"] * len(sources)
    assert worker.broker.on(topics.decisions) == []
    values = metrics((await (await client.get("/metrics")).read()).decode())
    assert values[("retention_dead_letters_total", (("code", "early_timestamp"),))] == len(sources)
    resp = await client.get("/retention/summary")
    assert resp.status == 200
    summary = await resp.json()
    assert summary["dead_letters"] == {"early_timestamp": len(sources)}
    assert summary["clock"]["watermark"] is None and summary["counts"]["customers"] == 0


async def test_a_stream_clock_before_year_1_does_not_take_the_summary_down() -> None:
    # A deployment that loads very old history may lower the bound to year 1;
    # every source at 0001-01-01 puts the clock one allowed lateness before it.
    # The summary answered 503 OverflowError on every call while ready said 200.
    worker = Worker(RETENTION_MIN_EVENT_TIME=ZERO_TIME)
    async with TestClient(TestServer(worker.app.faust_app.web.web_app)) as client:  # type: ignore[attr-defined]
        topics = worker.app.config.topics
        worker.recovered()
        sources = [(t, p) for t in topics.inputs() for p in range(PARTITIONS)]
        # From every source, a customer of each customer partition: each
        # partition's clock hears from every source.
        owners: dict[int, list[str]] = {}
        for cid in (f"cus_{n}" for n in range(100)):
            owners.setdefault(worker.app.partition_of(cid), []).append(cid)
        inputs = [
            (t, p, zero_time_purchase(owners[q][i]))
            for i, (t, p) in enumerate(sources)
            for q in range(PARTITIONS)
        ]
        await worker.feed(inputs)
        assert worker.broker.on(topics.dlq) == []
        marks = worker.app.snapshot().watermarks.values()
        assert all(m is not None and m < TIME_MIN for m in marks)  # before year 1
        assert (await client.get("/health/ready")).status == 200
        for scope in ("local", "cluster"):
            resp = await client.get(f"/retention/summary?scope={scope}")
            assert resp.status == 200, await resp.text()
            summary = await resp.json()
            assert summary["clock"]["watermark"] == ZERO_TIME  # the datetime range's end
            assert summary["report"]["as_of"] == ZERO_TIME
            assert summary["counts"]["customers"] == len(inputs)
        lookup = await client.get(f"/retention/customers/{owners[0][0]}")
        assert lookup.status == 200


async def test_each_route_is_a_handler_that_answers_for_a_worker_without_faust() -> None:
    """The views are a route table of plain handlers: one answers for any worker
    (here a snapshot and nothing else), with no Faust app or web server."""
    snap = Snapshot(
        at=NOW,
        worker="w:6066",
        url="http://w:6066",
        clock_mode="stream",
        ready=True,
        owned=(1,),
        clocks=(PartitionClock(1, NOW, NOW, 0, since=NOW, stuck=3 * 10**6),),
    )
    worker: Any = SimpleNamespace(snapshot=lambda: snap, web_address="w:6066")
    site = views.Site.of(worker)
    handlers = {route.path: route.handler for route in views.ROUTES}
    ready = await handlers["/health/ready"](site, make_mocked_request("GET", "/health/ready"))
    assert (ready.status, ready.content_type) == (200, "application/json")
    assert orjson.loads(ready.body)["stream_clocks"] == [
        {"partition": 1, "started": True, "stuck_seconds": 3}
    ]
    request = make_mocked_request("GET", "/retention/static/x")
    outside = await handlers["/retention/static/{name}"](site, request, name="../README.md")
    assert outside.status == 404


# --- GET /retention/rules (docs/operations.md "Endpoints") ------------------------------

RULES_FILE = """
format = 1
[guardrails]
min_gap = "PT12H"
[lifecycle]
priority = 15
[[rule]]
name = "vip_rhythm"
priority = 5
channel = "sms"
anchor = { kind = "last_order", min_orders = 3 }
steps = [{ cadence = 1.5, floor = "P10D" }]
arbitration = true
[rule.audience]
spend = { currency = "EUR", min = "500" }
[[rule]]
name = "receipt_followup"
priority = 40
transactional = true
anchor = "last_order"
steps = ["PT36H"]
[[rule]]
name = "welcome_back"
priority = 50
enabled = false
anchor = "last_session"
cancel_on = ["purchase"]
steps = ["P3D"]
"""


async def rules_of(
    config: Any, partitions: tuple[PartitionRules, ...] = ()
) -> tuple[int, dict[str, Any]]:
    snapshot = Snapshot(at=0, worker="w", url="u", clock_mode="stream", rules=partitions)
    worker = SimpleNamespace(config=config, snapshot=lambda: snapshot)
    site = views.Site.of(worker)  # type: ignore[arg-type]
    [route] = [r for r in views.ROUTES if r.path == "/retention/rules"]
    reply = await route.handler(site, make_mocked_request("GET", route.path))
    return reply.status, orjson.loads(reply.body)


async def test_the_rules_endpoint_shows_the_default_set_as_the_file_writes_it(
    client: TestClient[Any, Any],
) -> None:
    resp = await client.get("/retention/rules")
    assert resp.status == 200
    body = await resp.json()
    default = default_rules()
    assert body["source"] == "default" and body["format"] == 1
    assert len(body["version"]) == 12
    assert [r["name"] for r in body["rules"]] == ["second_purchase", "inactivity", "overdue"]
    first, inactivity, overdue = body["rules"]
    assert first == {
        "name": "second_purchase",
        "enabled": True,
        "priority": 10,
        "description": "Ordered once and not come back.",
        "anchor": {"kind": "first_order"},
        "steps": ["P7D", "P14D", "P30D"],
        "audience": {},
        "cancel_on": ["purchase"],
        "transactional": False,
        "arbitration": False,
        "channel": None,
        "reason": "no second order {span} after the first on {anchor_date}",
        "rule_version": default.rule("second_purchase").version,  # type: ignore[union-attr]
    }
    assert inactivity["anchor"] == {"kind": "last_activity", "min_orders": 1}
    assert overdue["steps"] == [{"cadence": 2.0, "floor": "P7D"}]
    assert body["guardrails"] == {
        "holdout_percent": 0.0,  # the test worker's RETENTION_HOLDOUT_PERCENT
        "holdout_salt": "retention",
        "min_gap": "P1D",  # the shortest form, as outputs write durations
        "frequency_cap": 4,
        "frequency_window": "P30D",
        "attribution_window": "P5D",
        "arbitration": False,
    }
    assert body["lifecycle"] == {"at_risk_after": "P14D", "lapsed_after": "P60D", "priority": 15}


async def test_the_rules_endpoint_shows_a_file_set_and_each_change_moves_the_version() -> None:
    base = load_config({"RETENTION_STORE": "memory://"}, use_stack_file=False)
    config = replace(base, core=CoreSettings(rules=load_rules(RULES_FILE)))
    status, body = await rules_of(config)
    assert status == 200
    vip, receipt, welcome = body["rules"]
    assert vip["steps"] == [{"cadence": 1.5, "floor": "P10D"}]
    assert vip["audience"] == {"spend": {"currency": "EUR", "min": "500", "max": None}}
    assert (vip["channel"], vip["arbitration"], vip["priority"]) == ("sms", True, 5)
    assert vip["reason"] == "{rule} step {step}: {span} after {anchor_date}"  # no reason given
    assert receipt["transactional"] is True and receipt["steps"] == ["P1DT12H"]
    assert welcome["enabled"] is False and welcome["anchor"] == {
        "kind": "last_session",
        "min_orders": 0,
    }
    assert body["guardrails"]["min_gap"] == "PT12H"
    # A disabled rule switched on, or a guardrail moved, is another set.
    _, default_body = await rules_of(base)
    on = RULES_FILE.replace("enabled = false", "enabled = true")
    _, enabled_body = await rules_of(replace(base, core=CoreSettings(rules=load_rules(on))))
    gap = RULES_FILE.replace('"PT12H"', '"PT13H"')
    _, gap_body = await rules_of(replace(base, core=CoreSettings(rules=load_rules(gap))))
    versions = {b["version"] for b in (body, default_body, enabled_body, gap_body)}
    assert len(versions) == 4
    # Run from a rules file (RETENTION_RULES_FILE): its path is the source.
    from_file = SimpleNamespace(core=config.core, rules_file="/srv/shop/rules.toml")
    _, shown = await rules_of(from_file)
    assert shown["source"] == "/srv/shop/rules.toml" and body["source"] == "default"
    assert shown["version"] == body["version"]
    # The same set read again is the same version.
    _, again = await rules_of(replace(base, core=CoreSettings(rules=load_rules(RULES_FILE))))
    assert again == body


# --- rules changes (docs/rules.md "Changing rules") ---------------------------------------

SOONER = default_text().replace('steps = ["P7D", "P14D", "P30D"]', 'steps = ["P5D", "P12D"]')
LATER = default_text().replace('steps = ["P7D", "P14D", "P30D"]', 'steps = ["P6D", "P14D"]')


def rules_marker(text: str, on: int) -> bytes:
    return orjson.dumps({"schema": "control/rules", "effective_at": day(on), "rules": text})


async def test_a_published_change_is_listed_scheduled_then_in_force_and_a_late_one_counted(
    worker: Worker, client: TestClient[Any, Any]
) -> None:
    topics = worker.app.config.topics
    worker.recovered()
    sources = [(t, p) for t in topics.inputs() for p in range(PARTITIONS)]
    await worker.feed([(topics.purchases, 0, purchase("cus_a", 1, 1))])
    await worker.feed([(t, p, advance(2)) for t, p in sources])
    # `retention rules publish` sends the marker to every input partition.
    await worker.feed([(t, p, rules_marker(SOONER, 5)) for t, p in sources])
    seed_id = set_id(worker.app.config.core.rule_set)
    sooner_id = set_id(load_rules(SOONER))

    body = await (await client.get("/retention/rules")).json()
    assert [
        (v["id"], v["in_force"], v["scheduled"], v["partitions"]) for v in body["versions"]
    ] == [
        (seed_id, True, False, [0, 1]),
        (sooner_id, False, True, [0, 1]),
    ]
    scheduled = body["versions"][1]
    assert scheduled["effective_at"] == day(5) and scheduled["applied_at"] is None
    assert scheduled["rules"]["second_purchase"] == {
        "version": load_rules(SOONER).rule("second_purchase").version,  # type: ignore[union-attr]
        "on_change": "restart",
    }
    # Before its time, the lookup's next step is judged by the seed's rule, in force.
    lookup = await (await client.get("/retention/customers/cus_a")).json()
    assert lookup["next_steps"][0]["rule"] == "second_purchase"
    seed_rule = worker.app.config.core.rule_set.rule("second_purchase")
    assert seed_rule is not None
    assert lookup["next_steps"][0]["rule_version"] == seed_rule.version
    text = (await (await client.get("/metrics")).read()).decode()
    info = {k[1]: v for k, v in metrics(text).items() if k[0] == "retention_rules_version_info"}
    assert info == {
        (("effective_at", ""), ("version", seed_id)): 1,
        (("effective_at", day(5)), ("version", sooner_id)): 0,
    }

    await worker.feed([(t, p, advance(10)) for t, p in sources])
    # Step 1 under the new version, 5 days after the first order (day 1).
    fired = [orjson.loads(v) for _, v, _ in worker.broker.on(topics.decisions)]
    assert [(d["rule"], d["step"], d["due_at"]) for d in fired] == [("second_purchase", 1, day(6))]
    # The lookup and the read model judge the customer by its partition's versions:
    # step 2 under the new version is 12 days after the first order, not 14.
    lookup = await (await client.get("/retention/customers/cus_a")).json()
    assert [(s["rule"], s["step"], s["due_at"]) for s in lookup["next_steps"]][:1] == [
        ("second_purchase", 2, day(13))
    ]
    assert (
        lookup["next_steps"][0]["rule_version"] == scheduled["rules"]["second_purchase"]["version"]
    )
    # A marker written by hand after the clocks passed its time: late everywhere.
    await worker.feed([(topics.sessions, 1, rules_marker(LATER, 8))])
    later_id = set_id(load_rules(LATER))
    body = await (await client.get("/retention/rules")).json()
    now = [v for v in body["versions"] if v["in_force"] or v["scheduled"]]
    # Applied at each partition's clock + 1 µs: in force once the clock moves on.
    assert [(v["id"], v["in_force"], v["late"]) for v in now] == [
        (sooner_id, True, False),
        (later_id, False, True),
    ]
    await worker.feed([(t, p, advance(11)) for t, p in sources])
    body = await (await client.get("/retention/rules")).json()
    now = [v for v in body["versions"] if v["in_force"] or v["scheduled"]]
    assert [(v["id"], v["late"], v["partitions"]) for v in now] == [(later_id, True, [0, 1])]
    assert now[0]["effective_at"] == day(8)
    assert now[0]["applied_at"] == day(10).replace("Z", ".000001Z")
    text = (await (await client.get("/metrics")).read()).decode()
    assert metrics(text)[("retention_rules_late_total", ())] == 2  # once per partition
    assert metrics(text)[("retention_rules_versions", ())] == 3


async def test_the_rules_endpoint_lists_partitions_that_switched_apart() -> None:
    seed = RulesVersion("aaaaaaaaaaaa", None, None, False, False, (("r", "v1", "restart"),))
    on_time = RulesVersion("bbbbbbbbbbbb", 5, 5, True, False, (("r", "v2", "pin"),))
    late = RulesVersion("bbbbbbbbbbbb", 5, 9, True, False, (("r", "v2", "pin"),))
    parts = (PartitionRules(0, (seed, on_time)), PartitionRules(1, (seed, late)))
    _, body = await rules_of(load_config({}, use_stack_file=False), parts)
    assert [(v["id"], v["late"], v["partitions"]) for v in body["versions"]] == [
        ("aaaaaaaaaaaa", False, [0, 1]),
        ("bbbbbbbbbbbb", False, [0]),
        ("bbbbbbbbbbbb", True, [1]),
    ]
    assert body["versions"][1]["rules"] == {"r": {"version": "v2", "on_change": "pin"}}


class _WaitingState(CustomerState):
    """A stored state with a firing kept until its send time, as the engine keeps it
    (CustomerState.deferred, row key "df")."""


def test_the_lookup_shows_firings_waiting_for_their_send_window() -> None:
    # docs/send-windows.md "Outputs": not a decision yet, so under its own key, with
    # the send time in UTC, the zone and the customer's local time.
    state = _WaitingState(customer_id="cus_a", partition=0)
    anchor = to_micros(datetime(2026, 3, 21, 22, 30, tzinfo=UTC))
    waiting = SimpleNamespace(
        rule="second_purchase",
        step=1,
        anchor_at=anchor,
        due_at=anchor + 7 * 86_400_000_000,
        send_at=to_micros(datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),
        threshold=7 * 86_400_000_000,
        rule_version="0123456789ab",
        zone="Europe/Berlin",
        key=None,  # an unkeyed rule's (a cart ladder's names its cart)
    )
    state.deferred = [waiting]  # type: ignore[attr-defined]
    assert views.deferred_view(state) == [
        {
            "trigger_id": trigger_id("cus_a", "second_purchase", 1, anchor),
            "rule": "second_purchase",
            "step": 1,
            "due_at": "2026-03-28T22:30:00Z",
            "send_at": "2026-03-29T07:00:00Z",
            "send_zone": "Europe/Berlin",
            "send_local": "2026-03-29T09:00:00+02:00",
            "rule_version": "0123456789ab",
        }
    ]
    assert "df" in views.HIDDEN_STATE_FIELDS  # shown here, not as the raw row list
    # Once decided, the remembered firing shows when it was sent.
    sent = SimpleNamespace(
        due_at=waiting.due_at,
        rule="second_purchase",
        step=1,
        anchor_at=anchor,
        outcome="delivered",
        converted_at=None,
        sent_at=waiting.send_at,
        key=None,
    )
    state.recent_firings = [sent]  # type: ignore[list-item]
    (decision,) = views.recent_decisions(state)
    assert (decision["due_at"], decision["send_at"]) == (
        "2026-03-28T22:30:00Z",
        "2026-03-29T07:00:00Z",
    )


def test_the_rules_view_shows_a_rules_send_window_and_only_then() -> None:
    from tests.fixtures.windows import windowed

    shown = {r.name: views.rule_shown(r) for r in windowed("second_purchase")}
    assert shown["second_purchase"]["send_window"] == {
        "windows": [
            {"days": ["mon", "tue", "wed", "thu", "fri"], "open": "09:00", "close": "20:00"}
        ],
        "policy": "defer",
        "max_delay": None,
        "zone": None,
        "default_zone": "UTC",
    }
    assert "send_window" not in shown["inactivity"]


# --- scores (docs/prediction.md "Scores") ---------------------------------------------------

MODEL_TABLE = """
[model]
version = "3f2a9c1b7d4e"
time_unit = "week"
fitted_at = "1997-09-30T00:00:00Z"
mbgnbd = { r = 0.5248, alpha = 6.183, a = 0.8914, b = 1.614 }
bgnbd = { r = 0.2426, alpha = 4.414, a = 0.7929, b = 2.426 }

[model.gamma_gamma]
EUR = { p = 6.25, q = 3.744, v = 15.44 }
"""


async def test_the_lookup_has_no_scores_without_a_model(
    worker: Worker, client: TestClient[Any, Any]
) -> None:
    topics = worker.app.config.topics
    worker.recovered()
    await worker.feed([(topics.purchases, 0, purchase("cus_a", 1, 1))])
    sources = [(t, p) for t in topics.inputs() for p in range(PARTITIONS)]
    await worker.feed([(t, p, advance(5)) for t, p in sources])
    body = await (await client.get("/retention/customers/cus_a")).json()
    assert body["state"]["orders"] == 1 and body["scores"] is None


async def test_the_lookup_scores_a_customer_at_its_partitions_clock(tmp_path: Path) -> None:
    from agents.core.rules.check import TOP_KEYS

    if "model" not in TOP_KEYS:
        pytest.skip("the rules file's [model] table is parsed by the churn_risk engine work")
    rules = tmp_path / "rules.toml"
    rules.write_text(default_text() + MODEL_TABLE)
    worker = Worker(RETENTION_RULES_FILE=str(rules))
    web: Any = worker.app.faust_app.web
    async with TestClient(TestServer(web.web_app)) as client:
        topics = worker.app.config.topics
        worker.recovered()
        # Orders on days 1, 1 (one order day) and 15: x = 1 repeat order day, 60 EUR in 3.
        await worker.feed(
            [
                (topics.purchases, 0, purchase("cus_a", 1, 1)),
                (topics.purchases, 0, purchase("cus_a", 2, 1)),
                (topics.purchases, 0, purchase("cus_a", 3, 15)),
            ]
        )
        sources = [(t, p) for t in topics.inputs() for p in range(PARTITIONS)]
        await worker.feed([(t, p, advance(29)) for t, p in sources])
        first = await (await client.get("/retention/customers/cus_a")).json()
        await worker.feed([(t, p, advance(80)) for t, p in sources])
        later = await (await client.get("/retention/customers/cus_a")).json()
    s = first["scores"]
    assert s["model_version"] == "3f2a9c1b7d4e" and s["kind"] == "mbgnbd"
    as_of = to_micros(datetime.fromisoformat(s["as_of"]))
    assert as_of <= to_micros(datetime.fromisoformat(day(29)))  # the stream clock, not NOW
    mbg = NbdParams("mbgnbd", r=0.5248, alpha=6.183, a=0.8914, b=1.614)
    week = 7 * 86_400_000_000
    first_at = to_micros(datetime.fromisoformat(day(1)))
    T = (as_of - first_at) / week
    assert s["p_alive"] == pytest.approx(p_alive(mbg, 1, 2.0, T), abs=1e-6)
    assert set(s["p_alive_by_kind"]) == {"mbgnbd", "bgnbd"}
    assert s["expected_orders_90d"] > s["expected_orders_30d"] > 0
    gg = GammaGammaParams(p=6.25, q=3.744, v=15.44)
    assert s["predicted_value"] == {"EUR": round(expected_order_value(gg, 1, 20.0), 2)}
    # No order since: the score decays with the partition's clock.
    assert later["scores"]["p_alive"] < s["p_alive"], (later["scores"], s)
    assert "od" not in first["state"]
