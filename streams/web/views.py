"""The worker's own HTTP endpoints, served by Faust web next to its stats.

* ``GET /retention/customers/{id}``: one customer, answered by the worker that owns
  the customer's partition (other workers forward the request there);
* ``GET /retention/summary[?scope=local|cluster]``: counts, decisions, lag and
  report of this worker (default) or of every worker (``streams.web.summary``);
* ``GET /retention/summary/part[?as_of=T]``: this worker's share of a cluster
  summary (counters, clocks and, with ``as_of``, report inputs);
* ``GET /health/live``, ``GET /health/ready``: liveness, and readiness after table
  recovery;
* ``GET /metrics``: Prometheus text format;
* ``GET /retention/`` and ``GET /retention/static/{name}``: the dashboard files.

They read the worker through :class:`streams.worker.observe.ObservedWorker` and its
snapshot, so they are tested in-process without a broker
(tests/unit/streams/web/test_views.py).
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from faust import web

from agents.core.clock import clock_mode
from agents.core.state import CustomerState
from streams.asyncapi import published as asyncapi_document
from streams.web.summary import SCOPES, Summaries, parse_as_of
from streams.worker.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from streams.worker.observe import ObservedWorker
from streams.worker.readmodel import pending_nudges

STATIC_DIR = Path(__file__).resolve().parent / "static"
# A forwarded lookup carries this header; a worker that receives it answers
# itself or fails, so two workers with different views of the assignment (during
# a rebalance) can never bounce a request between them.
ROUTED_HEADER = "X-Retention-Routed-By"
FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=10)
# Dedup bookkeeping: bulky and of no use to a person looking at a customer.
# Dedup memory and raw waiting events (event ids, order ids, amounts, channels)
# are not for whoever reaches the port; a sender needs the facts, the due steps
# and the decisions (docs/operations.md "Operations").
HIDDEN_STATE_FIELDS = (
    "recent_event_ids",
    "recent_order_ids",
    "event_ids",
    "order_ids",
    "pending",
    "spill",
)
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
}


def json_bytes(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)


def customer_view(worker: ObservedWorker, raw: bytes) -> dict[str, Any]:
    """The lookup's JSON for one stored state."""
    state = CustomerState.from_dict(orjson.loads(raw))
    shown = {k: v for k, v in state.to_dict().items() if k not in HIDDEN_STATE_FIELDS}
    shown["pending_events"] = state.pending_count()  # in the row and its overflow rows
    return {
        "customer_id": state.customer_id,
        "state": shown,
        "pending": pending_nudges(worker.engine, state),
        "recent_decisions": state.recent_decisions(),
        "holdout": worker.engine.in_holdout(state.customer_id),
        "served_by": worker.web_address,
    }


def static_file(name: str) -> Path | None:
    """The file of the static folder called ``name``, or None; never outside it."""
    if not SAFE_NAME.match(name) or ".." in name:
        return None
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR or not path.is_file():
        return None
    return path


