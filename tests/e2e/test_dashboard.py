"""The dashboard at /retention/ in headless Chromium (Selenium, Debian's chromium).

The page loads, draws every chart from ``/retention/summary?scope=cluster``,
shows the same numbers as that JSON, refreshes by itself, says so when the
summary cannot be fetched or a worker did not answer, and logs nothing to the
console.  With two workers the cluster summary's report equals the offline
reference's.  Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agents.core.reports import build_report
from agents.core.timeutil import parse_timestamp, to_micros
from agents.offline.reference import compute_decisions
from streams.config import Config
from streams.feed.sample import generate
from tests.e2e.harness import Deployment, WorkerProcess
from tests.fixtures.browser import (
    PageServer,
    chromium,
    console_errors,
    reference_summary,
    require_browser,
    save_screenshot,
)

pytestmark = [pytest.mark.e2e]

END = "2026-11-01T00:00:00Z"
CUSTOMERS = 300
CHARTS = (
    "ttsp",
    "triggers",
    "decisions",
    "rules",
    "versions",
    "suppression",
    "lifecycle",
    "dead-letters",
    "lag",
    "lift",
    "cohorts",
)

# Reads every chart back from the DOM: state, total, and the values of its marks.
READ_CHARTS = """
const out = {};
for (const fig of document.querySelectorAll('[data-chart]')) {
  const marks = [...fig.querySelectorAll('.chart [data-value]')]
    .filter(e => e.matches('rect.bar, circle.point, tr'));
  out[fig.dataset.chart] = {
    state: fig.dataset.state,
    total: Number(fig.dataset.total || 0),
    marks: marks.map(e => ({
      kind: e.tagName.toLowerCase(), value: Number(e.dataset.value),
      label: e.dataset.key || e.dataset.label || e.dataset.outcome || e.dataset.rule
        || e.dataset.cohort || null,
    })),
    text: fig.innerText,
  };
}
return out;
"""

READ_METRICS = """
const out = {};
for (const c of document.querySelectorAll('[data-metric]')) {
  out[c.dataset.metric] = {value: c.dataset.value, text: c.querySelector('.value').textContent};
}
return out;
"""


@pytest.fixture(scope="module")
def sample_lines() -> list[bytes]:
    """A few hundred customers over half a year, with the generator's bad messages."""
    return list(generate(CUSTOMERS, 180, seed=23, end=to_micros(parse_timestamp(END))))


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def charts(driver: Any) -> dict[str, Any]:
    return dict(driver.execute_script(READ_CHARTS))


def metrics(driver: Any) -> dict[str, Any]:
    return dict(driver.execute_script(READ_METRICS))


def drawn(driver: Any) -> dict[str, Any] | None:
    """The charts once none is still loading, else None."""
    got = charts(driver)
    pending = [c for c in CHARTS if got.get(c, {}).get("state") in (None, "loading")]
    return None if pending else got


def assert_page_matches(driver: Any, summary: dict[str, Any]) -> None:
    """Every chart and headline number on the page equals the summary's."""
    got = charts(driver)
    assert {c for c in CHARTS if got[c]["state"] == "error"} == set()
    report = summary["report"]

    hist = [b["count"] for b in report["ttsp"]["histogram"]]
    bars = [m["value"] for m in got["ttsp"]["marks"]]
    assert bars == hist
    assert got["ttsp"]["total"] == sum(hist)

    points = sum(m["value"] for m in got["triggers"]["marks"])
    assert points == sum(r["count"] for r in summary["triggers_over_time"])

    segments: Counter[str] = Counter()
    for m in got["decisions"]["marks"]:
        segments[m["label"]] += m["value"]
    outcomes: Counter[str] = Counter()
    for r in summary["decisions"]:
        outcomes[r["outcome"]] += r["count"]
    assert segments == +outcomes

    # Decisions by rule: one row per rule, every step and outcome together.
    per_rule: Counter[str] = Counter()
    for r in summary["decisions"]:
        per_rule[r["rule"]] += r["count"]
    assert {m["label"]: m["value"] for m in got["rules"]["marks"]} == +per_rule
    assert got["rules"]["total"] == sum(per_rule.values())
    assert "Outranked" in got["rules"]["text"]
    # Decisions by rule and version: one row per (rule, rule_version).
    per_version: Counter[str] = Counter()
    for r in summary["decisions_by_version"]:
        per_version[r["rule"]] += r["count"]
    assert got["versions"]["total"] == sum(per_version.values()) == sum(per_rule.values())

    sup = {m["label"]: m["value"] for m in got["suppression"]["marks"]}
    assert sup == summary["suppression"]
    stages = {m["label"]: m["value"] for m in got["lifecycle"]["marks"]}
    assert stages == report["lifecycle"]
    dead = {m["label"]: m["value"] for m in got["dead-letters"]["marks"]}
    assert dead == {k: v for k, v in summary["dead_letters"].items() if v}
    lag = {m["label"]: m["value"] for m in got["lag"]["marks"]}
    assert lag == summary["lag"]["by_topic"]
    assert len(got["lift"]["marks"]) == len(report["lift"])
    assert len([m for m in got["cohorts"]["marks"] if m["label"] != "overall"]) == len(
        report["ttsp"]["cohorts"]
    )

    shown = metrics(driver)
    counts = summary["counts"]
    for key in ("customers", "events", "decisions", "delivered", "dead_letters"):
        assert shown[key]["value"] == str(counts[key]), key
        assert shown[key]["text"] == f"{counts[key]:,}", key
    assert shown["lag"]["value"] == str(summary["lag"]["total"])


