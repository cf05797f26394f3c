"""The worker's own HTTP endpoints, served by Faust web next to its stats.

* ``GET /retention/customers/{id}``: one customer, answered by the worker that owns
  the customer's partition (other workers forward the request there);
* ``GET /retention/rules``: the rule set this worker runs, with its versions;
* ``GET /retention/summary[?scope=local|cluster]``: counts, decisions, lag and
  report of this worker (default) or of every worker (``streams.web.summary``);
* ``GET /retention/summary/part[?as_of=T]``: this worker's share of a cluster
  summary (counters, clocks and, with ``as_of``, report inputs);
* ``GET /health/live``, ``GET /health/ready``: liveness, and readiness after table
  recovery;
* ``GET /metrics``: Prometheus text format;
* ``GET /retention/`` and ``GET /retention/static/{name}``: the dashboard files.

Each is a module-level handler, ``(site, request, path parameters) -> Reply``, named
in :data:`ROUTES`; :func:`register` turns the table into Faust views.  They read
the worker through :class:`streams.worker.observe.ObservedWorker` and its
snapshot, so they are tested in-process without a broker
(tests/unit/streams/web/test_views.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import mimetypes
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import aiohttp
import orjson
from faust import web

from agents.core.clock import clock_mode
from agents.core.engine import Engine
from agents.core.ids import trigger_id
from agents.core.rules import RuleSet
from agents.core.rules.model import GuardrailValues, Rule
from agents.core.rules.steps import Cadence
from agents.core.scores import model_at, scores
from agents.core.state import CustomerState
from agents.core.timeutil import duration_record, iso
from agents.core.windows import DAY_NAMES, SendWindowSetting
from agents.messages import local_iso
from streams.asyncapi import published as asyncapi_document
from streams.config import Config
from streams.web.summary import SCOPES, Summaries, parse_as_of
from streams.worker.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from streams.worker.observe import ObservedWorker, PartitionRules, Snapshot
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
    "tz",  # shown as "timezone" (zone_view)
    "tzx",
    "df",  # shown as "deferred" (deferred_view)
    "od",  # the order-day bitmap: its count is in the facts, its use in "scores"
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


def customer_view(
    worker: ObservedWorker, raw: bytes, snap: Snapshot | None = None
) -> dict[str, Any]:
    """The lookup's JSON for one stored state."""
    state = CustomerState.from_dict(orjson.loads(raw))
    shown = {k: v for k, v in state.to_dict().items() if k not in HIDDEN_STATE_FIELDS}
    shown["pending_events"] = state.pending_count()  # in the row and its overflow rows
    partition = state.partition or 0
    engine = worker.engine_for(partition)  # its partition's rules versions
    as_of = partition_now(worker, snap or worker.snapshot(), partition)
    return {
        "customer_id": state.customer_id,
        "state": shown,
        # At the partition's clock, under the model in force then: a score decays
        # with no new order (docs/prediction.md "Scores").
        "scores": scores(state, model_at(engine.history.versions, as_of), as_of),
        "timezone": zone_view(state),
        "pending": pending_nudges(engine, state),
        "next_steps": next_steps(engine, state),
        "deferred": deferred_view(state),
        "recent_decisions": recent_decisions(state),
        "holdout": engine.in_holdout(state.customer_id),
        "served_by": worker.web_address,
    }


def partition_now(worker: ObservedWorker, snap: Snapshot, partition: int) -> int:
    """The partition's clock: its stream clock in stream mode (the wall clock
    before its first event), else the wall clock (docs/time.md "Time")."""
    if clock_mode(snap.clock_mode).event_time:
        mark = snap.watermarks.get(partition)
        if mark is not None:
            return mark
    return worker.wall_clock()


def zone_view(state: CustomerState) -> dict[str, str | None]:
    """The customer's zone in force and the newest ignored name, with the event
    times that set them (docs/send-windows.md "The customer's zone")."""

    def at(t: int | None) -> str | None:
        return None if t is None else iso(t)

    return {
        "name": state.zone,
        "since": at(state.zone_at),
        "ignored": state.zone_ignored,
        "ignored_at": at(state.zone_ignored_at),
    }


class WaitingFiring(Protocol):
    """A firing kept in the row until its send time (the engine's ``DeferredFiring``,
    row key ``df``: docs/send-windows.md "Outputs")."""

    @property
    def rule(self) -> str: ...
    @property
    def step(self) -> int: ...
    @property
    def anchor_at(self) -> int: ...
    @property
    def due_at(self) -> int: ...
    @property
    def send_at(self) -> int: ...
    @property
    def rule_version(self) -> str: ...
    @property
    def key(self) -> str | None: ...
    @property
    def zone(self) -> str: ...


