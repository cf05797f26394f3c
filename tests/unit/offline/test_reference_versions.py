"""The offline reference across rule changes (docs/rules.md "Changing rules", issue 21).

One customer, hand-built timelines, one rule whose file changes mid-ladder: what a
growth team sees for each case of the design - restart with superseded steps,
pin, an unchanged rule, a removed rule, a new rule, a pin ending, an exhausted
ladder, the bound on versions kept and an event at the switch instant.
"""

from __future__ import annotations

from typing import Any

import pytest

from agents.core.settings import CoreSettings
from agents.core.state import CountKey
from agents.offline.reference import ReferenceResult, compute_decisions
from agents.offline.rulebook import read_rules
from agents.offline.versions import LIFECYCLE_CHANGE, MAX_VERSIONS
from tests.unit.offline.test_reference import NOW, T0, at, purchase, session
from tests.unit.offline.test_reference_rules import doc, rule

DAY = 86_400_000_000
CID = "cus_versions"
# No control group, no pressure limits: every decision here is the ladder's.
GUARD = {"holdout_percent": 0.0, "min_gap": "PT1H", "frequency_cap": 100}


def book(*rules: dict[str, Any], **guardrails: Any) -> str:
    return doc(*rules, guardrails={**GUARD, **guardrails})


def nudge(steps: list[str], **keys: Any) -> dict[str, Any]:
    return rule("nudge", 10, steps, **{"anchor": "last_order", **keys})


def run(
    lines: list[bytes], seed: str, changes: list[tuple[float, str]], until_day: float = 60
) -> ReferenceResult:
    return compute_decisions(
        lines,
        CoreSettings(),
        rules=seed,
        until=T0 + int(until_day * DAY),
        now=NOW,
        changes=[(T0 + int(day * DAY), text) for day, text in changes],
    )


def seen(result: ReferenceResult) -> list[tuple[str, int, str, str, str]]:
    """(rule, step, anchor_at, due_at, outcome) in emission order."""
    return [
        (d["rule"], d["step"], d["anchor_at"], d["due_at"], d["outcome"]) for d in result.decisions
    ]


def version(text: str, name: str = "nudge") -> str:
    return next(r.version for r in read_rules(text).rules if r.name == name)


SEED = book(nudge(["P2D", "P4D", "P8D"]))
ONE_ORDER = [purchase(CID, T0, "o1")]


def test_without_a_change_the_seed_runs_alone() -> None:
    assert seen(run(ONE_ORDER, SEED, [])) == [
        ("nudge", 1, at(0), at(2), "delivered"),
        ("nudge", 2, at(0), at(4), "delivered"),
        ("nudge", 3, at(0), at(8), "delivered"),
    ]


def test_restart_keeps_the_steps_fired_and_supersedes_those_already_due() -> None:
    """Two steps fired; the new ladder's step 3 (day 5) is due at the switch: it is
    recorded as superseded, not sent (no burst); steps 4 and 5 follow the new file."""
    new = book(nudge(["P1D", "P3D", "P5D", "P6D", "P9D"]))
    result = run(ONE_ORDER, SEED, [(5, new)])
    assert seen(result) == [
        ("nudge", 1, at(0), at(2), "delivered"),
        ("nudge", 2, at(0), at(4), "delivered"),
        ("nudge", 3, at(0), at(5), "superseded"),
        ("nudge", 4, at(0), at(6), "delivered"),
        ("nudge", 5, at(0), at(9), "delivered"),
    ]
    d = result.decisions
    assert [x["rule_version"] for x in d] == [version(SEED)] * 2 + [version(new)] * 3
    assert d[2]["delivered"] is False and d[2]["holdout"] is False
    (row,) = result.rows
    assert row.decision_counts[CountKey("nudge", 3, "superseded")] == 1


def test_a_superseded_step_is_no_nudge_for_gap_or_attribution() -> None:
    """Step 4 (day 6) fires 24 hours after the superseded step 3 under a 36-hour gap,
    and the order on day 5.5 converts the two nudges sent, not the superseded step."""
    new = book(nudge(["P1D", "P3D", "P5D", "P6D", "P9D"]), min_gap="PT36H")
    lines = [*ONE_ORDER, purchase(CID, T0 + int(5.5 * DAY), "o2")]
    result = run(lines, SEED, [(5, new)], until_day=6)
    assert seen(result)[2:] == [("nudge", 3, at(0), at(5), "superseded")]
    assert sorted(o["step"] for o in result.outcomes) == [1, 2]
    new_anchor = book(
        nudge(["P1D", "P3D", "P5D", "P6D", "P9D"], anchor="first_order"), min_gap="PT36H"
    )
    assert seen(run(lines, SEED, [(5, new_anchor)], until_day=6))[2:] == [
        ("nudge", 3, at(0), at(5), "superseded"),
        ("nudge", 4, at(0), at(6), "delivered"),
    ]