READ_RULE_CELLS = """
const out = {};
for (const tr of document.querySelectorAll('[data-table="rules"] tbody tr')) {
  const cells = {};
  for (const td of tr.querySelectorAll('td')) {
    cells[td.dataset.key] = [Number(td.dataset.value), td.textContent];
  }
  out[tr.dataset.rule] = {name: tr.querySelector('th').textContent, cells};
}
return out;
"""


def with_outranked(summary: dict[str, Any], rule: str, count: int) -> dict[str, Any]:
    """The summary of a rule set where ``rule`` (arbitration on) lost ``count`` firings."""
    out: dict[str, Any] = json.loads(json.dumps(summary))
    out["decisions"].append({"rule": rule, "step": 1, "outcome": "outranked", "count": count})
    out["decisions_by_version"].append(
        {"rule": rule, "rule_version": None, "outcome": "outranked", "count": count}
    )
    out["suppression"]["outranked"] = out["suppression"].get("outranked", 0) + count
    out["counts"]["decisions"] += count
    return out


def open_dashboard(driver: Any, base: str, refresh: int = 1) -> dict[str, Any]:
    driver.get(f"{base}/retention/?refresh={refresh}")
    try:
        got: dict[str, Any] = wait_until("every chart drawn", lambda: drawn(driver))
    except AssertionError as exc:
        banner = driver.find_element("id", "banner").text
        states = {k: v["state"] for k, v in charts(driver).items()}
        logs = "\n".join(e["message"] for e in driver.get_log("browser"))
        raise AssertionError(
            f"{exc}\nbanner: {banner!r}\ncharts: {states}\nconsole:\n{logs}"
        ) from None
    return got


def last_updated(driver: Any) -> tuple[str, str]:
    el = driver.find_element("id", "last-updated")
    return el.text, el.get_attribute("data-fetches") or "0"


def assert_refreshes(driver: Any) -> None:
    before = last_updated(driver)
    wait_until("the page to refresh by itself", lambda: last_updated(driver) != before, 10)


def assert_no_console_errors(driver: Any) -> None:
    errors = console_errors(driver)
    assert not errors, "browser console errors:\n" + "\n".join(e["message"] for e in errors)


# --- against the stand-in server (no broker): the page itself ----------------------------


