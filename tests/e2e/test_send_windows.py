"""Send windows end to end (issue 22 "Done when"; docs/send-windows.md).

10,000 customers over 45 days that span the DST changes of Lord Howe (a 30-minute
shift), Auckland, Europe and North America, spread over 24 zones (issue 22's among
them), some without a zone (the file's default zone) and some with a name tzdata
does not know (counted, the event applied), replayed with
tests/fixtures/rules/windows-e2e.toml through one worker and through two:

* the decisions equal the offline reference's ``compute_decisions`` (same file),
  with their ``send_at`` and zone;
* every delivered nudge's ``send_local`` lies in its rule's window, and every
  ``send_at`` is the first instant inside at or after the due time (or the due time
  itself), checked here with the file read by ``tomllib`` and zones by ``zoneinfo``
  over the tzdata package's files, not the project's windows or zones modules;
* nothing is delivered twice and there is exactly one decision per ``trigger_id``.
"""

from __future__ import annotations

import asyncio
import re
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from agents.core.timeutil import parse_timestamp, to_micros
from agents.core.validation import ValidationError, validate
from agents.offline.reference import compute_decisions
from streams.config import Config
from streams.feed.sample import generate
from streams.feed.sample_options import WORLD_ZONES, SampleOptions
from tests.e2e.harness import Deployment, decision_key

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "tests" / "fixtures" / "rules" / "windows-e2e.toml"
END = "2026-11-06T00:00:00Z"
# 2026-09-22 to 2026-11-06: Auckland (09-27), Lord Howe (10-04, +30 min), Berlin
# (10-25) and New York (11-01) change their clocks inside the history.
DAYS = 45
CUSTOMERS = 10_000
OPTIONS = SampleOptions(
    zones=WORLD_ZONES, zoneless_share=0.08, invalid_zone_share=0.02, moved_zone_share=0.02
)
ISSUE_ZONES = {
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Apia",
    "Asia/Tehran",
    "Asia/Riyadh",
    "America/Los_Angeles",
}
WINDOWED_OUTCOMES = {"delivered", "holdout", "outside_window"}


# --- the rules file's windows, read independently ----------------------------------

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_GROUPS = {"weekdays": DAY_NAMES[:5], "weekends": DAY_NAMES[5:], "all": DAY_NAMES}


@cache
def zone(name: str) -> ZoneInfo:
    """``name`` from the tzdata package's own files (never the host's zoneinfo)."""
    if name not in tzdata_names():
        raise KeyError(name)
    path = resources.files("tzdata.zoneinfo").joinpath(*name.split("/"))
    with path.open("rb") as f:
        return ZoneInfo.from_file(f, key=name)


@cache
def tzdata_names() -> frozenset[str]:
    return frozenset(resources.files("tzdata").joinpath("zones").read_text().split())


def minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # local weekdays it opens on, Monday 0
    open: int  # local minutes after midnight
    close: int  # ditto; 1440 for 24:00; before ``open`` when it crosses midnight

    def holds(self, local: datetime) -> bool:
        """Local wall time in [open, close) of a day it opens on; after midnight, the
        part of a window that crosses it belongs to the day before."""
        t = local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 6e7
        weekday = local.weekday()
        if self.open < self.close:
            return weekday in self.days and self.open <= t < self.close
        if t >= self.open:
            return weekday in self.days
        return t < self.close and (weekday - 1) % 7 in self.days


@dataclass(frozen=True)
class Setting:
    windows: tuple[Window, ...]
    policy: str
    max_delay: timedelta | None
    zone: str | None

    def inside(self, instant: datetime, zone_name: str) -> bool:
        local = instant.astimezone(zone(zone_name))
        return any(w.holds(local) for w in self.windows)


def duration(text: str) -> timedelta:
    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?", text)
    assert m and text not in ("P", "PT"), text
    d, h, mi = (int(x or 0) for x in m.groups())
    return timedelta(days=d, hours=h, minutes=mi)