def test_pin_finishes_the_ladder_under_the_version_it_started_with() -> None:
    new = book(nudge(["P1D", "P3D", "P5D", "P6D", "P9D"], on_change="pin"))
    result = run([*ONE_ORDER, purchase(CID, T0 + 10 * DAY, "o2")], SEED, [(5, new)], 20)
    assert seen(result) == [
        ("nudge", 1, at(0), at(2), "delivered"),
        ("nudge", 2, at(0), at(4), "delivered"),
        ("nudge", 3, at(0), at(8), "delivered"),  # the old ladder's last step
        # The anchor moved on day 10: the pin is gone, the new file's ladder starts.
        ("nudge", 1, at(10), at(11), "delivered"),
        ("nudge", 2, at(10), at(13), "delivered"),
        ("nudge", 3, at(10), at(15), "delivered"),
        ("nudge", 4, at(10), at(16), "delivered"),
        ("nudge", 5, at(10), at(19), "delivered"),
    ]
    versions = [x["rule_version"] for x in result.decisions]
    assert versions == [version(SEED)] * 3 + [version(new)] * 5


def test_a_pin_ended_by_a_cancel_leaves_that_anchor_done() -> None:
    """Pinned under a file that cancels on a session; the new file does not cancel.
    The session ends the pin, and the new file's anchor is the same first order:
    nothing more for it (not the new file's steps for an old anchor)."""
    seed = book(nudge(["P2D", "P4D", "P8D"], anchor="first_order", cancel_on=["session"]))
    new = book(nudge(["P2D", "P4D", "P7D", "P9D"], anchor="first_order", on_change="pin"))
    result = run([*ONE_ORDER, session(CID, T0 + 6 * DAY)], seed, [(5, new)])
    assert seen(result) == [
        ("nudge", 1, at(0), at(2), "delivered"),
        ("nudge", 2, at(0), at(4), "delivered"),
    ]
    # Without the session the pinned ladder goes on to the old file's step 3.
    assert seen(run(ONE_ORDER, seed, [(5, new)]))[-1] == ("nudge", 3, at(0), at(8), "delivered")


def test_pin_with_the_ladder_exhausted_restarts() -> None:
    seed = book(nudge(["P1D", "P2D"]))
    new = book(nudge(["P1D", "P2D", "P3D", "P8D"], on_change="pin"))
    assert seen(run(ONE_ORDER, seed, [(5, new)])) == [
        ("nudge", 1, at(0), at(1), "delivered"),
        ("nudge", 2, at(0), at(2), "delivered"),
        ("nudge", 3, at(0), at(3), "superseded"),
        ("nudge", 4, at(0), at(8), "delivered"),
    ]


def test_an_unchanged_rule_goes_on_and_keeps_its_version() -> None:
    other = rule("other", 20, ["P3D", "P6D"], anchor="first_order")
    seed = book(nudge(["P2D", "P4D", "P8D"]), other)
    new = book(nudge(["P2D", "P4D", "P9D"]), other)
    both = seen(run(ONE_ORDER, seed, [(3, new)]))
    alone = seen(run(ONE_ORDER, seed, []))
    assert [x for x in both if x[0] == "other"] == [x for x in alone if x[0] == "other"]
    assert [x for x in both if x[0] == "nudge"][-1] == ("nudge", 3, at(0), at(9), "delivered")
    assert version(seed, "other") == version(new, "other")


def test_a_removed_rule_stops_at_the_switch() -> None:
    new = book(rule("other", 20, ["P30D"], anchor="first_order"))
    assert seen(run(ONE_ORDER, SEED, [(5, new)])) == [
        ("nudge", 1, at(0), at(2), "delivered"),
        ("nudge", 2, at(0), at(4), "delivered"),
        ("other", 1, at(0), at(30), "delivered"),
    ]


def test_a_new_rule_supersedes_what_it_would_have_sent_before_it_existed() -> None:
    welcome = rule("welcome", 20, ["P1D", "P3D", "P7D"], anchor="first_order")
    new = book(nudge(["P2D", "P4D", "P8D"]), welcome)
    result = run(ONE_ORDER, SEED, [(5, new)])
    assert [x for x in seen(result) if x[0] == "welcome"] == [
        ("welcome", 1, at(0), at(1), "superseded"),
        ("welcome", 2, at(0), at(3), "superseded"),
        ("welcome", 3, at(0), at(7), "delivered"),
    ]
    # Emitted at the switch, after step 2 of nudge (day 4), before step 3 (day 8).
    assert [x[1:3] for x in seen(result)][2:4] == [(1, at(0)), (2, at(0))]


