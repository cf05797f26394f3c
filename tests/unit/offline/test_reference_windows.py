"""Send windows in the offline reference (docs/send-windows.md, issue 22): the rules
file's windows read with the reference's own code, and each semantic point on a
concrete history, as ``retention report --decisions`` would print it.

The engine is held to the same decisions by test_reference_vs_engine_windows.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from agents.core.settings import HOUR, CoreSettings
from agents.core.timeutil import to_micros
from agents.offline.reference import compute_decisions
from agents.offline.rulebook import WindowSpec, read_rules
from tests.unit.offline import test_reference_vs_engine as parity
from tests.unit.offline.strategies import to_toml

A = parity.CUSTOMERS[0]
H = parity.CUSTOMERS[3]  # in the control group at 50 %
NOW = parity.NOW
LIFECYCLE = {"at_risk_after": "P30D", "lapsed_after": "P60D", "priority": 15}
MORNING = {"windows": [{"days": "all", "open": "09:00", "close": "12:00"}]}


def utc(text: str) -> int:
    return to_micros(datetime.fromisoformat(text).astimezone(UTC))


def rules(*rule: dict[str, Any], window: dict[str, Any] | None = None, **top: Any) -> str:
    guardrails = {"holdout_percent": 0.0, "min_gap": "PT12H", "attribution_window": "P2D"}
    guardrails |= top.pop("guardrails", {})
    doc: dict[str, Any] = {"format": 1, **top, "guardrails": guardrails, "lifecycle": LIFECYCLE}
    if window is not None:
        doc["send_window"] = window
    doc["rule"] = list(rule)
    return to_toml(doc)


def ladder(name: str, priority: int, *steps: str, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "priority": priority,
        "anchor": "first_order",
        "steps": list(steps),
        **more,
    }


def zoned(line: bytes, zone: str | None) -> bytes:
    return line if zone is None else orjson.dumps(orjson.loads(line) | {"timezone": zone})


def order(t: str, n: int, zone: str | None = "Europe/Berlin", who: str = A) -> bytes:
    return zoned(parity.purchase(who, utc(t), f"o{n}", f"p{n}"), zone)


def session(t: str, n: int, zone: str | None = None) -> bytes:
    return zoned(parity.session(A, utc(t), f"s{n}"), zone)


def decide(
    text: str, lines: list[bytes], until: str, changes: tuple[tuple[str, str], ...] = ()
) -> Any:
    return compute_decisions(
        lines,
        CoreSettings(),
        rules=text,
        until=utc(until),
        now=NOW,
        changes=[(utc(t), doc) for t, doc in changes],
    )


def seen(result: Any, *keys: str) -> list[tuple[Any, ...]]:
    return [tuple(d.get(k) for k in keys) for d in result.decisions]


# --- the rules file ----------------------------------------------------------------------


def test_a_rules_effective_window_is_its_own_else_the_files_and_none_bypasses_it() -> None:
    text = rules(
        ladder("a", 10, "P1D"),
        ladder("b", 20, "P1D", send_window={**MORNING, "policy": "drop", "zone": "Asia/Tokyo"}),
        ladder("c", 30, "P1D", send_window="none"),
        window={**MORNING, "max_delay": "PT6H"},
        default_timezone="America/New_York",
    )
    book = {r.name: r for r in read_rules(text).rules}
    hours = ((("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "09:00", "12:00"),)
    assert book["a"].send_window == WindowSpec(hours, "defer", 6 * HOUR, None, "America/New_York")
    assert book["b"].send_window == WindowSpec(
        hours, "drop", None, "Asia/Tokyo", "America/New_York"
    )
    assert book["c"].send_window is None


def test_a_file_without_windows_keeps_every_version_and_decision() -> None:
    """default_timezone alone does nothing (no rule has a window): same versions."""
    plain = rules(ladder("a", 10, "P1D"))
    zoned_only = rules(ladder("a", 10, "P1D"), default_timezone="Asia/Tehran")
    assert read_rules(plain) == read_rules(zoned_only)
    with_window = rules(ladder("a", 10, "P1D"), window=MORNING)
    assert read_rules(with_window).rules[0].version != read_rules(plain).rules[0].version
    lines = [order("2026-03-02T10:00:00+00:00", 1)]
    result = decide(plain, lines, "2026-03-05T00:00:00+00:00")
    assert "send_at" not in result.decisions[0] and "send_zone" not in result.decisions[0]


@pytest.mark.parametrize(
    ("top", "window", "where"),
    [
        ({"default_timezone": "Mars/Olympus_Mons"}, None, "default_timezone"),
        ({}, {**MORNING, "zone": "Europe/berlin"}, "send_window.zone"),
        ({}, "off", "send_window"),
    ],
)
def test_an_unknown_zone_or_value_is_refused_where_it_is(
    top: dict[str, Any], window: Any, where: str
) -> None:
    doc: dict[str, Any] = {"format": 1, **top, "rule": [ladder("a", 10, "P1D")]}
    if window is not None:
        doc["send_window"] = window
    with pytest.raises(ValueError, match=f"^{where}"):
        read_rules(doc)
    if window is not None:
        own = {"format": 1, "rule": [ladder("a", 10, "P1D", send_window=window)]}
        with pytest.raises(ValueError, match=r"^rule\[0\]\.send_window"):
            read_rules(own)


# --- at the due time ----------------------------------------------------------------------

DUE_AT_NIGHT = "2026-03-02T22:00:00+00:00"  # a Monday, 23:00 in Berlin


def test_a_firing_due_at_night_is_sent_at_nine_the_next_morning_in_the_customers_zone() -> None:
    result = decide(
        rules(ladder("a", 10, "PT12H"), window=MORNING),
        [order("2026-03-02T10:00:00+00:00", 1)],
        "2026-03-04T00:00:00+00:00",
    )
    assert seen(result, "outcome", "due_at", "send_at", "send_zone", "send_local") == [
        (
            "delivered",
            "2026-03-02T22:00:00Z",
            "2026-03-03T08:00:00Z",
            "Europe/Berlin",
            "2026-03-03T09:00:00+01:00",
        )
    ]


def test_inside_the_window_it_is_sent_at_its_due_time_with_the_zone_shown() -> None:
    result = decide(
        rules(ladder("a", 10, "P1D"), window=MORNING),
        [order("2026-03-02T09:30:00+00:00", 1)],  # 10:30 in Berlin
        "2026-03-04T00:00:00+00:00",
    )
    assert seen(result, "outcome", "send_at", "send_local") == [
        ("delivered", "2026-03-03T09:30:00Z", "2026-03-03T10:30:00+01:00")
    ]


def test_drop_and_max_delay_decide_outside_window_at_the_due_time_even_for_the_control_group() -> (
    None
):
    lines = [
        order("2026-03-02T10:00:00+00:00", 1),
        order("2026-03-02T10:00:00+00:00", 2, who=H),
    ]
    for window in ({**MORNING, "policy": "drop"}, {**MORNING, "max_delay": "PT9H"}):
        text = rules(ladder("a", 10, "PT12H"), window=window, guardrails={"holdout_percent": 50.0})
        result = decide(text, lines, "2026-03-04T00:00:00+00:00")
        assert sorted(seen(result, "customer_id", "outcome", "send_at", "send_zone")) == sorted(
            [
                (A, "outside_window", None, "Europe/Berlin"),
                (H, "outside_window", None, "Europe/Berlin"),
            ]
        )
        assert {d["send_local"] for d in result.decisions} == {None}
    # Ten hours' wait is within a max_delay of PT10H.
    text = rules(ladder("a", 10, "PT12H"), window={**MORNING, "max_delay": "PT10H"})
    result = decide(text, lines[:1], "2026-03-04T00:00:00+00:00")
    assert seen(result, "outcome", "send_at") == [("delivered", "2026-03-03T08:00:00Z")]


def test_the_zone_is_the_fixed_one_else_the_customers_at_the_due_time_else_the_default() -> None:
    lines = [
        order("2026-03-02T10:00:00+00:00", 1, zone=None),  # no zone yet: the default
        session("2026-03-03T12:00:00+00:00", 2, zone="Asia/Tokyo"),
    ]
    text = rules(
        ladder("a", 10, "PT12H", "P2D"), window=MORNING, default_timezone="America/New_York"
    )
    result = decide(text, lines, "2026-03-06T00:00:00+00:00")
    # Step 1 (22:00 UTC, 17:00 in New York) waits for 09:00 in New York; step 2 (two
    # days on, 10:00 UTC) after the zone became Tokyo's: 19:00 there, next 09:00 Tokyo.
    assert seen(result, "step", "send_zone", "send_local") == [
        (1, "America/New_York", "2026-03-03T09:00:00-05:00"),
        (2, "Asia/Tokyo", "2026-03-05T09:00:00+09:00"),
    ]
    fixed = rules(ladder("a", 10, "PT12H"), window={**MORNING, "zone": "Asia/Kathmandu"})
    result = decide(fixed, [order("2026-03-02T10:00:00+00:00", 1)], "2026-03-04T00:00:00+00:00")
    assert seen(result, "send_zone", "send_local") == [
        ("Asia/Kathmandu", "2026-03-03T09:00:00+05:45")
    ]


def test_a_zone_that_changes_after_the_due_time_does_not_move_the_send_time() -> None:
    lines = [
        order("2026-03-02T10:00:00+00:00", 1),
        session("2026-03-03T01:00:00+00:00", 2, zone="America/Los_Angeles"),
    ]
    text = rules(ladder("a", 10, "PT12H"), window=MORNING)
    result = decide(text, lines, "2026-03-04T00:00:00+00:00")
    assert seen(result, "outcome", "send_zone", "send_at") == [
        ("delivered", "Europe/Berlin", "2026-03-03T08:00:00Z")
    ]


def test_a_deferral_across_berlins_spring_gap_opens_at_three() -> None:
    text = rules(
        ladder("a", 10, "PT12H"),
        window={"windows": [{"days": "sun", "open": "02:30", "close": "05:00"}]},
    )
    result = decide(text, [order("2026-03-28T12:00:00+00:00", 1)], "2026-03-30T00:00:00+00:00")
    assert seen(result, "send_local") == [("2026-03-29T03:00:00+02:00",)]


# --- at the send time ------------------------------------------------------------------------


def test_an_order_between_the_due_time_and_the_send_time_cancels_it() -> None:
    text = rules(ladder("a", 10, "PT12H", "P5D", cancel_on=["purchase"]), window=MORNING)
    lines = [order("2026-03-02T10:00:00+00:00", 1), order("2026-03-03T06:00:00+00:00", 2)]
    result = decide(text, lines, "2026-03-04T00:00:00+00:00")
    assert seen(result, "outcome", "due_at", "send_at", "delivered") == [
        ("cancelled", "2026-03-02T22:00:00Z", "2026-03-03T08:00:00Z", False)
    ]
    assert result.outcomes == []  # never sent, so never converted


def test_an_opt_out_before_the_send_time_is_read_at_the_send_time() -> None:
    text = rules(ladder("a", 10, "PT12H"), window=MORNING)
    lines = [
        order("2026-03-02T10:00:00+00:00", 1),
        parity.consent(A, utc("2026-03-03T07:00:00+00:00"), "c1", "opted_out"),
    ]
    result = decide(text, lines, "2026-03-04T00:00:00+00:00")
    assert seen(result, "outcome") == [("opted_out",)]


def test_the_next_step_falling_due_first_supersedes_the_waiting_one() -> None:
    text = rules(ladder("a", 10, "PT12H", "PT18H"), window=MORNING)
    result = decide(text, [order("2026-03-02T10:00:00+00:00", 1)], "2026-03-04T00:00:00+00:00")
    assert seen(result, "step", "outcome", "send_at") == [
        (1, "superseded", "2026-03-03T08:00:00Z"),
        (2, "delivered", "2026-03-03T08:00:00Z"),
    ]


def test_gap_and_cap_count_send_times() -> None:
    """b's nudge is due at 22:00 UTC with no window and delivered; a's (due two hours
    earlier) waits for 08:00 UTC: ten hours after b's, within the 12-hour gap."""
    text = rules(
        ladder("a", 10, "PT10H", send_window=MORNING),
        ladder("b", 20, "PT12H"),
    )
    result = decide(text, [order("2026-03-02T10:00:00+00:00", 1)], "2026-03-04T00:00:00+00:00")
    assert seen(result, "rule", "outcome", "send_at") == [
        ("b", "delivered", None),
        ("a", "min_gap", "2026-03-03T08:00:00Z"),
    ]