def setting(table: dict[str, Any]) -> Setting:
    windows = []
    for w in table["windows"]:
        days = w["days"]
        names = DAY_GROUPS.get(days, (days,)) if isinstance(days, str) else days
        opens, closes = minutes(w["open"]), minutes(w["close"])
        assert opens % 15 == 0 and closes % 15 == 0, "MARK assumes quarter hours"
        windows.append(Window(frozenset(DAY_NAMES.index(d) for d in names), opens, closes))
    delay = table.get("max_delay")
    return Setting(
        tuple(windows),
        table.get("policy", "defer"),
        duration(delay) if delay else None,
        table.get("zone"),
    )


@dataclass(frozen=True)
class RulesWindows:
    default_zone: str
    by_rule: dict[str, Setting | None]

    @classmethod
    def read(cls, path: Path) -> RulesWindows:
        doc = tomllib.loads(path.read_text())
        default = doc.get("send_window")
        by_rule: dict[str, Setting | None] = {}
        for rule in doc["rule"]:
            own = rule.get("send_window")
            if own == "none":
                by_rule[rule["name"]] = None
            elif own is not None:  # its own table replaces the file's whole table
                by_rule[rule["name"]] = setting(own)
            else:
                by_rule[rule["name"]] = setting(default) if default else None
        return cls(doc.get("default_timezone", "UTC"), by_rule)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# Every opening and closing in the rules file is a multiple of this many minutes of
# local time (RulesWindows.read checks it), and so is every zone's offset and DST
# shift in tzdata today (Kathmandu +05:45, Chatham +12:45, Lord Howe's 30 minutes):
# a window can only open at a whole multiple of it in UTC.
MARK = timedelta(minutes=15)