def test_page_draws_a_reference_summary_and_survives_a_failing_summary(
    tmp_path: Path, sample_lines: list[bytes]
) -> None:
    require_browser()
    reference = reference_summary(sample_lines, until=to_micros(parse_timestamp(END)))
    summary = with_outranked(reference, "welcome_back", 7)
    assert summary["counts"]["decisions"] > 0 and summary["counts"]["dead_letters"] > 0
    answer: list[dict[str, Any] | int] = [summary]

    with PageServer(lambda: answer[0]) as server, chromium(tmp_path) as driver:
        got = open_dashboard(driver, server.url)
        for chart in ("ttsp", "triggers", "decisions", "lifecycle", "dead-letters", "cohorts"):
            assert got[chart]["state"] == "ready", (chart, got[chart])
            assert any(m["value"] > 0 for m in got[chart]["marks"]), chart
        assert got["suppression"]["state"] == "ready"
        assert_page_matches(driver, summary)
        # Decisions by rule: each rule by name, its counts per outcome, outranked included.
        by_rule = driver.execute_script(READ_RULE_CELLS)
        delivered = sum(
            r["count"]
            for r in summary["decisions"]
            if (r["rule"], r["outcome"]) == ("second_purchase", "delivered")
        )
        assert delivered > 0
        first = by_rule["second_purchase"]
        assert first["name"] == "Second purchase (second_purchase)"
        assert first["cells"]["delivered"] == [delivered, f"{delivered:,}"]
        assert first["cells"]["outranked"] == [0, "0"]
        assert by_rule["welcome_back"]["cells"]["outranked"] == [7, "7"]
        assert by_rule["welcome_back"]["cells"]["total"] == [7, "7"]
        assert_refreshes(driver)
        assert_no_console_errors(driver)
        assert driver.find_element("id", "banner").get_attribute("hidden") is not None

        # The worker stops answering: a banner says so, the last numbers stay.
        answer[0] = 503
        banner = driver.find_element("id", "banner")
        wait_until("the error banner", banner.is_displayed, 10)
        assert "HTTP 503" in banner.text and "Trying again every 1 s" in banner.text
        assert charts(driver)["ttsp"]["state"] == "ready"
        # Chromium itself logs each failed request; the page adds nothing of its own.
        assert all("503" in e["message"] for e in console_errors(driver))

        answer[0] = summary
        wait_until("the banner to go", lambda: not banner.is_displayed(), 10)
        assert_page_matches(driver, summary)
        assert_no_console_errors(driver)
        print(f"\nscreenshot: {save_screenshot(driver, 'dashboard-reference.png')}")


def test_page_with_no_data_shows_empty_states(tmp_path: Path) -> None:
    require_browser()
    summary = reference_summary([], until=to_micros(parse_timestamp(END)))
    with PageServer(lambda: summary) as server, chromium(tmp_path) as driver:
        got = open_dashboard(driver, server.url, refresh=2)
        for chart in (
            "ttsp",
            "triggers",
            "decisions",
            "rules",
            "versions",
            "lifecycle",
            "dead-letters",
            "lift",
        ):
            assert got[chart]["state"] == "empty", (chart, got[chart])
            assert "No data yet" in got[chart]["text"] or "No dead letters" in got[chart]["text"]
        assert metrics(driver)["customers"]["text"] == "0"
        assert_no_console_errors(driver)


READ_VERSION_CELLS = """
const out = [];
for (const tr of document.querySelectorAll('[data-table="versions"] tbody tr')) {
  const cells = {};
  for (const td of tr.querySelectorAll('td')) {
    cells[td.dataset.key] = [td.dataset.value, td.textContent];
  }
  out.push({rule: tr.dataset.rule, version: tr.dataset.version, cells});
}
return out;
"""


def test_page_shows_decisions_by_rule_and_version(
    tmp_path: Path, sample_lines: list[bytes]
) -> None:
    """After a rules change (docs/operations.md "Changing rules live") each version of
    a rule is a row: its delivered decisions and the steps it superseded."""
    require_browser()
    summary = reference_summary(sample_lines, until=to_micros(parse_timestamp(END)))
    for r in summary["decisions_by_version"]:
        r["rule_version"] = r["rule_version"] or "1c0ffee0"  # the version before the change
    old = next(r for r in summary["decisions_by_version"] if r["rule"] == "second_purchase")
    extra = [
        {
            "rule": "second_purchase",
            "rule_version": "5f3a9c21",
            "outcome": "delivered",
            "count": 11,
        },
        {
            "rule": "second_purchase",
            "rule_version": "5f3a9c21",
            "outcome": "superseded",
            "count": 4,
        },
    ]
    summary["decisions_by_version"] += extra
    summary["decisions"] += [
        {"rule": "second_purchase", "step": 1, "outcome": "delivered", "count": 11},
        {"rule": "second_purchase", "step": 2, "outcome": "superseded", "count": 4},
    ]
    summary["counts"]["decisions"] += 15
    with PageServer(lambda: summary) as server, chromium(tmp_path) as driver:
        open_dashboard(driver, server.url)
        rows = driver.execute_script(READ_VERSION_CELLS)
        second = {r["version"]: r["cells"] for r in rows if r["rule"] == "second_purchase"}
        assert set(second) == {old["rule_version"], "5f3a9c21"}
        new = second["5f3a9c21"]
        assert new["rule_version"] == ["5f3a9c21", "5f3a9c21"]
        assert new["delivered"] == ["11", "11"]
        assert new["superseded"] == ["4", "4"]
        assert new["total"] == ["15", "15"]
        assert second[old["rule_version"]]["superseded"] == ["0", "0"]
        assert "Superseded (rules changed)" in charts(driver)["versions"]["text"]
        assert_no_console_errors(driver)
        print(f"\nscreenshot: {save_screenshot(driver, 'dashboard-versions.png')}")


