"""`retention report --from-file`: the offline report and the decision list the e2e tests use."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.core import ids
from agents.core.reports import CustomerRow, build_report
from agents.core.settings import DAY, CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import iso, to_micros
from agents.offline.reference import compute_decisions
from streams.cli import main
from streams.config import load_config
from streams.feed.sample import generate
from streams.ops import reporting
from streams.ops.tables import TableSnapshot

T0 = to_micros(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No stack file or RETENTION_* setting from the developer's shell leaks in.
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith("RETENTION_") and name != "RETENTION_HOME":
            monkeypatch.delenv(name)


def event(schema: str, event_id: str, customer: str, t: int, **extra: Any) -> bytes:
    body = {"schema": schema, "event_id": event_id, "customer_id": customer, "occurred_at": iso(t)}
    return orjson.dumps({**body, **extra})


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    order = {"order_id": "o1", "amount": "25.00", "currency": "EUR"}
    lines = [
        event("purchase/1", "p1", "alice", T0, **order),
        event("purchase/1", "p1", "alice", T0, **order),  # duplicate
        event("purchase/1", "p2", "bob", T0, **order),
        event("purchase/1", "p3", "bob", T0 + 10 * DAY, order_id="o2", amount=5, currency="EUR"),
        event("session/1", "s1", "carol", T0 + 3 * DAY, session_id="x"),
        b"{not json",
        b"",
        event("session/1", "s2", "carol", T0 + 15 * DAY, session_id="y"),
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["report", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def decisions_json(
    capsys: pytest.CaptureFixture[str], events_file: Path, *args: str
) -> tuple[int, str]:
    """``retention report --from-file FILE --decisions --format json ARGS``: code, stdout."""
    code, out, _ = report(
        capsys, "--from-file", str(events_file), "--decisions", "--format", "json", *args
    )
    return code, out


def test_decisions_as_json_are_the_references_list(
    events_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = decisions_json(capsys, events_file)
    assert code == 0
    decisions = json.loads(out)
    # until defaults to the latest valid event: carol's session at T0 + 15 days.
    assert [(d["customer_id"], d["rule"], d["step"], d["due_at"]) for d in decisions] == [
        ("alice", "second_purchase", 1, iso(T0 + 7 * DAY)),
        ("bob", "second_purchase", 1, iso(T0 + 7 * DAY)),
        ("alice", "second_purchase", 2, iso(T0 + 14 * DAY)),
        ("alice", "inactivity", 1, iso(T0 + 14 * DAY)),
    ]
    assert decisions[0] == {
        "customer_id": "alice",
        "rule": "second_purchase",
        "step": 1,
        "threshold": "P7D",
        "threshold_seconds": 604800,
        "anchor_at": iso(T0),
        "due_at": iso(T0 + 7 * DAY),
        "trigger_id": ids.trigger_id("alice", "second_purchase", 1, T0),
        "delivered": True,
        "outcome": "delivered",
        "holdout": False,
    }
    expected = compute_decisions(events_file.read_bytes().splitlines(), CoreSettings())
    assert decisions == expected.decisions
    assert out.count("\n") == len(decisions) + 2  # one decision per line between [ and ]


def test_until_moves_the_horizon(events_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = decisions_json(capsys, events_file, "--until", iso(T0 + 30 * DAY))
    assert code == 0
    steps = {(d["customer_id"], d["rule"], d["step"]) for d in json.loads(out)}
    assert ("alice", "second_purchase", 3) in steps
    assert ("bob", "inactivity", 1) in steps  # anchored at bob's second order, due T0 + 24d
    code, out = decisions_json(capsys, events_file, "--until", "2026-03-01")
    assert (code, json.loads(out)) == (0, [])


def test_summary_as_json(events_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = report(capsys, "--from-file", str(events_file), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["until"] == iso(T0 + 15 * DAY)
    assert (data["lines"], data["events"], data["duplicates"], data["order_retries"]) == (
        7,
        5,
        1,
        0,
    )
    assert data["dead_letters"] == {"total": 1, "by_code": {"invalid_json": 1}}
    assert (data["customers"], data["customers_with_orders"]) == (3, 2)
    assert data["decisions"]["total"] == 4
    by_step = {
        (r["rule"], r["step"]): (r["threshold"], r["count"])
        for r in data["decisions"]["by_rule_step"]
    }
    assert by_step == {
        ("second_purchase", 1): ("P7D", 2),
        ("second_purchase", 2): ("P14D", 1),
        ("second_purchase", 3): ("P30D", 0),
        ("inactivity", 1): ("P14D", 1),
        ("inactivity", 2): ("P30D", 0),
        ("inactivity", 3): ("P60D", 0),
        ("overdue", 1): ("max(P7D, 2x median gap)", 0),
    }


def test_summary_as_a_table(events_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = report(capsys, "--from-file", str(events_file))
    assert code == 0
    assert "dead letters" in out and "invalid_json" in out
    rows = [line.split() for line in out.splitlines()]
    assert ["second_purchase", "1", "P7D", "2"] in rows


def test_decisions_as_a_table(events_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = report(capsys, "--from-file", str(events_file), "--decisions")
    assert code == 0
    assert out.splitlines()[0].split() == [
        "due_at",
        "customer_id",
        "rule",
        "step",
        "threshold",
        "anchor_at",
        "outcome",
    ]
    assert out.rstrip().endswith("4 decisions")


def test_a_customer_id_with_terminal_escapes_is_printed_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An OSC 52 sequence (writes the clipboard) and an ANSI colour in a customer id.
    hostile = "evil\x1b]52;c;aGk=\x07\x1b[31mred\u202e"
    path = tmp_path / "hostile.jsonl"
    order = {"order_id": "o1", "amount": "25.00", "currency": "EUR"}
    path.write_bytes(event("purchase/1", "p1", hostile, T0, **order) + b"\n")
    code, out, _ = report(
        capsys, "--from-file", str(path), "--decisions", "--until", iso(T0 + 40 * DAY)
    )
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "evil\\x1b]52;c;aGk=\\x07\\x1b[31mred\\u202e" in out
    assert out.rstrip().endswith("5 decisions")


def test_a_live_report_as_of_an_instant_the_tables_have_passed_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The tables hold the state now: as of an earlier instant they would still
    # count the cohorts and orders that came after it.
    state = CustomerState(customer_id="late-buyer", partition=0, version=1)
    state.orders, state.first_order_at = 1, T0
    state.last_order_at = state.last_activity_at = T0

    async def table(config: object) -> TableSnapshot:
        return TableSnapshot(customers={"late-buyer": state}, records=1)

    monkeypatch.setattr(reporting, "read_table", table)
    before = iso(T0 - 40 * DAY)
    code, out, err = report(capsys, "--as-of", before, "--format", "json")
    assert code == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith(f"retention: --as-of {before} is before the tables' clock")
    assert "--from-file" in line
    # Now or later: the cohort of the one buyer, as before.
    code, out, _ = report(capsys, "--as-of", "2999-01-01", "--format", "json")
    assert code == 0
    cohorts = orjson.loads(out)["report"]["ttsp"]["cohorts"]
    assert [c["cohort"] for c in cohorts] == ["2026-03"]


def test_settings_come_from_the_environment(
    events_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_SECOND_PURCHASE_STEPS", "P3D")
    monkeypatch.setenv("RETENTION_BACKFILL_UNTIL", iso(T0 + 4 * DAY))
    code, out = decisions_json(capsys, events_file)
    assert code == 0
    # Both P3D steps fall before the cut-over; only alice's inactivity step is left.
    assert [(d["customer_id"], d["rule"], d["threshold"]) for d in json.loads(out)] == [
        ("alice", "inactivity", "P14D")
    ]


def test_bad_setting_is_a_configuration_error(
    events_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_INACTIVITY_STEPS", "fortnightly")
    code, _, err = report(capsys, "--from-file", str(events_file))
    assert code == 2
    assert "RETENTION_INACTIVITY_STEPS" in err


def test_now_decides_what_is_from_the_future(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "future.jsonl"
    path.write_bytes(event("session/1", "s", "x", T0 + 3 * DAY, session_id="s") + b"\n")
    _, out, _ = report(capsys, "--from-file", str(path), "--format", "json", "--now", iso(T0))
    assert json.loads(out)["dead_letters"]["by_code"] == {"future_timestamp": 1}
    _, out, _ = report(capsys, "--from-file", str(path), "--format", "json")
    assert json.loads(out)["events"] == 1


def test_a_generated_sample_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    end = to_micros(datetime(2026, 3, 1, tzinfo=UTC))
    path = tmp_path / "sample.jsonl"
    assert (
        main(
            [
                "sample",
                "--customers",
                "300",
                "--days",
                "120",
                "--end",
                "2026-03-01",
                "--out",
                str(path),
            ]
        )
        == 0
    )
    code, out, _ = report(capsys, "--from-file", str(path), "--format", "json")
    assert code == 0
    data = json.loads(out)
    lines = list(generate(300, 120, seed=1, end=end))
    reference = compute_decisions(lines, CoreSettings())
    assert data["lines"] == len(lines)
    assert data["decisions"]["total"] == len(reference.decisions) > 0
    assert data["dead_letters"]["by_code"] == reference.dead_letters
    assert data["customers"] == 300


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--decisions"], "--decisions needs --from-file"),
        (["--from-file", "/no/such/file.jsonl"], "no such file"),
        (["--from-file", "-", "--until", "soon"], "--until"),
        (["--from-file", "-", "--until", "2026-03-01T00:00:00"], "UTC offset"),
        (["--from-file", "-", "--now", "x"], "--now"),
    ],
)
def test_clear_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = report(capsys, *args)
    assert code == 2
    assert out == ""
    assert message in err and err.startswith("retention: ")


MODEL_TABLE = """
[model]
version = "3f2a9c1b7d4e"
time_unit = "week"
mbgnbd = { r = 0.5248, alpha = 6.183, a = 0.8914, b = 1.614 }
"""


def test_a_live_report_under_rules_with_a_model_shows_the_p_alive_distribution(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # docs/reports.md "P(alive)": the configured rules' model scores every buyer at
    # the report time; a one-time buyer gone a year falls in a low tenth, a regular
    # one just back in a high one.
    from agents.core.prediction import NbdParams, p_alive
    from agents.core.rules import default_text
    from agents.core.rules.check import TOP_KEYS
    from tests.unit.agents.factories import purchase

    if "model" not in TOP_KEYS:
        pytest.skip("the rules file's [model] table is parsed by the churn_risk engine work")
    regular, gone = CustomerState("regular", partition=0), CustomerState("gone", partition=0)
    for week in range(0, 52, 2):
        regular.apply(purchase("regular", T0 + week * 7 * DAY))
    gone.apply(purchase("gone", T0))
    as_of = T0 + 52 * 7 * DAY

    async def table(config: object) -> TableSnapshot:
        return TableSnapshot(customers={"regular": regular, "gone": gone}, records=2)

    monkeypatch.setattr(reporting, "read_table", table)
    rules = tmp_path / "rules.toml"
    rules.write_text(default_text() + MODEL_TABLE)
    monkeypatch.setenv("RETENTION_RULES_FILE", str(rules))
    for name in [n for n in os.environ if n.startswith("RETENTION_HOLDOUT")]:
        monkeypatch.delenv(name)
    code, out, err = report(capsys, "--as-of", iso(as_of), "--format", "json")
    assert code == 0, err
    (block,) = orjson.loads(out)["report"]["p_alive"]
    assert (block["model_version"], block["kind"], block["customers"]) == (
        "3f2a9c1b7d4e",
        "mbgnbd",
        2,
    )
    low, high = block["deciles"].index(1), 9 - block["deciles"][::-1].index(1)
    mbg = NbdParams("mbgnbd", r=0.5248, alpha=6.183, a=0.8914, b=1.614)
    assert low == int(p_alive(mbg, 0, 0.0, 52.0) * 10) == 3  # 0.36
    assert high >= 8


def test_an_offline_report_under_rules_with_a_model_shows_the_live_reports_p_alive(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # docs/reports.md "P(alive)": `report --from-file` scores the buyers of the
    # history as the live report scores the rows: the same tenths for the same orders.
    from agents.core.rules import default_text
    from tests.unit.agents.factories import purchase

    # A year before T0: the history must lie before the processor's clock (now).
    start = T0 - 400 * DAY
    regular, gone = CustomerState("regular", partition=0), CustomerState("gone", partition=0)
    lines = []
    for week in range(0, 52, 2):
        t = start + week * 7 * DAY
        regular.apply(purchase("regular", t))
        lines.append(
            event(
                "purchase/1",
                f"r{week}",
                "regular",
                t,
                order_id=f"r{week}",
                amount=9,
                currency="EUR",
            )
        )
    gone.apply(purchase("gone", start))
    lines.append(event("purchase/1", "g0", "gone", start, order_id="g0", amount=9, currency="EUR"))
    history = tmp_path / "history.jsonl"
    history.write_bytes(b"\n".join(lines) + b"\n")
    as_of = start + 52 * 7 * DAY

    rules = tmp_path / "rules.toml"
    rules.write_text(default_text() + MODEL_TABLE)
    monkeypatch.setenv("RETENTION_RULES_FILE", str(rules))
    for name in [n for n in os.environ if n.startswith("RETENTION_HOLDOUT")]:
        monkeypatch.delenv(name)
    # What the live report computes from these rows (streams.ops.reporting.live_report,
    # which refuses an instant before the tables' clock, now).
    model = load_config().core.rule_set.model
    states = [regular, gone]
    live = build_report(
        [CustomerRow.from_state(s) for s in states],
        as_of=as_of,
        model=model,
        score_inputs=reporting._score_inputs(states),
    )["p_alive"]
    code, out, err = report(
        capsys, "--from-file", str(history), "--as-of", iso(as_of), "--format", "json"
    )
    assert code == 0, err
    offline = orjson.loads(out)["report"]["p_alive"]
    assert offline == live
    assert sum(live[0]["deciles"]) == 2
    assert live[0]["deciles"][9] == 1  # the regular buyer, in the top tenth