def content_type(path: Path) -> str:
    known = CONTENT_TYPES.get(path.suffix.lower())
    if known:
        return known
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def register(app: Any, worker: ObservedWorker) -> None:
    """Add the views of ``worker`` to the Faust app ``app`` (call before it starts)."""
    summaries = Summaries(worker)

    class Base(web.View):  # type: ignore[misc]
        def send_json(self, obj: Any, status: int = 200) -> web.Response:
            return self.bytes(json_bytes(obj), content_type="application/json", status=status)

        def send_bytes(
            self, body: bytes, ctype: str, headers: dict[str, str] | None = None
        ) -> web.Response:
            # aiohttp refuses a charset inside ``content_type=`` for a bytes body,
            # but keeps a full Content-Type header as given.
            return self.bytes(body, headers={"Content-Type": ctype, **(headers or {})})

    @app.page("/retention/customers/{customer_id}")  # type: ignore[untyped-decorator]
    class Customer(Base):
        async def get(self, request: web.Request, customer_id: str) -> web.Response:
            snap = worker.snapshot()
            if not snap.ready:
                return self.send_json({"error": "not ready: tables are recovering"}, 503)
            owner = worker.owner_of(customer_id)
            if owner is None:
                return self.send_json({"error": "partition owner unknown (rebalancing)"}, 503)
            if owner != snap.url:
                if request.headers.get(ROUTED_HEADER):
                    return self.send_json(
                        {"error": "ownership changed while routing; retry", "owner": owner}, 503
                    )
                return await self.forward(request, owner)
            raw = worker.customer_row(customer_id)
            if raw is None:
                return self.send_json(
                    {"error": "unknown customer", "customer_id": customer_id}, 404
                )
            return self.send_json(customer_view(worker, raw))

        async def forward(self, request: web.Request, owner: str) -> web.Response:
            url = owner.rstrip("/") + str(request.rel_url)
            try:
                async with worker.http_client.get(
                    url, headers={ROUTED_HEADER: worker.web_address}, timeout=FORWARD_TIMEOUT
                ) as resp:
                    body = await resp.read()
                    return self.bytes(body, content_type=resp.content_type, status=resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                return self.send_json(
                    {"error": f"owner {owner} did not answer: {exc!r}", "owner": owner}, 502
                )

    @app.page("/retention/summary")  # type: ignore[untyped-decorator]
    class Summary(Base):
        async def get(self, request: web.Request) -> web.Response:
            # Served stale-while-revalidate, built off the event loop: see
            # streams.web.summary and docs/operations.md ("summary/1").
            scope = request.query.get("scope", "local")
            if scope not in SCOPES:
                return self.send_json({"error": f"scope must be one of {SCOPES}"}, 400)
            try:
                body = await summaries.summary(scope)
            except RuntimeError as exc:
                return self.send_json({"error": f"summary unavailable: {exc}"}, 503)
            age = body["freshness"]["age_seconds"]
            return self.send_bytes(json_bytes(body), "application/json", {"Age": str(int(age))})

    @app.page("/retention/summary/part")  # type: ignore[untyped-decorator]
    class SummaryPart(Base):
        async def get(self, request: web.Request) -> web.Response:
            raw = request.query.get("as_of")
            try:
                as_of = None if raw is None else parse_as_of(raw)
            except ValueError as exc:
                return self.send_json({"error": str(exc)}, 400)
            return self.send_json(await summaries.part(as_of))

    @app.page("/health/live")  # type: ignore[untyped-decorator]
    class Live(Base):
        async def get(self, request: web.Request) -> web.Response:
            # Answering at all proves the event loop runs; a crashed agent exits
            # the process (agents.faust_agents.crash_only): no "alive but dead".
            return self.send_json({"status": "live", "worker": worker.web_address})

    @app.page("/health/ready")  # type: ignore[untyped-decorator]
    class Ready(Base):
        async def get(self, request: web.Request) -> web.Response:
            snap = worker.snapshot()
            body = {
                "ready": snap.ready,
                "worker": snap.worker,
                "recovering": snap.recovering,
                "partitions": list(snap.owned),
                # Ready, but decisions wait: a stuck stream clock (docs/time.md "Time").
                "warnings": [*snap.clock_warnings, *snap.partition_warnings.values()],
                # Stream mode, from each partition's first event on: has its clock
                # started, how long have events waited on it (docs/time.md "Time").
                "stream_clocks": [
                    {
                        "partition": c.partition,
                        "started": c.started,
                        "stuck_seconds": c.stuck // 10**6,
                    }
                    for c in snap.clocks
                    if c.since and clock_mode(snap.clock_mode).event_time
                ],
            }
            return self.send_json(body, 200 if snap.ready else 503)

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    class MetricsPage(Base):
        async def get(self, request: web.Request) -> web.Response:
            return self.send_bytes(worker.metrics_text(), METRICS_CONTENT_TYPE)

    @app.page("/retention/asyncapi")  # type: ignore[untyped-decorator]
    class AsyncApi(Base):  # the topic contract, effective names (streams/asyncapi.py)
        async def get(self, request: web.Request) -> web.Response:
            return self.send_json(asyncapi_document(worker.config.topics))

    @app.page("/retention/")  # type: ignore[untyped-decorator]
    class Dashboard(Base):
        async def get(self, request: web.Request) -> web.Response:
            return self.file("dashboard.html")

        def file(self, name: str) -> web.Response:
            path = static_file(name)
            if path is None:
                return self.send_json({"error": "not found", "name": name}, 404)
            return self.send_bytes(
                path.read_bytes(), content_type(path), {"Cache-Control": "no-cache"}
            )

    @app.page("/retention/static/{name}")  # type: ignore[untyped-decorator]
    class Static(Dashboard):
        async def get(self, request: web.Request, name: str) -> web.Response:  # type: ignore[override]
            return self.file(name)