READ_SEND_WINDOWS = """
const fig = document.querySelector('[data-chart="send-windows"]');
const rows = {};
for (const tr of fig.querySelectorAll('[data-table="send-windows"] tbody tr')) {
  const cells = {};
  for (const td of tr.querySelectorAll('td')) cells[td.dataset.key] = Number(td.dataset.value);
  rows[tr.dataset.rule] = cells;
}
const bars = [...fig.querySelectorAll('rect.bar')].map(
  r => [r.dataset.rule, Number(r.dataset.hour), Number(r.dataset.value)]);
const heads = document.querySelectorAll('[data-table="rules"] thead th');
return {hidden: fig.hidden, state: fig.dataset.state, rows, bars,
        columns: [...heads].map(t => t.textContent)};
"""


def test_page_shows_send_windows_only_when_a_rule_has_one(
    tmp_path: Path, sample_lines: list[bytes]
) -> None:
    """The send-window panel (docs/send-windows.md "Outputs"): nudges by the customer's
    local send hour, stacked by rule, and per rule the deferrals, drops and
    cancellations; hidden, with no window columns anywhere, while no rule has one."""
    require_browser()
    plain = reference_summary(sample_lines, until=to_micros(parse_timestamp(END)))
    windowed = json.loads(json.dumps(plain))
    hours = [0] * 24
    hours[9], hours[19] = 7, 2
    windowed["send_windows"] = [
        {
            "rule": "second_purchase",
            "deferred": 5,
            "outside_window": 3,
            "cancelled": 1,
            "delivered_by_local_hour": hours,
        }
    ]
    windowed["decisions"] += [
        {"rule": "second_purchase", "step": 1, "outcome": "outside_window", "count": 3},
        {"rule": "second_purchase", "step": 1, "outcome": "cancelled", "count": 1},
    ]
    shown = [plain]
    with PageServer(lambda: shown[0]) as server, chromium(tmp_path) as driver:
        open_dashboard(driver, server.url, refresh=1)
        before = driver.execute_script(READ_SEND_WINDOWS)
        assert before["hidden"] is True
        assert "Outside send window" not in before["columns"]
        shown[0] = windowed
        got = wait_until(
            "the send-window panel",
            lambda: (r := driver.execute_script(READ_SEND_WINDOWS))["state"] == "ready" and r,
        )
        assert got["hidden"] is False
        assert got["rows"] == {
            "second_purchase": {"deferred": 5, "outside_window": 3, "cancelled": 1}
        }
        assert sorted(got["bars"]) == [["second_purchase", 9, 7], ["second_purchase", 19, 2]]
        assert {"Outside send window", "Cancelled before its window"} <= set(got["columns"])
        assert_no_console_errors(driver)
        print(f"\nscreenshot: {save_screenshot(driver, 'dashboard-send-windows.png')}")


READ_P_ALIVE = """
const fig = document.querySelector('[data-chart="p-alive"]');
const bars = [...fig.querySelectorAll('rect.bar')].map(
  r => [r.dataset.key, Number(r.dataset.value)]);
const rows = [...fig.querySelectorAll('details.as-table tbody tr')].map(
  tr => [...tr.querySelectorAll('th, td')].map(c => c.textContent));
return {hidden: fig.hidden, state: fig.dataset.state, total: fig.dataset.total, bars, rows};
"""


