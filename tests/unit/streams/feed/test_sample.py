"""The sample generator: realistic customers, deterministic, noisy in the ways asked for."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from agents.core.settings import DAY, HOUR
from agents.core.timeutil import to_micros
from agents.core.validation import ValidationError, validate
from agents.core.zones import load_zone
from schemas.records import Event
from streams.cli import main
from streams.feed.sample import MALFORMED_KINDS, generate
from streams.feed.sample_options import (
    EXTRA_CURRENCIES,
    INVALID_ZONES,
    WORLD_ZONES,
    SampleOptions,
)

END = to_micros(datetime(2026, 3, 1, tzinfo=UTC))
MAX_BYTES = 64 * 1024
QUIET = SampleOptions(
    duplicate_rate=0,
    retry_rate=0,
    malformed_rate=0,
    late_rate=0,
    shuffle_rate=0,
)


@dataclass
class Parsed:
    """A sample split into what the processor would accept and reject."""

    lines: list[bytes]
    valid: list[tuple[int, Event]] = field(default_factory=list)  # (line number, event)
    invalid: Counter[str] = field(default_factory=Counter)


def parse(lines: list[bytes]) -> Parsed:
    out = Parsed(lines)
    for number, line in enumerate(lines):
        try:
            out.valid.append(
                (number, validate(line, now=END, max_bytes=MAX_BYTES, future_tolerance=DAY))
            )
        except ValidationError as exc:
            out.invalid[exc.code] += 1
    return out


@pytest.fixture(scope="module")
def sample() -> Parsed:
    return parse(list(generate(3000, 180, seed=11, end=END)))


def lateness(events: list[Event]) -> list[int]:
    """For each event, how far its time lies behind the newest event before it."""
    newest = None
    out = []
    for event in events:
        newest = event.occurred_at if newest is None else max(newest, event.occurred_at)
        out.append(newest - event.occurred_at)
    return out


def test_same_seed_same_bytes_and_another_seed_differs() -> None:
    a = list(generate(200, 60, seed=3, end=END))
    assert a == list(generate(200, 60, seed=3, end=END))
    assert a != list(generate(200, 60, seed=4, end=END))


def test_every_line_is_one_json_object_without_newlines(sample: Parsed) -> None:
    assert all(b"\n" not in line for line in sample.lines)


def test_all_valid_events_lie_in_the_window(sample: Parsed) -> None:
    times = [e.occurred_at for _, e in sample.valid]
    assert min(times) >= END - 180 * DAY
    assert max(times) <= END
    # Spread over the whole window, not bunched at one end.
    assert min(times) < END - 170 * DAY and max(times) > END - 2 * DAY


def test_every_customer_appears_and_some_are_prospects(sample: Parsed) -> None:
    kinds: dict[str, Counter[str]] = {}
    for _, e in sample.valid:
        kinds.setdefault(e.customer_id, Counter())[e.kind] += 1
    assert len(kinds) == 3000
    prospects = [c for c, k in kinds.items() if k["purchase"] == 0 and k["session"] > 0]
    assert 0.1 < len(prospects) / 3000 < 0.3


def test_sessions_outnumber_orders_and_some_precede_the_first_order(sample: Parsed) -> None:
    counts = Counter(e.kind for _, e in sample.valid)
    assert counts["session"] > 2 * counts["purchase"] > 0
    first_order: dict[str, int] = {}
    for _, e in sample.valid:
        if e.kind == "purchase":
            first_order[e.customer_id] = min(
                first_order.get(e.customer_id, e.occurred_at), e.occurred_at
            )
    browsed_first = {
        e.customer_id
        for _, e in sample.valid
        if e.kind == "session" and e.occurred_at < first_order.get(e.customer_id, -1)
    }
    assert len(browsed_first) > 0.2 * len(first_order)


def test_customers_differ_like_repeat_buyers_do(sample: Parsed) -> None:
    orders: dict[str, set[str]] = {}
    for _, e in sample.valid:
        if e.kind == "purchase":
            assert e.order_id is not None
            orders.setdefault(e.customer_id, set()).add(e.order_id)
    per_buyer = Counter(len(o) for o in orders.values())
    repeat_rate = sum(n for k, n in per_buyer.items() if k >= 2) / len(orders)
    # Most buyers buy once; a minority repeats, a few buy often.
    assert 0.15 < repeat_rate < 0.6
    assert max(per_buyer) >= 6


def test_consents_opt_out_and_some_back_in(sample: Parsed) -> None:
    statuses = Counter(e.status for _, e in sample.valid if e.kind == "consent")
    assert 0.02 * 3000 < statuses["opted_out"] < 0.07 * 3000
    assert 0 < statuses["opted_in"] < statuses["opted_out"]


def test_producers_differ_in_time_zones_and_amount_types(sample: Parsed) -> None:
    raw = [orjson.loads(sample.lines[n]) for n, e in sample.valid if e.kind == "purchase"]
    assert {type(o["amount"]) for o in raw} == {str, float}
    suffixes = Counter(o["occurred_at"][-1] == "Z" for o in raw)
    assert suffixes[True] > suffixes[False] > 0


def test_about_one_percent_exact_duplicates(sample: Parsed) -> None:
    ids = Counter(e.event_id for _, e in sample.valid)
    extra = sum(n - 1 for n in ids.values())
    assert 0.005 < extra / len(sample.valid) < 0.02
    by_id: dict[str, bytes] = {}
    for n, e in sample.valid:
        assert by_id.setdefault(e.event_id, sample.lines[n]) == sample.lines[n]


def test_about_half_a_percent_of_orders_are_retried_with_a_new_event_id(sample: Parsed) -> None:
    seen: dict[str, set[str]] = {}
    for _, e in sample.valid:
        if e.kind == "purchase":
            assert e.order_id is not None
            seen.setdefault(e.order_id, set()).add(e.event_id)
    retried = sum(len(ids) - 1 for ids in seen.values())
    assert 0.001 < retried / len(seen) < 0.012


def test_about_half_a_percent_malformed_with_every_kind(sample: Parsed) -> None:
    total = len(sample.lines)
    assert 0.0025 < sum(sample.invalid.values()) / total < 0.01
    assert set(sample.invalid) == set(MALFORMED_KINDS.values())
    assert any(len(line) > MAX_BYTES for line in sample.lines)


def test_arrival_is_nearly_time_sorted_with_bounded_lateness(sample: Parsed) -> None:
    late = lateness([e for _, e in sample.valid])
    assert max(late) <= 12 * HOUR
    out_of_order = sum(1 for x in late if x > 0)
    assert 0.01 < out_of_order / len(late) < 0.2
    assert sum(1 for x in late if x > HOUR) > 0  # late events beyond the local shuffles


def test_max_lateness_is_respected_when_set() -> None:
    opts = SampleOptions(late_rate=0.5, shuffle_rate=0.2, max_lateness=2 * HOUR)
    events = [e for _, e in parse(list(generate(300, 60, seed=5, end=END, options=opts))).valid]
    late = lateness(events)
    assert max(late) <= 2 * HOUR
    assert max(late) > HOUR


def test_zero_rates_give_a_clean_time_sorted_file() -> None:
    parsed = parse(list(generate(500, 90, seed=8, end=END, options=QUIET)))
    assert not parsed.invalid
    events = [e for _, e in parsed.valid]
    assert len({e.event_id for e in events}) == len(events)
    purchases = [e.order_id for e in events if e.kind == "purchase"]
    assert len(set(purchases)) == len(purchases)
    assert max(lateness(events)) == 0


@pytest.mark.parametrize(
    "bad",
    [
        SampleOptions(max_lateness=DAY),
        SampleOptions(max_lateness=-1),
        SampleOptions(duplicate_rate=1.5),
        SampleOptions(late_rate=0.7, shuffle_rate=0.7),
        SampleOptions(restamped_retry_rate=2.0),
        SampleOptions(restamp_after=0),
    ],
)
def test_unusable_options_are_refused(bad: SampleOptions) -> None:
    with pytest.raises(ValueError):
        list(generate(10, 10, seed=1, end=END, options=bad))


def test_ten_thousand_customers_for_a_year_take_seconds() -> None:
    started = time.perf_counter()
    count = sum(1 for _ in generate(10_000, 365, seed=1, end=END))
    elapsed = time.perf_counter() - started
    assert count > 50_000
    assert elapsed < 20, f"{elapsed:.1f}s"


# --- the command ---------------------------------------------------------------------


def test_command_writes_the_same_lines_as_the_function(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    args = ["sample", "--customers", "50", "--days", "30", "--seed", "2", "--end", "2026-03-01"]
    assert main([*args, "--out", str(out)]) == 0
    expected = list(generate(50, 30, seed=2, end=END))
    assert out.read_bytes() == b"\n".join(expected) + b"\n"


def test_command_writes_to_stdout_and_takes_the_noise_flags(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    args = ["sample", "--customers", "20", "--days", "30", "--end", "2026-03-01T00:00:00Z"]
    flags = ["--duplicate-rate", "0", "--retry-rate", "0", "--malformed-rate", "0"]
    flags += ["--late-rate", "0", "--shuffle-rate", "0"]
    assert main(args + flags) == 0
    lines = capsysbinary.readouterr().out.splitlines()
    assert lines == list(generate(20, 30, seed=1, end=END, options=QUIET))


@pytest.mark.parametrize(
    "flags",
    [
        ["--max-lateness", "24"],
        ["--end", "yesterday"],
        ["--end", "2026-03-01T00:00:00"],
        ["--days", "0"],
        ["--duplicate-rate", "2"],
    ],
)
def test_command_rejects_bad_arguments(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sample", "--customers", "5", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("retention: ") and err.count("\n") == 1


# --- the blind spots of the defaults (options, off by default) -------------------------


def customer_of(line: bytes) -> str | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return obj.get("customer_id") if isinstance(obj, dict) else None


def test_defaults_are_pinned_byte_for_byte() -> None:
    """The new options are off by default: the default output is what it was."""
    digest = hashlib.sha256(b"".join(generate(500, 365, seed=1, end=END))).hexdigest()
    assert digest[:12] == "9d4cc30f2755"
    off = SampleOptions(
        beyond_lateness_rate=0,
        customer_order=False,
        far_duplicate_rate=0,
        consent_tie_rate=0,
        currencies=3,
    )
    assert list(generate(200, 60, seed=3, end=END, options=off)) == list(
        generate(200, 60, seed=3, end=END)
    )


def test_beyond_lateness_delivers_events_later_than_the_allowed_lateness() -> None:
    opts = SampleOptions(beyond_lateness_rate=0.02, beyond_lateness=3 * DAY)
    events = [e for _, e in parse(list(generate(500, 120, seed=5, end=END, options=opts))).valid]
    late = lateness(events)
    beyond = [x for x in late if x > DAY]
    assert 0.005 < len(beyond) / len(late) < 0.04
    assert max(late) <= 3 * DAY and max(late) > 2 * DAY
    # Off, nothing is later than the 12 h default.
    default = [e for _, e in parse(list(generate(500, 120, seed=5, end=END))).valid]
    assert max(lateness(default)) <= 12 * HOUR


def test_customer_order_groups_each_customers_lines_in_arrival_order() -> None:
    arrival = list(generate(300, 90, seed=6, end=END))
    grouped = list(generate(300, 90, seed=6, end=END, options=SampleOptions(customer_order=True)))
    assert sorted(grouped) == sorted(arrival)  # the same lines, another order
    # Each customer's lines form one block (a malformed line without a customer id
    # may sit inside the block of the customer it was made from).
    owners = [c for c in (customer_of(line) for line in grouped) if c]
    runs = [c for i, c in enumerate(owners) if i == 0 or owners[i - 1] != c]
    assert len(runs) == len(set(runs)) == 300
    assert runs == sorted(runs)
    for customer in runs[:50]:
        assert [x for x in grouped if customer_of(x) == customer] == [
            x for x in arrival if customer_of(x) == customer
        ]
    # Far from time order: the stream clock would see most customers' events late.
    events = [e for _, e in parse(grouped).valid]
    assert sum(1 for x in lateness(events) if x > DAY) > 0.5 * len(events)


def test_far_duplicates_repeat_a_purchase_line_long_after_the_original() -> None:
    opts = SampleOptions(far_duplicate_rate=0.05, far_duplicate_after=60 * DAY)
    lines = list(generate(1000, 365, seed=7, end=END, options=QUIET_FAR(opts)))
    first: dict[bytes, int] = {}
    gaps = []
    for n, line in enumerate(lines):
        if line in first:
            gaps.append(n - first[line])
        else:
            first[line] = n
    purchases = sum(1 for line in first if b'"purchase/1"' in line)
    assert 0.03 < len(gaps) / purchases < 0.07
    # Mostly thousands of other lines between the original and its copy (less
    # near the end of the window, where copies pile up at the end of the file).
    assert sorted(gaps)[len(gaps) // 10] > 300 and sorted(gaps)[len(gaps) // 2] > 1000
    copies = Counter(lines)
    assert {e.kind for n, e in parse(lines).valid if copies[lines[n]] > 1} == {"purchase"}


def QUIET_FAR(opts: SampleOptions) -> SampleOptions:
    """The far duplicates alone: no other duplicates or retries to confuse the count."""
    return SampleOptions(
        duplicate_rate=0,
        retry_rate=0,
        malformed_rate=0,
        far_duplicate_rate=opts.far_duplicate_rate,
        far_duplicate_after=opts.far_duplicate_after,
    )


def test_consent_ties_give_an_opt_out_and_an_opt_in_at_the_same_instant() -> None:
    opts = SampleOptions(consent_rate=0.5, consent_tie_rate=0.5)
    events = [e for _, e in parse(list(generate(600, 90, seed=9, end=END, options=opts))).valid]
    at: dict[tuple[str, int], list[str]] = {}
    for e in events:
        if e.kind == "consent":
            assert e.status is not None
            at.setdefault((e.customer_id, e.occurred_at), []).append(e.status)
    ties = [s for s in at.values() if set(s) == {"opted_out", "opted_in"}]
    consenting = {c for c, _ in at}
    assert 0.3 * len(consenting) < len(ties) < 0.7 * len(consenting)
    # Both arrival orders occur.
    assert {tuple(s) for s in ties} >= {("opted_out", "opted_in"), ("opted_in", "opted_out")}
    default = [e for _, e in parse(list(generate(600, 90, seed=9, end=END))).valid]
    consents = Counter((e.customer_id, e.occurred_at) for e in default if e.kind == "consent")
    assert max(consents.values()) == 1


def test_more_currencies_when_asked() -> None:
    def currencies(options: SampleOptions | None = None) -> Counter[str]:
        events = parse(list(generate(1500, 180, seed=4, end=END, options=options))).valid
        return Counter(e.currency or "" for _, e in events if e.kind == "purchase")

    assert set(currencies()) == {"EUR", "USD", "GBP"}
    many = currencies(SampleOptions(currencies=12))
    assert len(many) == 12 and set(many) >= {"EUR", "USD", "GBP", "JPY", "CHF"}
    assert many.most_common(1)[0][0] == "EUR"
    # Every currency is one the processor accepts.
    assert len(currencies(SampleOptions(currencies=3 + len(EXTRA_CURRENCIES)))) == 25


@pytest.mark.parametrize(
    "bad",
    [
        SampleOptions(currencies=2),
        SampleOptions(currencies=4 + len(EXTRA_CURRENCIES)),
        SampleOptions(beyond_lateness=0),
        SampleOptions(far_duplicate_after=-1),
        SampleOptions(consent_tie_rate=1.5),
        SampleOptions(beyond_lateness_rate=-0.1),
    ],
)
def test_unusable_hostile_options_are_refused(bad: SampleOptions) -> None:
    with pytest.raises(ValueError):
        list(generate(10, 10, seed=1, end=END, options=bad))


def test_command_takes_the_hostile_flags(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    args = ["sample", "--customers", "80", "--days", "60", "--end", "2026-03-01"]
    flags = ["--beyond-lateness-rate", "0.05", "--beyond-lateness", "48", "--customer-order"]
    flags += ["--far-duplicate-rate", "0.1", "--far-duplicate-after", "20"]
    flags += ["--consent-tie-rate", "1", "--consent-rate", "0.5", "--currencies", "6"]
    assert main([*args, *flags, "--out", str(out)]) == 0
    expected = SampleOptions(
        beyond_lateness_rate=0.05,
        beyond_lateness=48 * HOUR,
        customer_order=True,
        far_duplicate_rate=0.1,
        far_duplicate_after=20 * DAY,
        consent_tie_rate=1,
        consent_rate=0.5,
        currencies=6,
    )
    lines = list(generate(80, 60, seed=1, end=END, options=expected))
    assert out.read_bytes() == b"\n".join(lines) + b"\n"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--currencies", "2"], "--currencies must be between 3 and 25"),
        (["--consent-tie-rate", "2"], "--consent-tie-rate must be between 0 and 1"),
        (["--beyond-lateness", "0"], "--beyond-lateness must be positive"),
    ],
)
def test_command_names_the_bad_hostile_flag(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sample", "--customers", "5", *flags]) == 2
    assert message in capsys.readouterr().err


def test_restamped_retries_resend_an_order_later_under_a_new_id_and_time() -> None:
    opts = SampleOptions(
        duplicate_rate=0, retry_rate=0, malformed_rate=0, restamped_retry_rate=0.05
    )
    parsed = parse(list(generate(1000, 180, seed=3, end=END, options=opts)))
    by_order: dict[str, list[tuple[int, Event]]] = {}
    for n, e in parsed.valid:
        if e.kind == "purchase":
            assert e.order_id is not None
            by_order.setdefault(e.order_id, []).append((n, e))
    twice = [copies for copies in by_order.values() if len(copies) > 1]
    assert 0.03 < len(twice) / len(by_order) < 0.07
    for copies in twice:
        (_, first), (_, retry) = sorted(copies, key=lambda c: c[1].occurred_at)
        # A new event id, stamped two hours later (or at the end of the window).
        assert retry.event_id != first.event_id
        assert retry.occurred_at - first.occurred_at in (2 * HOUR, END - first.occurred_at)
        assert (retry.amount, retry.currency) == (first.amount, first.currency)
    # Arrival order: the original may be delivered late, after its retry.
    assert any(c[0][1].occurred_at > c[1][1].occurred_at for c in twice)


# --- time zones (issue 22; docs/send-windows.md "The customer's zone") ----------------

ZONED = SampleOptions(
    zones=WORLD_ZONES, zoneless_share=0.1, invalid_zone_share=0.05, moved_zone_share=0.05
)


def zones_by_customer(parsed: Parsed) -> dict[str, list[tuple[int, str | None]]]:
    out: dict[str, list[tuple[int, str | None]]] = {}
    for _, event in parsed.valid:
        # Validation keeps a zone tzdata knows and sets aside one it does not.
        name = event.timezone or event.timezone_ignored
        out.setdefault(event.customer_id, []).append((event.occurred_at, name))
    return out


def test_zones_give_every_customer_one_zone_on_all_their_events_or_none() -> None:
    zoned = parse(list(generate(2000, 60, seed=5, end=END, options=ZONED)))
    assert not zoned.invalid.keys() - set(MALFORMED_KINDS.values())
    customers = zones_by_customer(zoned)
    kinds: Counter[str] = Counter()
    used: set[str] = set()
    for events in customers.values():
        names = [name for _, name in sorted(events, key=lambda e: e[0])]
        distinct = list(dict.fromkeys(names))
        if distinct == [None]:
            kinds["none"] += 1
        elif len(distinct) == 1 and distinct[0] in INVALID_ZONES:
            kinds["invalid"] += 1
            assert load_zone(distinct[0]) is None
        else:
            # One zone, or one then another from an instant on (events by time).
            assert None not in distinct and 1 <= len(distinct) <= 2, distinct
            assert all(name in WORLD_ZONES and load_zone(name) for name in distinct)
            kinds["moved" if len(distinct) == 2 else "one"] += 1
            used.update(n for n in distinct if n is not None)
    assert used == set(WORLD_ZONES) and len(WORLD_ZONES) >= 20
    total = len(customers)
    assert 0.06 < kinds["none"] / total < 0.14
    assert 0.02 < kinds["invalid"] / total < 0.08
    assert kinds["moved"] > 0 and kinds["one"] > 0.7 * total


def test_zones_leave_every_other_field_and_the_line_order_as_without_them() -> None:
    plain = list(generate(500, 60, seed=5, end=END))
    zoned = list(generate(500, 60, seed=5, end=END, options=ZONED))
    assert len(plain) == len(zoned)
    differ = 0
    for a, b in zip(plain, zoned, strict=True):
        try:
            event = orjson.loads(b)
        except orjson.JSONDecodeError:  # a truncated line (invalid_json) is cut elsewhere
            differ += 1
            continue
        event.pop("timezone", None)
        assert orjson.loads(a) == event
    assert differ < len(plain) / 100


@pytest.mark.parametrize(
    "bad",
    [
        SampleOptions(zoneless_share=0.5),
        SampleOptions(zones=WORLD_ZONES, zoneless_share=0.6, invalid_zone_share=0.6),
        SampleOptions(zones=WORLD_ZONES, moved_zone_share=1.5),
    ],
)
def test_unusable_zone_options_are_refused(bad: SampleOptions) -> None:
    with pytest.raises(ValueError):
        list(generate(10, 10, seed=1, end=END, options=bad))
