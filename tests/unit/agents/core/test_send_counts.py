"""The send-window counts the reports read (docs/send-windows.md "Outputs"): per rule,
the firings that waited for their window and the delivered ones by the customer's
local send hour; kept in the row under "sc" only once there is one; summed into the
report's ``send_windows`` block the same way from rows and from workers' parts."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from agents.core.report_merge import ReportInputs, merge_report
from agents.core.report_text import render_report
from agents.core.reports import CustomerRow, build_report
from agents.core.send_counts import count_send, local_hour
from agents.core.state import CountKey, CustomerState
from agents.core.timeutil import to_micros

AS_OF = to_micros(datetime(2026, 4, 1, tzinfo=UTC))
DUE = to_micros(datetime(2026, 3, 28, 22, 30, tzinfo=UTC))
# 09:00 in Berlin on the day the clocks go forward (07:00 UTC), 09:00 in New York.
BERLIN_NINE = to_micros(datetime(2026, 3, 29, 7, 0, tzinfo=UTC))
NEW_YORK_NINE = to_micros(datetime(2026, 3, 30, 13, 0, tzinfo=UTC))


def test_the_local_hour_is_the_customers_across_dst_and_odd_offsets() -> None:
    assert local_hour(BERLIN_NINE, "Europe/Berlin") == 9
    assert local_hour(BERLIN_NINE - 1, "Europe/Berlin") == 8
    assert local_hour(NEW_YORK_NINE, "America/New_York") == 9
    # 12:45 in Kathmandu (+05:45), 18:00 on Lord Howe (+11:00 in summer time).
    assert local_hour(BERLIN_NINE, "Asia/Kathmandu") == 12
    assert local_hour(BERLIN_NINE, "Australia/Lord_Howe") == 18


def counted(*firings: dict[str, object]) -> dict[str, list[int]]:
    counts: dict[str, list[int]] = {}
    for f in firings:
        count_send(counts, **f)  # type: ignore[arg-type]
    return counts


def test_a_deferral_counts_whatever_its_outcome_and_a_delivery_by_its_hour() -> None:
    deferred = {"rule": "winback", "due_at": DUE, "send_at": BERLIN_NINE, "zone": "Europe/Berlin"}
    counts = counted(
        deferred | {"outcome": "delivered"},
        deferred | {"outcome": "cancelled"},
        # Inside its window: sent at its due time, not a deferral.
        {
            "rule": "winback",
            "outcome": "delivered",
            "due_at": NEW_YORK_NINE,
            "send_at": NEW_YORK_NINE,
            "zone": "America/New_York",
        },
        # Dropped outside the window: counted by its outcome, not here.
        {
            "rule": "winback",
            "outcome": "outside_window",
            "due_at": DUE,
            "send_at": None,
            "zone": "Europe/Berlin",
        },
        # No window: nothing.
        {
            "rule": "second_purchase",
            "outcome": "delivered",
            "due_at": DUE,
            "send_at": None,
            "zone": None,
        },
    )
    hours = [0] * 24
    hours[9] = 2
    assert counts == {"winback": [2, *hours]}


def test_the_row_keeps_them_only_once_there_are_some() -> None:
    state = CustomerState(customer_id="cus_a", partition=0)
    assert "sc" not in state.to_dict()  # rows without windows are unchanged
    count_send(
        state.send_counts,
        rule="winback",
        outcome="delivered",
        due_at=DUE,
        send_at=BERLIN_NINE,
        zone="Europe/Berlin",
    )
    row = orjson.loads(orjson.dumps(state.to_dict()))
    assert row["sc"]["winback"][0] == 1 and row["sc"]["winback"][1 + 9] == 1
    assert CustomerState.from_dict(row).send_counts == state.send_counts


def rows() -> list[CustomerRow]:
    hours_a, hours_b = [0] * 24, [0] * 24
    hours_a[9], hours_b[9], hours_b[19] = 3, 1, 2
    return [
        CustomerRow(
            customer_id="a",
            decision_counts={
                CountKey("winback", 1, "delivered"): 3,
                CountKey("winback", 1, "outside_window"): 2,
            },
            send_counts={"winback": [1, *hours_a]},
        ),
        CustomerRow(
            customer_id="b",
            decision_counts={
                CountKey("winback", 2, "delivered"): 3,
                CountKey("winback", 2, "cancelled"): 1,
                CountKey("second_purchase", 1, "delivered"): 4,
            },
            send_counts={"winback": [4, *hours_b]},
        ),
    ]


def test_the_report_shows_waits_drops_cancellations_and_local_send_hours_per_rule() -> None:
    report = build_report(rows(), as_of=AS_OF)
    hours = [0] * 24
    hours[9], hours[19] = 4, 2
    assert report["send_windows"] == [
        {
            "rule": "winback",
            "deferred": 5,
            "outside_window": 2,
            "cancelled": 1,
            "delivered_by_local_hour": hours,
        }
    ]
    assert report["decisions"]["by_outcome"]["outside_window"] == 2
    text = render_report(report)
    assert "Send windows" in text
    assert "  winback                5       2         1  09h 4, 19h 2" in text


def test_a_report_without_windows_has_no_such_block() -> None:
    plain = [
        CustomerRow(
            customer_id="c", decision_counts={CountKey("second_purchase", 1, "delivered"): 4}
        )
    ]
    report = build_report(plain, as_of=AS_OF)
    assert "send_windows" not in report
    assert "Send windows" not in render_report(report)


def test_workers_parts_add_up_to_the_report_over_all_rows() -> None:
    parts = []
    for r in rows():
        state = CustomerState(
            customer_id=r.customer_id,
            partition=0,
            decision_counts=dict(r.decision_counts),
            send_counts={k: list(v) for k, v in r.send_counts.items()},
        )
        acc = ReportInputs(AS_OF)
        acc.add_state(orjson.loads(orjson.dumps(state.to_dict())))
        parts.append(orjson.loads(orjson.dumps(acc.finish().to_json())))
    assert merge_report(parts, as_of=AS_OF) == build_report(rows(), as_of=AS_OF)
    # A part of a worker without windows carries no such key.
    assert "sends" not in ReportInputs(AS_OF).finish().to_json()
