"""The offline reference makes the stream's budget decisions too.

* pending overflow: fed in event-time order with the stream clock of a replay
  (event time - allowed lateness), the engine refuses exactly the events the
  reference counts as ``pending_overflow`` (past the hostile-input cap, whatever
  part waits in overflow rows) and both decide the same, a refused event sent
  again included;
* currencies: 16 named, the rest under XXX, whatever the arrival order;
* order dedup over the whole history with the same filter.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.core.budget import CODE_PENDING_OVERFLOW, OTHER_CURRENCY, entry_size
from agents.core.emissions import Firing, Refused
from agents.core.engine import Engine
from agents.core.reports import CustomerRow
from agents.core.settings import DAY, HOUR, CoreSettings, LadderSettings
from agents.core.state import CustomerState, pending_entry
from agents.core.timeutil import iso, to_micros
from agents.core.validation import validate
from agents.offline.reference import compute_decisions
from schemas.records import Event

T0 = to_micros(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
NOW = T0 + 1000 * DAY
# The hostile-input cap of these tests: room for four sessions with two-digit ids.
FOUR_SESSIONS = 4 * entry_size(pending_entry(Event("session", "e1", "a", T0, session_id="s")))
CORE = CoreSettings(
    second_purchase=LadderSettings("second_purchase", (1 * DAY, 2 * DAY, 4 * DAY)),
    inactivity=LadderSettings("inactivity", (2 * DAY, 4 * DAY, 8 * DAY)),
    holdout_percent=30.0,
    frequency_cap=3,
    overdue_floor=1 * DAY,
    # The row keeps two waiting events; the rest go to overflow rows until the cap.
    max_pending_events=2,
    max_pending_bytes=FOUR_SESSIONS,
    stream_allowed_lateness=DAY,
)

WIDE_PENDING = CoreSettings()


def line(kind: str, cid: str, t: int, n: int, currency: str = "EUR", order: str = "") -> bytes:
    base = {"event_id": f"e{n}", "customer_id": cid, "occurred_at": iso(t)}
    if kind == "purchase":
        extra = {"schema": "purchase/1", "order_id": order or f"o{n}", "amount": "10.25"}
        return orjson.dumps(base | extra | {"currency": currency})
    return orjson.dumps(base | {"schema": "session/1", "session_id": f"s{n}"})


def engine_run(lines: list[bytes], core: CoreSettings, until: int) -> tuple[list[tuple], int, dict]:
    """The file in event-time order (file order among equal times), each event
    ingested with the replay's stream clock: its own time - allowed lateness."""
    events = [validate(x, now=NOW, max_bytes=1 << 20, future_tolerance=DAY) for x in lines]
    order = sorted(range(len(events)), key=lambda i: (events[i].occurred_at, i))
    engine = Engine(core)
    states: dict[str, CustomerState] = {}
    fired: list[Firing] = []
    refused = 0
    for i in order:
        e = events[i]
        state = states.setdefault(e.customer_id, CustomerState(customer_id=e.customer_id))
        out = engine.ingest(state, e, e.occurred_at - core.stream_allowed_lateness)
        if isinstance(out, Refused):
            assert out.code == CODE_PENDING_OVERFLOW
            refused += 1
            fired += [x for x in out.emitted if isinstance(x, Firing)]  # due before it
        else:
            fired += [x for x in out or [] if isinstance(x, Firing)]
    for state in states.values():
        fired += [x for x in engine.advance(state, until) if isinstance(x, Firing)]
    decisions = sorted((f.trigger_id, iso(f.due_at), f.outcome) for f in fired)
    rows = {cid: CustomerRow.from_state(s) for cid, s in states.items()}
    return decisions, refused, rows


def reference_run(
    lines: list[bytes], core: CoreSettings, until: int
) -> tuple[list[tuple], int, dict]:
    result = compute_decisions(lines, core, until=until, now=NOW)
    decisions = sorted((d["trigger_id"], d["due_at"], d["outcome"]) for d in result.decisions)
    rows = {r.customer_id: r for r in result.rows}
    return decisions, result.dead_letters.get(CODE_PENDING_OVERFLOW, 0), rows


def assert_agree(lines: list[bytes], core: CoreSettings = CORE) -> int:
    until = T0 + 40 * DAY
    mine, theirs = engine_run(lines, core, until), reference_run(lines, core, until)
    assert mine[0] == theirs[0]
    assert mine[1] == theirs[1]
    assert mine[2].keys() == theirs[2].keys()
    for cid, row in theirs[2].items():
        assert (mine[2][cid].orders, mine[2][cid].spend) == (row.orders, row.spend), cid
        assert mine[2][cid].order_currencies == row.order_currencies
        assert mine[2][cid].stage == row.stage
    return mine[1]