def deferred_view(state: CustomerState) -> list[dict[str, Any]]:
    """The customer's firings waiting for their send window, soonest first: not
    decisions yet, each decided at its ``send_at`` (docs/send-windows.md "Outputs")."""
    # The row's deferred firings (CustomerState.deferred, written by the engine);
    # a state without send windows has none.
    waiting: list[WaitingFiring] = getattr(state, "deferred", [])
    return [
        {
            "trigger_id": trigger_id(state.customer_id, f.rule, f.step, f.anchor_at, f.key),
            "rule": f.rule,
            "step": f.step,
            "due_at": iso(f.due_at),
            "send_at": iso(f.send_at),
            "send_zone": f.zone,
            "send_local": local_iso(f.send_at, f.zone),
            "rule_version": f.rule_version,
        }
        for f in sorted(waiting, key=lambda f: (f.send_at, f.rule))
    ]


def recent_decisions(state: CustomerState) -> list[dict[str, Any]]:
    """The decisions the row remembers, with ``send_at`` on those of a rule with a
    send window (the firing's ``sent_at``; docs/send-windows.md "Outputs")."""
    out = state.recent_decisions()
    for shown, f in zip(out, state.recent_firings, strict=True):
        sent: int | None = getattr(f, "sent_at", None)
        if sent is not None:
            shown["send_at"] = iso(sent)
    return out


def next_steps(engine: Engine, state: CustomerState) -> list[dict[str, Any]]:
    """Each rule's next due step under the customer's facts, soonest first, with the
    version of the rule that will judge it (docs/operations.md "Endpoints").

    The read model's ``pending`` (streams.worker.readmodel) keeps its three fields:
    its hash is a contract (schemas/readmodel.md)."""
    return [
        {
            "rule": d.rule,
            "step": d.step,
            "due_at": iso(d.due_at),
            "anchor_at": iso(d.anchor_at),
            "threshold": duration_record(d.threshold).to_dict(),
            "rule_version": d.rule_version,
        }
        for d in engine.pending(state)
    ]


# --- the active rule set (docs/rules.md "Rules file") -------------------------------------

RULES_SOURCE_DEFAULT = "default"


def rules_source(config: Config) -> str:
    """Where the worker's rule set came from: the rules file's path, or "default".

    The one place that reads the path: ``rules_file`` is the setting of
    ``RETENTION_RULES_FILE`` (streams.config); without it (or before the setting
    exists) the set is the default file, edited by the deprecated aliases."""
    path = getattr(config, "rules_file", None)
    return str(path) if path else RULES_SOURCE_DEFAULT


def _duration(micros: int) -> str:
    return duration_record(micros).iso


def _step_shown(step: Any) -> Any:
    if isinstance(step, Cadence):
        return {"cadence": step.multiplier, "floor": _duration(step.floor)}
    return step.label()


def rule_shown(rule: Rule) -> dict[str, Any]:
    """One rule as ``GET /retention/rules`` shows it: the file's keys, durations in ISO 8601,
    and its effective send window when it has one (docs/send-windows.md "Outputs")."""
    shown = {
        "name": rule.name,
        "enabled": rule.enabled,
        "priority": rule.priority,
        "description": rule.description,
        "anchor": rule.anchor.canonical(),
        "steps": [_step_shown(s) for s in rule.steps],
        "audience": {p.key: p.canonical() for p in rule.audience},
        "cancel_on": list(rule.cancel_on),
        "transactional": rule.transactional,
        "arbitration": rule.arbitration,
        "channel": rule.channel,
        "reason": rule.template,
        "rule_version": rule.version,
    }
    if rule.send_window is not None:
        shown["send_window"] = send_window_shown(rule.send_window)
    return shown


def send_window_shown(setting: SendWindowSetting) -> dict[str, Any]:
    """A rule's effective send window as the rules file writes one: day names, local
    ``HH:MM`` times, ``max_delay`` in ISO 8601, the fixed zone (null: the customer's)
    and the default zone."""

    def hhmm(minutes: int) -> str:
        return f"{minutes // 60:02d}:{minutes % 60:02d}"

    policy = setting.policy
    return {
        "windows": [
            {
                "days": [DAY_NAMES[d] for d in sorted(w.days)],
                "open": hhmm(w.open),
                "close": hhmm(w.close),
            }
            for w in setting.windows.windows
        ],
        "policy": policy.kind,
        "max_delay": None if policy.max_delay is None else _duration(policy.max_delay),
        "zone": setting.zone,
        "default_zone": setting.default_zone,
    }


def _guardrails_shown(g: GuardrailValues) -> dict[str, Any]:
    return {
        "holdout_percent": g.holdout_percent,
        "holdout_salt": g.holdout_salt,
        "min_gap": _duration(g.min_gap),
        "frequency_cap": g.frequency_cap,
        "frequency_window": _duration(g.frequency_window),
        "attribution_window": _duration(g.attribution_window),
        "arbitration": g.arbitration,
    }