def test_firings_piling_onto_one_opening_go_by_priority_and_arbitration_outranks() -> None:
    text = rules(
        ladder("low", 30, "PT12H"),
        ladder("high", 10, "PT14H"),
        window=MORNING,
        guardrails={"arbitration": True},
    )
    result = decide(text, [order("2026-03-02T10:00:00+00:00", 1)], "2026-03-04T00:00:00+00:00")
    assert seen(result, "rule", "outcome", "send_at") == [
        ("high", "delivered", "2026-03-03T08:00:00Z"),
        ("low", "outranked", "2026-03-03T08:00:00Z"),
    ]


def test_conversions_count_from_the_send_time() -> None:
    text = rules(ladder("a", 10, "PT12H"), window=MORNING)
    lines = [order("2026-03-02T10:00:00+00:00", 1), order("2026-03-05T07:00:00+00:00", 2)]
    result = decide(text, lines, "2026-03-06T00:00:00+00:00")
    # 47 hours after the send time (08:00 on the 3rd), 57 after the due time: inside
    # the two-day window only from the send time.
    assert [(o["order_id"], o["hours_to_convert"], o["due_at"]) for o in result.outcomes] == [
        ("o2", 47.0, "2026-03-02T22:00:00Z")
    ]
    assert result.conversions[0].send_at == utc("2026-03-03T08:00:00+00:00")