def test_page_shows_the_p_alive_distribution_only_with_a_model(
    tmp_path: Path, sample_lines: list[bytes]
) -> None:
    """The P(alive) panel (docs/reports.md "P(alive)"): the buyers in each tenth of
    P(alive) per model version; hidden while the rules have no [model]."""
    require_browser()
    plain = reference_summary(sample_lines, until=to_micros(parse_timestamp(END)))
    scored = json.loads(json.dumps(plain))
    deciles = [1, 0, 2, 3, 0, 5, 8, 13, 21, 34]
    scored["report"]["p_alive"] = [
        {
            "model_version": "3f2a9c1b7d4e",
            "kind": "bgnbd",
            "customers": 87,
            "deciles": [0] * 9 + [87],
        },
        {"model_version": "3f2a9c1b7d4e", "kind": "mbgnbd", "customers": 87, "deciles": deciles},
    ]
    shown = [plain]
    with PageServer(lambda: shown[0]) as server, chromium(tmp_path) as driver:
        open_dashboard(driver, server.url, refresh=1)
        assert driver.execute_script(READ_P_ALIVE)["hidden"] is True
        shown[0] = scored
        got = wait_until(
            "the P(alive) panel",
            lambda: (r := driver.execute_script(READ_P_ALIVE))["state"] == "ready" and r,
        )
        assert got["hidden"] is False and got["total"] == "87"
        # The chart is MBG/NBD's; the table lists both kinds.
        assert got["bars"] == [[f"3f2a9c1b7d4e:mbgnbd:{i}", n] for i, n in enumerate(deciles)]
        assert [r[:3] for r in got["rows"]] == [
            ["3f2a9c1b7d4e", "bgnbd", "87"],
            ["3f2a9c1b7d4e", "mbgnbd", "87"],
        ]
        assert got["rows"][1][3:] == [str(n) for n in deciles]
        assert_no_console_errors(driver)


READ_PANEL = """
const fig = document.querySelector(`[data-chart="${arguments[0]}"]`);
const bars = [...fig.querySelectorAll('rect.bar')].map(
  r => [r.dataset.key, Number(r.dataset.value)]);
const rows = [...fig.querySelectorAll('details.as-table tbody tr')].map(
  tr => [...tr.querySelectorAll('th, td')].map(c => c.textContent));
return {hidden: fig.hidden, state: fig.dataset.state, total: fig.dataset.total, bars, rows};
"""
LIFECYCLE_PANELS = ("funnel", "recovered", "cancellations")


def test_page_shows_the_funnel_recovered_revenue_and_cancellations_only_with_their_inputs(
    tmp_path: Path, sample_lines: list[bytes]
) -> None:
    """The lifecycle's panels (docs/reports.md "Funnel", "Recovered revenue",
    "Cancellations"): hidden while the report has no such block, drawn from it when
    it has."""
    require_browser()
    plain = reference_summary(sample_lines, until=to_micros(parse_timestamp(END)))
    full = json.loads(json.dumps(plain))
    full["report"]["funnel"] = [
        {
            "cohort": "2026-09",
            "customers": 40,
            "carts": 20,
            "checkouts": 8,
            "orders": 5,
            "rates": {"carts": 0.5, "checkouts": 0.2, "orders": 0.125},
        },
        {
            "cohort": "2026-10",
            "customers": 10,
            "carts": 4,
            "checkouts": 1,
            "orders": 1,
            "rates": {"carts": 0.4, "checkouts": 0.1, "orders": 0.1},
        },
    ]
    full["report"]["recovered_revenue"] = [
        {
            "rule": "cart_abandonment",
            "delivered": {
                "customers": 90,
                "revenue": {"EUR": "1800.00"},
                "per_customer": {"EUR": 20.0},
            },
            "holdout": {"customers": 10, "revenue": {"EUR": "80.00"}, "per_customer": {"EUR": 8.0}},
        }
    ]
    full["report"]["cancellations"] = {
        "placed": 200,
        "full": 6,
        "partial": 4,
        "rate": 0.03,
        "partial_rate": 0.02,
        "refunded": {"EUR": "321.50"},
    }
    shown = [plain]
    with PageServer(lambda: shown[0]) as server, chromium(tmp_path) as driver:
        open_dashboard(driver, server.url, refresh=1)
        for name in LIFECYCLE_PANELS:
            assert driver.execute_script(READ_PANEL, name)["hidden"] is True, name
        shown[0] = full
        got = {
            name: wait_until(
                f"the {name} panel",
                lambda name=name: (
                    (r := driver.execute_script(READ_PANEL, name))["state"] == "ready" and r
                ),
            )
            for name in LIFECYCLE_PANELS
        }
        assert not any(g["hidden"] for g in got.values())
        assert got["funnel"]["bars"] == [
            ["customers", 50],
            ["carts", 24],
            ["checkouts", 9],
            ["orders", 6],
        ]
        assert got["funnel"]["rows"][0] == ["2026-09", "40", "20 (50.0%)", "8 (20.0%)", "5 (12.5%)"]
        assert got["recovered"]["bars"] == [
            ["cart_abandonment:delivered:EUR", 20],
            ["cart_abandonment:holdout:EUR", 8],
        ]
        assert got["recovered"]["rows"][0][1:4] == ["delivered", "90", "EUR 1800.00"]
        assert got["cancellations"]["bars"] == [["placed", 200], ["full", 6], ["partial", 4]]
        assert ["Refunded", "EUR 321.50"] in got["cancellations"]["rows"]
        save_screenshot(driver, "dashboard-lifecycle")
        assert_no_console_errors(driver)