def rule_set_version(rules: RuleSet) -> str:
    """The first 12 hex digits of sha256 of the whole set's canonical form: every
    rule's (with ``enabled``), the guardrails, the lifecycle and the format.  Two
    workers with the same version decide alike on the same events."""
    doc = {
        "format": rules.format,
        "rules": [{**r.canonical(), "enabled": r.enabled} for r in rules.rules],
        "guardrails": dataclasses.asdict(rules.guardrails),
        "lifecycle": None if rules.lifecycle is None else rules.lifecycle.canonical(),
    }
    text = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()[:12]


def versions_shown(partitions: Sequence[PartitionRules]) -> list[dict[str, Any]]:
    """The rules versions of the worker's partitions (docs/rules.md "Changing rules"):
    one entry per version and state, with the partitions in that state, so that
    partitions that switched at different instants (late) or not yet show apart."""
    entries: dict[tuple[Any, ...], dict[str, Any]] = {}
    for part in partitions:
        for v in part.versions:
            key = (v.id, v.effective_at, v.applied_at, v.in_force, v.scheduled)
            entry = entries.get(key)
            if entry is None:
                entry = entries[key] = {
                    "id": v.id,
                    "effective_at": None if v.effective_at is None else iso(v.effective_at),
                    "applied_at": iso(v.applied_at) if v.late and v.applied_at else None,
                    "late": v.late and v.applied_at is not None,
                    "in_force": v.in_force,
                    "scheduled": v.scheduled,
                    "rules": {
                        name: {"version": version, "on_change": on_change}
                        for name, version, on_change in v.rules
                    },
                    "partitions": [],
                }
            entry["partitions"].append(part.partition)
    return sorted(
        entries.values(),
        key=lambda e: (e["applied_at"] or e["effective_at"] or "", e["id"], e["partitions"]),
    )