def test_a_firing_waiting_past_the_horizon_is_undecided() -> None:
    text = rules(ladder("a", 10, "PT12H"), window=MORNING)
    result = decide(text, [order("2026-03-02T10:00:00+00:00", 1)], "2026-03-03T07:59:59+00:00")
    assert result.decisions == []
    assert [(f.rule, f.send_at) for f in result.undecided] == [
        ("a", utc("2026-03-03T08:00:00+00:00"))
    ]


# --- rules changes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_change", "outcome"), [("restart", "superseded"), ("pin", "delivered")]
)
def test_a_switch_supersedes_a_waiting_firing_on_restart_and_keeps_it_when_pinned(
    on_change: str, outcome: str
) -> None:
    seed = rules(ladder("a", 10, "PT12H", "P5D", on_change=on_change), window=MORNING)
    new = rules(ladder("a", 10, "PT12H", "P6D", on_change=on_change), window=MORNING)
    switch = "2026-03-03T02:00:00+00:00"
    result = decide(
        seed, [order("2026-03-02T10:00:00+00:00", 1)], "2026-03-04T00:00:00+00:00", ((switch, new),)
    )
    decided_at = switch if outcome == "superseded" else "2026-03-03T08:00:00+00:00"
    assert seen(result, "step", "outcome", "send_at") == [(1, outcome, "2026-03-03T08:00:00Z")]
    assert result.firings[0][0].at == utc(decided_at)
    # The rule removed altogether: superseded at the switch as well.
    gone = rules(ladder("b", 20, "P9D"))
    result = decide(
        seed,
        [order("2026-03-02T10:00:00+00:00", 1)],
        "2026-03-04T00:00:00+00:00",
        ((switch, gone),),
    )
    assert seen(result, "rule", "outcome") == [("a", "superseded")]