def test_a_burst_beyond_the_pending_cap_is_refused_the_same_way_in_both() -> None:
    lines = [line("purchase", "a", T0, 0)]
    # Ten events within an hour, two days on: at most four wait in pending at once.
    lines += [line("session", "a", T0 + 2 * DAY + i * HOUR // 10, 1 + i) for i in range(10)]
    lines += [line("purchase", "a", T0 + 2 * DAY + HOUR, 20)]  # refused too: no 2nd order
    lines += [line("purchase", "b", T0 + i * DAY, 30 + i) for i in range(6)]
    refused = assert_agree(lines)
    assert refused == 7  # 11 in the burst, 4 kept (2 in the row, 2 in overflow rows)
    result = compute_decisions(lines, CORE, until=T0 + 40 * DAY, now=NOW)
    assert result.dead_letters == {CODE_PENDING_OVERFLOW: 7}
    fired = {(d["customer_id"], d["rule"], d["step"]) for d in result.decisions}
    assert ("a", "second_purchase", 3) in fired  # the refused order never counted


def test_a_refused_order_sent_again_later_counts_in_both() -> None:
    """The burst's refused order, re-sent by its producer a day later, is a second
    order (today's main remembered its ids, so the copy was a duplicate for good)."""
    lines = [line("purchase", "a", T0, 0)]
    lines += [line("session", "a", T0 + 2 * DAY + i * HOUR // 10, 1 + i) for i in range(10)]
    lines += [line("purchase", "a", T0 + 2 * DAY + HOUR, 20)]
    lines += [line("purchase", "a", T0 + 3 * DAY + 2 * HOUR, 20)]  # the same event, again
    assert assert_agree(lines) == 7
    result = compute_decisions(lines, CORE, until=T0 + 40 * DAY, now=NOW)
    assert result.facts["a"].order_count == 2 and result.duplicates == 0
    fired = {(d["rule"], d["step"]) for d in result.decisions if d["customer_id"] == "a"}
    assert ("second_purchase", 3) not in fired


@st.composite
def bursty(draw: st.DrawFn) -> list[bytes]:
    lines: list[bytes] = []
    for n in range(draw(st.integers(1, 60))):
        cid = draw(st.sampled_from("abc"))
        t = T0 + draw(st.integers(0, 30)) * DAY + draw(st.integers(0, 5)) * HOUR
        kind = draw(st.sampled_from(["purchase", "session", "session"]))
        currency = draw(st.sampled_from(["EUR", "USD", "XXX", "JPY"]))
        order = f"o{draw(st.integers(0, 40))}"
        lines.append(line(kind, cid, t, n, currency, order=order))
        if draw(st.integers(0, 4)) == 0:
            # Sent again later (a producer retrying a dead letter): taken in if the
            # first copy was refused, a duplicate if not.
            later = t + draw(st.integers(0, 3)) * DAY + draw(st.integers(0, 5)) * HOUR
            lines.append(line(kind, cid, later, n, currency, order=order))
    # In time order: the reference counts an order at its first line, the stream
    # at its first arrival, and a replay arrives in time order.
    return sorted(lines, key=lambda x: orjson.loads(x)["occurred_at"])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bursty())
def test_engine_and_reference_agree_on_histories_that_overflow_pending(lines: list[bytes]) -> None:
    assert_agree(lines)


def test_currencies_beyond_sixteen_go_to_xxx_whatever_the_order() -> None:
    codes = [f"C{a}{b}" for a in "ABCDE" for b in "XYZ"] + ["AAA", "ZZZ", "XXX", "MMM", "BBB"]
    assert len(codes) == 20
    base = [line("purchase", "a", T0 + i * HOUR, i, currency=c) for i, c in enumerate(codes)]
    seen = set()
    for seed in range(5):
        lines = list(base)
        random.Random(seed).shuffle(lines)
        assert_agree(lines, WIDE_PENDING)
        rows = reference_run(lines, WIDE_PENDING, T0 + 40 * DAY)[2]
        spend = rows["a"].spend
        seen.add(tuple(sorted(spend.items())))
        named = sorted(c for c in codes if c != OTHER_CURRENCY)[:16]
        assert sorted(spend) == sorted([*named, OTHER_CURRENCY])
        # XXX holds its own order and the three largest codes' (ZZZ and two more).
        assert rows["a"].order_currencies[OTHER_CURRENCY] == 4
        assert spend[OTHER_CURRENCY] == "41.00"
    assert len(seen) == 1


def test_an_order_redelivered_after_thousands_is_dropped_by_both() -> None:
    lines = [line("purchase", "a", T0 + i * 60_000_000, i) for i in range(2500)]
    lines.append(line("purchase", "a", T0 + 3000 * 60_000_000, 9999, order="o0"))
    lines.append(line("purchase", "a", T0 + 3001 * 60_000_000, 9998, order="o600"))
    core = CoreSettings()
    result = compute_decisions(lines, core, until=T0 + 40 * DAY, now=NOW)
    assert result.order_retries == 2 and result.facts["a"].order_count == 2500
    until = T0 + 40 * DAY
    assert engine_run(lines, core, until)[0] == reference_run(lines, core, until)[0]
    assert engine_run(lines, core, until)[2]["a"].orders == 2500