def test_a_step_due_at_the_switch_instant_is_decided_under_the_new_version() -> None:
    seed = book(nudge(["P5D"], anchor="first_order"))
    new = book(nudge(["P5D", "P6D"], anchor="first_order"))
    assert seen(run(ONE_ORDER, seed, [(5, new)])) == [
        ("nudge", 1, at(0), at(5), "superseded"),
        ("nudge", 2, at(0), at(6), "delivered"),
    ]


def test_an_order_at_the_switch_instant_comes_first() -> None:
    """The order at Ti moves the anchor before the switch: no ladder is active to pin,
    and the new anchor has nothing due yet."""
    new = book(nudge(["P1D", "P3D"], on_change="pin"))
    lines = [*ONE_ORDER, purchase(CID, T0 + 5 * DAY, "o2")]
    assert seen(run(lines, SEED, [(5, new)], 10)) == [
        ("nudge", 1, at(0), at(2), "delivered"),
        ("nudge", 2, at(0), at(4), "delivered"),
        ("nudge", 1, at(5), at(6), "delivered"),
        ("nudge", 2, at(5), at(8), "delivered"),
    ]


def test_past_the_bound_a_pin_to_a_dropped_version_restarts() -> None:
    """Pinned to the seed through seven changes; the eighth drops the seed (the
    bound keeps MAX_VERSIONS): the ladder restarts under the newest file."""
    assert MAX_VERSIONS == 8
    seed = book(nudge(["P2D", "P40D"]))
    changes = [
        (2.5 + i, book(nudge(["P2D", "P9D", f"P{30 + i}D"], on_change="pin"))) for i in range(1, 9)
    ]
    assert seen(run(ONE_ORDER, seed, changes[:7])) == [
        ("nudge", 1, at(0), at(2), "delivered"),
        ("nudge", 2, at(0), at(40), "delivered"),
    ]
    assert seen(run(ONE_ORDER, seed, changes)) == [
        ("nudge", 1, at(0), at(2), "delivered"),
        ("nudge", 2, at(0), at(9), "superseded"),
        ("nudge", 3, at(0), at(38), "delivered"),
    ]


def test_guardrails_follow_the_version_in_force_at_the_due_time() -> None:
    new = book(nudge(["P2D", "P4D", "P8D"]), holdout_percent=100.0)
    assert [x[4] for x in seen(run(ONE_ORDER, SEED, [(5, new)]))] == [
        "delivered",
        "delivered",
        "holdout",
    ]


def test_restart_is_the_default_and_leaves_the_rule_version_as_it_was() -> None:
    plain = book(nudge(["P2D"]))
    assert version(plain) == version(book(nudge(["P2D"], on_change="restart")))
    assert version(plain) != version(book(nudge(["P2D"], on_change="pin")))
    with pytest.raises(ValueError, match="on_change"):
        read_rules(book(nudge(["P2D"], on_change="keep")))


def test_a_lifecycle_change_is_refused() -> None:
    new = doc(nudge(["P2D"]), guardrails=GUARD, lifecycle={"at_risk_after": "P20D"})
    with pytest.raises(ValueError, match="lifecycle cannot change") as info:
        run(ONE_ORDER, SEED, [(5, new)])
    assert str(info.value) == LIFECYCLE_CHANGE
    with pytest.raises(ValueError, match="attribution_window cannot change"):
        run(ONE_ORDER, SEED, [(5, book(nudge(["P2D"]), attribution_window="P9D"))])


def test_a_cancelled_ladder_has_nothing_to_supersede() -> None:
    """Second order on day 1 cancels second-purchase style ladders: a new rule on
    day 5 finds nothing due for that first order."""
    welcome = rule("welcome", 20, ["P1D", "P3D"], anchor="first_order", cancel_on=["purchase"])
    lines = [*ONE_ORDER, purchase(CID, T0 + 1 * DAY, "o2")]
    result = run(lines, SEED, [(5, book(nudge(["P2D", "P4D", "P8D"]), welcome))], 10)
    assert [x for x in seen(result) if x[0] == "welcome"] == []


def test_a_pinned_ladder_goes_at_its_rule_s_place_in_the_version_in_force() -> None:
    """Pinned to the seed where nudge came first (priority 10); the new file puts
    it after other (priority 30 vs 20): at day 8 both are due, other goes first."""
    other = rule("other", 20, ["P8D"], anchor="first_order")
    seed = book(nudge(["P2D", "P4D", "P8D"]), other)
    new = book(rule("nudge", 30, ["P2D", "P5D"], anchor="last_order", on_change="pin"), other)
    result = run(ONE_ORDER, seed, [(5, new)], 10)
    assert [x[:2] for x in seen(result)][-2:] == [("other", 1), ("nudge", 3)]
    assert [x[:2] for x in seen(run(ONE_ORDER, seed, [], 10))][-2:] == [
        ("nudge", 3),
        ("other", 1),
    ]