# --- against a real worker fed with a sample ---------------------------------------------------


def fetch_summary(base: str, scope: str = "cluster") -> dict[str, Any]:
    """The summary the page shows (the cluster's, by default)."""
    with urllib.request.urlopen(f"{base}/retention/summary?scope={scope}", timeout=10) as resp:
        body: dict[str, Any] = json.loads(resp.read())
        return body


def summary_when_settled(
    base: str, timeout: float = 60.0, scope: str = "cluster"
) -> dict[str, Any]:
    """The worker's summary once two reads a few seconds apart agree on the numbers."""

    def stable_part(s: dict[str, Any]) -> dict[str, Any]:
        skip = ("generated_at", "read_model", "freshness")
        return {k: v for k, v in s.items() if k not in skip}

    previous: dict[str, Any] | None = None

    def settled() -> dict[str, Any] | None:
        nonlocal previous
        try:
            current = fetch_summary(base, scope)
        except OSError:
            return None
        same = previous is not None and stable_part(previous) == stable_part(current)
        previous = current
        return current if same and current["counts"]["decisions"] > 0 else None

    result: dict[str, Any] = wait_until("a settled /retention/summary", settled, timeout)
    return result


def eventually_matches(driver: Any, base: str, tries: int = 5) -> None:
    for attempt in range(tries):
        try:
            assert_page_matches(driver, fetch_summary(base))
            return
        except AssertionError:
            if attempt == tries - 1:
                raise
            time.sleep(2.5)