def marks(start: datetime, stop: datetime) -> Iterator[datetime]:
    """Every multiple of MARK in (start, stop]: where a window may open in between."""
    step = MARK.total_seconds()
    t = datetime.fromtimestamp(start.timestamp() // step * step, UTC) + MARK
    while t <= stop:
        yield t
        t += MARK


# --- the history and what the reference says -----------------------------------------


@dataclass(frozen=True)
class History:
    lines: list[bytes]
    expected: dict[tuple[str, str, int, str, str], tuple[Any, ...]]
    # customer -> the one zone all their events carry (None: none tzdata knows)
    zone_of: dict[str, str | None]
    invalid_zone_customers: set[str]
    invalid_zone_events: int  # accepted events whose zone ingest must ignore and count


def verdict(d: dict[str, Any]) -> tuple[Any, ...]:
    """What a consumer acts on, with when and in which zone it is sent."""
    return (
        d["trigger_id"],
        d["outcome"],
        bool(d["holdout"]),
        d.get("send_at"),
        d.get("send_zone"),
        d.get("send_local"),
    )


@pytest.fixture(scope="module")
def history() -> History:
    until = to_micros(parse_timestamp(END))
    lines = list(generate(CUSTOMERS, DAYS, seed=22, end=until, options=OPTIONS))
    result = compute_decisions(lines, Config(), rules=RULES.read_text(), until=until)
    expected: dict[tuple[str, str, int, str, str], tuple[Any, ...]] = {}
    for d in result.decisions:
        assert expected.setdefault(decision_key(d), verdict(d)) == verdict(d)
    names: dict[str, set[str]] = {}
    invalid: set[str] = set()
    now = to_micros(datetime.now(UTC))
    ignored = 0
    cfg = Config()
    for line in lines:
        try:
            obj = orjson.loads(line)
            customer, name = obj["customer_id"], obj.get("timezone")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
        if not isinstance(customer, str):
            continue
        known = names.setdefault(customer, set())
        if name in tzdata_names():
            known.add(name)
        elif name is not None:
            invalid.add(customer)
            try:
                validate(
                    line,
                    now=now,
                    max_bytes=cfg.max_message_bytes,
                    future_tolerance=cfg.future_tolerance,
                    earliest=cfg.min_event_time,
                )
            except ValidationError:
                continue  # a dead letter: never reaches the zone check
            ignored += 1
    zone_of = {c: next(iter(n)) if len(n) == 1 else None for c, n in names.items() if len(n) <= 1}
    # The history is what this test is about: every zone, the bypass, each policy.
    assert set(WORLD_ZONES) >= ISSUE_ZONES and len(WORLD_ZONES) >= 20
    assert {z for z in zone_of.values() if z} == set(WORLD_ZONES)
    assert sum(1 for z in zone_of.values() if z is None) > 300  # the default zone's
    assert invalid and ignored > 0
    outcomes = Counter((d["rule"], d["outcome"]) for d in result.decisions)
    assert outcomes[("second_purchase", "delivered")] > 100
    assert outcomes[("second_purchase", "outside_window")] > 0  # beyond max_delay
    assert outcomes[("evening_offer", "outside_window")] > 100  # policy drop
    assert outcomes[("evening_offer", "delivered")] > 10
    assert outcomes[("check_in", "delivered")] > 100
    assert outcomes[("review_request", "delivered")] > 100
    deferred = [d for d in result.decisions if d.get("send_at") not in (None, d["due_at"])]
    assert len(deferred) > 1000
    return History(lines, expected, zone_of, invalid, ignored)


# --- one replay, and what it must show ------------------------------------------------


async def replay(dep: Deployment, lines: list[bytes], workers: int) -> dict[str, Any]:
    started = [dep.start_worker() for _ in range(workers)]
    for w in started:
        await w.wait_ready()
    # The group settled with every worker owning customer partitions: no rebalance
    # (and so no repeat of a batch) during the replay.
    deadline = time.monotonic() + 120
    while True:
        owned = [int(await w.metric("retention_partitions_owned") or 0) for w in started]
        if sum(owned) == dep.config.partitions and all(owned):
            break
        assert time.monotonic() < deadline, f"partitions owned: {owned}"
        await asyncio.sleep(0.5)
    await dep.produce(lines, until=END)
    await dep.wait_idle(timeout=600)
    for w in started:
        assert w.alive, w.log_tail()
    ignored = [await w.metric("retention_invalid_timezones_total") for w in started]
    topics = dep.config.topics
    return {
        "decisions": await dep.read_sampled(topics.decisions),
        "nudges": await dep.read_sampled(topics.nudges),
        "invalid_timezones": sum(x or 0 for x in ignored),
    }


def check_windows(
    decisions: list[dict[str, Any]], rules: RulesWindows, zone_of: dict[str, str | None]
) -> Counter[str]:
    """Every decision's send time against the rules file, read independently."""
    seen: Counter[str] = Counter()
    for d in decisions:
        rule = rules.by_rule[d["rule"]]
        if rule is None:  # no window: no send time, as before windows
            assert d.get("send_at") is None and d.get("send_zone") is None, d
            continue
        due = instant(d["due_at"])
        name = d["send_zone"]
        if rule.zone is not None:
            assert name == rule.zone, d
        elif d["customer_id"] in zone_of:
            assert name == (zone_of[d["customer_id"]] or rules.default_zone), d
        if d["outcome"] == "outside_window":
            assert d["send_at"] is None and d.get("send_local") is None, d
            assert not rule.inside(due, name), d
            if rule.policy == "defer":  # dropped only because the opening is too far
                assert rule.max_delay is not None, d
                far = due + rule.max_delay
                assert not any(rule.inside(t, name) for t in marks(due, far)), d
            seen["dropped"] += 1
            continue
        sent = instant(d["send_at"])
        # send_local is send_at to the second, with its offset (the decision schema).
        local = datetime.fromisoformat(d["send_local"])
        expected_local = sent.replace(microsecond=0).astimezone(zone(name))
        # Instants by timestamp: == between zones is False for a time in a repeated hour.
        assert local.timestamp() == expected_local.timestamp(), d
        assert local.utcoffset() == expected_local.utcoffset(), d
        assert local.replace(tzinfo=None) == expected_local.replace(tzinfo=None), d
        assert rule.inside(sent, name), d
        if sent == due:
            seen["at due time"] += 1
            continue
        # Deferred: to the first opening after the due time, within max_delay.
        assert sent > due and rule.policy == "defer", d
        assert not rule.inside(due, name), d
        assert rule.max_delay is None or sent - due <= rule.max_delay, d
        assert not any(
            rule.inside(t, name) for t in marks(due, sent - timedelta(microseconds=1))
        ), d
        seen["deferred"] += 1
    return seen


def check_run(got: dict[str, Any], history: History, workers: int) -> None:
    decisions, nudges = got["decisions"], got["nudges"]
    # Exactly one decision per trigger_id, and nothing delivered twice.
    repeated = [t for t, n in Counter(d["trigger_id"] for d in decisions).items() if n > 1]
    assert not repeated, f"{len(repeated)} trigger_ids decided more than once: {repeated[:3]}"
    delivered_twice = [t for t, n in Counter(n["trigger_id"] for n in nudges).items() if n > 1]
    assert not delivered_twice, delivered_twice[:3]

    got_verdicts = {decision_key(d): verdict(d) for d in decisions}
    missing = set(history.expected) - set(got_verdicts)
    extra = set(got_verdicts) - set(history.expected)
    wrong = [
        k
        for k in set(got_verdicts) & set(history.expected)
        if got_verdicts[k] != history.expected[k]
    ]
    assert not missing and not extra and not wrong, (
        f"{workers} workers: {len(missing)} missing e.g. {sorted(missing)[:2]}, "
        f"{len(extra)} extra e.g. {sorted(extra)[:2]}, {len(wrong)} different e.g. "
        f"{[(k, got_verdicts[k], history.expected[k]) for k in sorted(wrong)[:2]]}"
    )

    rules = RulesWindows.read(RULES)
    seen = check_windows(decisions, rules, history.zone_of)
    assert seen["deferred"] > 1000 and seen["at due time"] > 1000 and seen["dropped"] > 100

    # Messaging services get the delivered decisions, each at a time in its window.
    by_id = {d["trigger_id"]: d for d in decisions}
    assert {n["trigger_id"] for n in nudges} == {
        t for t, d in by_id.items() if d["outcome"] == "delivered"
    }
    offsets: dict[str, set[timedelta | None]] = {}
    for n in nudges:
        d = by_id[n["trigger_id"]]
        assert (n.get("send_at"), n.get("send_zone"), n.get("send_local")) == (
            d.get("send_at"),
            d.get("send_zone"),
            d.get("send_local"),
        )
        rule = rules.by_rule[n["rule"]]
        if rule is None:
            continue
        local = datetime.fromisoformat(n["send_local"])
        assert rule.inside(local, n["send_zone"]), n
        offsets.setdefault(n["send_zone"], set()).add(local.utcoffset())
    # The replay spans the DST changes: nudges went out under both offsets.
    for name in ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe"):
        assert len(offsets.get(name, ())) == 2, (name, offsets.get(name))
    assert set(offsets) >= ISSUE_ZONES

    # Customers whose zone tzdata does not know: their events counted, applied (they
    # are decided), and sent in the file's default zone.
    assert got["invalid_timezones"] == history.invalid_zone_events
    invalid = [d for d in decisions if d["customer_id"] in history.invalid_zone_customers]
    assert any(d["outcome"] == "delivered" for d in invalid)


# Each replay is about 43,000 messages through two hops on a shared 2-core machine.
@pytest.mark.timeout(600)
async def test_one_worker_sends_in_each_customers_window_like_the_reference(
    make_deployment: Callable[..., Deployment], history: History
) -> None:
    dep = make_deployment(RETENTION_RULES_FILE=str(RULES))
    check_run(await replay(dep, history.lines, workers=1), history, workers=1)


@pytest.mark.timeout(600)
async def test_two_workers_send_in_each_customers_window_like_the_reference(
    make_deployment: Callable[..., Deployment], history: History
) -> None:
    dep = make_deployment(RETENTION_RULES_FILE=str(RULES))
    check_run(await replay(dep, history.lines, workers=2), history, workers=2)