def rules_view(config: Config, partitions: Sequence[PartitionRules] = ()) -> dict[str, Any]:
    """``GET /retention/rules``: the active rule set, its source and versions, and the
    versions in force and scheduled on the worker's partitions."""
    rules = config.core.rule_set
    lifecycle = rules.lifecycle
    return {
        "source": rules_source(config),
        "version": rule_set_version(rules),
        "format": rules.format,
        "guardrails": _guardrails_shown(rules.guardrails),
        "lifecycle": None
        if lifecycle is None
        else {
            "at_risk_after": _duration(lifecycle.at_risk_after),
            "lapsed_after": _duration(lifecycle.lapsed_after),
            "priority": lifecycle.priority,
        },
        "rules": [rule_shown(r) for r in rules.rules],
        "versions": versions_shown(partitions),
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


# --- replies and the route table ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler answers: body, Content-Type (sent as given, charset included),
    status and any further headers."""

    body: bytes
    content_type: str = "application/json"
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


def json_reply(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(json_bytes(obj), "application/json", status, headers or {})


class Site(NamedTuple):
    """What the handlers serve: the worker, and its summaries (built off the event
    loop and cached, streams.web.summary), one per worker."""

    worker: ObservedWorker
    summaries: Summaries

    @classmethod
    def of(cls, worker: ObservedWorker) -> Site:
        return cls(worker, Summaries(worker))


# A handler: (site, request, the path's parameters by name) -> its reply.
Handler = Callable[..., Awaitable[Reply]]


class Route(NamedTuple):
    path: str
    name: str  # the Faust view's name (``web.url_for``)
    handler: Handler


def register(app: Any, worker: ObservedWorker) -> None:
    """Add the views of ``worker`` to the Faust app ``app`` (call before it starts)."""
    site = Site.of(worker)
    for route in ROUTES:
        app.page(route.path, name=route.name)(view(site, route))


def view(site: Site, route: Route) -> type[web.View]:
    """The Faust view (aiohttp underneath) answering GET on ``route`` for ``site``."""
    handler = route.handler

    async def get(self: web.View, request: web.Request, **params: str) -> web.Response:
        reply = await handler(site, request, **params)
        # aiohttp refuses a charset inside ``content_type=`` for a bytes body,
        # but keeps a full Content-Type header as given.
        headers = {"Content-Type": reply.content_type, **reply.headers}
        return self.bytes(reply.body, status=reply.status, headers=headers)

    return type(route.name, (web.View,), {"get": get, "__doc__": handler.__doc__})


# --- the handlers ------------------------------------------------------------------------


async def customer(site: Site, request: web.Request, customer_id: str) -> Reply:
    """One customer, from the worker owning its partition (others forward there)."""
    worker = site.worker
    snap = worker.snapshot()
    if not snap.ready:
        return json_reply({"error": "not ready: tables are recovering"}, 503)
    owner = worker.owner_of(customer_id)
    if owner is None:
        return json_reply({"error": "partition owner unknown (rebalancing)"}, 503)
    if owner != snap.url:
        if request.headers.get(ROUTED_HEADER):
            return json_reply(
                {"error": "ownership changed while routing; retry", "owner": owner}, 503
            )
        return await forward(worker, request, owner)
    raw = worker.customer_row(customer_id)
    if raw is None:
        return json_reply({"error": "unknown customer", "customer_id": customer_id}, 404)
    return json_reply(customer_view(worker, raw, snap))


async def forward(worker: ObservedWorker, request: web.Request, owner: str) -> Reply:
    """The owner's answer to the same request, marked as routed (:data:`ROUTED_HEADER`)."""
    url = owner.rstrip("/") + str(request.rel_url)
    try:
        async with worker.http_client.get(
            url, headers={ROUTED_HEADER: worker.web_address}, timeout=FORWARD_TIMEOUT
        ) as resp:
            return Reply(await resp.read(), resp.content_type, resp.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return json_reply({"error": f"owner {owner} did not answer: {exc!r}", "owner": owner}, 502)


async def rules(site: Site, request: web.Request) -> Reply:
    """The rule set this worker runs: every rule, the guardrails, source and versions,
    and the rules versions in force and scheduled on its partitions."""
    return json_reply(rules_view(site.worker.config, site.worker.snapshot().rules))


async def summary(site: Site, request: web.Request) -> Reply:
    """``summary/1`` of this worker (``scope=local``) or of every worker (``cluster``)."""
    # Served stale-while-revalidate, built off the event loop: see
    # streams.web.summary and docs/operations.md ("summary/1").
    scope = request.query.get("scope", "local")
    if scope not in SCOPES:
        return json_reply({"error": f"scope must be one of {SCOPES}"}, 400)
    try:
        body = await site.summaries.summary(scope)
    except RuntimeError as exc:
        return json_reply({"error": f"summary unavailable: {exc}"}, 503)
    return json_reply(body, headers={"Age": str(int(body["freshness"]["age_seconds"]))})


async def summary_part(site: Site, request: web.Request) -> Reply:
    """This worker's share of a cluster summary (report inputs with ``as_of``)."""
    raw = request.query.get("as_of")
    try:
        as_of = None if raw is None else parse_as_of(raw)
    except ValueError as exc:
        return json_reply({"error": str(exc)}, 400)
    return json_reply(await site.summaries.part(as_of))


async def live(site: Site, request: web.Request) -> Reply:
    # Answering at all proves the event loop runs; a crashed agent exits
    # the process (agents.faust_agents.crash_only): no "alive but dead".
    return json_reply({"status": "live", "worker": site.worker.web_address})


async def ready(site: Site, request: web.Request) -> Reply:
    """Readiness after table recovery, with what holds decisions back."""
    snap = site.worker.snapshot()
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
            {"partition": c.partition, "started": c.started, "stuck_seconds": c.stuck // 10**6}
            for c in snap.clocks
            if c.since and clock_mode(snap.clock_mode).event_time
        ],
    }
    return json_reply(body, 200 if snap.ready else 503)


async def metrics(site: Site, request: web.Request) -> Reply:
    return Reply(site.worker.metrics_text(), METRICS_CONTENT_TYPE)


async def asyncapi(site: Site, request: web.Request) -> Reply:
    """The topic contract with the effective names (streams/asyncapi.py)."""
    return json_reply(asyncapi_document(site.worker.config.topics))


async def dashboard(site: Site, request: web.Request) -> Reply:
    return file_reply("dashboard.html")


async def static(site: Site, request: web.Request, name: str) -> Reply:
    return file_reply(name)


def file_reply(name: str) -> Reply:
    path = static_file(name)
    if path is None:
        return json_reply({"error": "not found", "name": name}, 404)
    return Reply(path.read_bytes(), content_type(path), headers={"Cache-Control": "no-cache"})


ROUTES: tuple[Route, ...] = (
    Route("/retention/customers/{customer_id}", "Customer", customer),
    Route("/retention/rules", "Rules", rules),
    Route("/retention/summary", "Summary", summary),
    Route("/retention/summary/part", "SummaryPart", summary_part),
    Route("/health/live", "Live", live),
    Route("/health/ready", "Ready", ready),
    Route("/metrics", "MetricsPage", metrics),
    Route("/retention/asyncapi", "AsyncApi", asyncapi),
    Route("/retention/", "Dashboard", dashboard),
    Route("/retention/static/{name}", "Static", static),
)