@pytest.mark.integration
async def test_dashboard_of_a_worker_fed_with_a_sample(
    deployment: Deployment,
    sample_lines: list[bytes],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    require_browser()
    until = to_micros(parse_timestamp(END))
    reference = compute_decisions(sample_lines, Config(), until=until)
    worker = deployment.start_worker()
    await deployment.produce(sample_lines, until=END)
    await deployment.wait_idle(timeout=300)
    assert worker.alive, worker.log_tail()
    base = f"http://127.0.0.1:{worker.web_port}"
    summary = await asyncio.to_thread(summary_when_settled, base)
    assert summary["counts"]["customers"] == reference.customers

    with chromium(tmp_path) as driver:
        got = open_dashboard(driver, base, refresh=2)
        # The charts have data: histogram bars, points over time, stages, reasons.
        assert got["ttsp"]["state"] == "ready", got["ttsp"]
        assert sum(m["value"] for m in got["ttsp"]["marks"]) > 0
        assert got["triggers"]["state"] == "ready" and got["triggers"]["marks"], got["triggers"]
        assert got["lifecycle"]["state"] == "ready" and got["lifecycle"]["total"] > 0
        assert got["suppression"]["state"] == "ready" and got["suppression"]["marks"]
        assert got["decisions"]["state"] == "ready"
        # The page shows what the worker's summary says (read again after the page did;
        # a refresh may land in between, so a few tries).
        eventually_matches(driver, base)
        shown = metrics(driver)["customers"]["text"]
        assert shown == f"{reference.customers:,}"
        assert_refreshes(driver)
        assert_no_console_errors(driver)
        assert driver.find_element("id", "banner").get_attribute("hidden") is not None
        path = save_screenshot(driver, "dashboard.png")
        record_property("screenshot", str(path))
        print(f"\nscreenshot: {path}")


async def two_ready_workers(dep: Deployment) -> list[WorkerProcess]:
    workers = [dep.start_worker(), dep.start_worker()]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        owned: list[list[int]] = []
        for w in workers:
            status, _, body = await w.get("/health/ready", timeout=2)
            owned.append(json.loads(body)["partitions"] if status == 200 else [])
        if all(owned) and sorted(p for ps in owned for p in ps) == [0, 1, 2, 3]:
            return workers
        for w in workers:
            assert w.alive, w.log_tail()
        await asyncio.sleep(1)
    raise AssertionError("the two workers never shared the four partitions")


@pytest.mark.integration
@pytest.mark.timeout(600)
async def test_cluster_summary_of_two_workers_equals_the_reference_and_the_page_shows_it(
    deployment: Deployment,
    sample_lines: list[bytes],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    require_browser()
    until = to_micros(parse_timestamp(END))
    config = Config()
    reference = compute_decisions(sample_lines, config, until=until)
    assert reference.until == until
    expected = build_report(reference.rows, as_of=until, settings=config.report)
    w1, w2 = await two_ready_workers(deployment)
    await deployment.produce(sample_lines, until=END)
    await deployment.wait_idle(timeout=300)
    bases = [w.web_url for w in (w1, w2)]

    # Each worker alone shows its share; the cluster summary is the whole, from either.
    local = [await asyncio.to_thread(summary_when_settled, b, 60, "local") for b in bases]
    assert [s["scope"]["all_partitions"] for s in local] == [False, False]
    assert sum(s["counts"]["customers"] for s in local) == reference.customers
    cluster = [await asyncio.to_thread(summary_when_settled, b) for b in bases]
    for s in cluster:
        scope = s["scope"]
        assert scope["scope"] == "cluster" and scope["all_partitions"] is True
        assert scope["missing_partitions"] == []
        assert sorted(w["url"] for w in scope["workers"]) == sorted(bases)
        assert all(w["answered"] and w["error"] is None for w in scope["workers"])
        # Exactly the offline reference's report: medians and percentiles included.
        assert s["report"] == expected
        assert s["counts"]["customers"] == reference.customers
        assert s["counts"]["decisions"] == sum(x["counts"]["decisions"] for x in local)
        assert s["counts"]["decisions"] == len(reference.decisions)
        assert s["freshness"]["age_seconds"] >= 0
    assert expected["ttsp"]["overall"]["median_days"] is not None

    with chromium(tmp_path) as driver:
        open_dashboard(driver, bases[0], refresh=2)
        eventually_matches(driver, bases[0])
        assert metrics(driver)["customers"]["text"] == f"{reference.customers:,}"
        scope_text = driver.find_element("id", "scope").text
        assert "2 of 2 workers" in scope_text and "(all of them)" in scope_text, scope_text
        assert "old" in driver.find_element("id", "built").text
        assert driver.find_element("id", "banner").get_attribute("hidden") is not None
        assert_no_console_errors(driver)
        path = save_screenshot(driver, "dashboard-cluster.png")
        record_property("screenshot", str(path))
        print(f"\nscreenshot: {path}")

        # The second worker freezes: the summary says so and leaves its customers out.
        assert w2.proc is not None
        os.killpg(w2.proc.pid, signal.SIGSTOP)
        try:
            gone = set(local[1]["scope"]["partitions"])

            def marked() -> dict[str, Any] | None:
                s = fetch_summary(bases[0])
                return s if not s["scope"]["all_partitions"] else None

            partial = await asyncio.to_thread(wait_until, "w2 marked as not answering", marked)
            assert set(partial["scope"]["missing_partitions"]) == gone
            (silent,) = [w for w in partial["scope"]["workers"] if not w["answered"]]
            assert silent["url"] == bases[1] and "no answer within" in silent["error"]
            assert partial["counts"]["customers"] == local[0]["counts"]["customers"]
            banner = driver.find_element("id", "banner")
            await asyncio.to_thread(wait_until, "the missing-worker banner", banner.is_displayed)
            assert "Not every worker answered" in banner.text and bases[1] in banner.text
            assert "1 of 2 workers" in driver.find_element("id", "scope").text
        finally:
            os.killpg(w2.proc.pid, signal.SIGCONT)
