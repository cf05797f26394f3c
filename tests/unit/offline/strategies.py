"""Rules files for tests: the default file's text and random valid files (docs/rules.md).

``rules_documents()`` draws TOML texts that ``retention rules check`` should accept:
one to five rules with unique names and priorities (and none at the lifecycle's),
every anchor kind, fixed ladders on the half-day grid the offline histories use
(tests/unit/offline/test_reference_vs_engine.py), cadence steps, every cancelling
kind, every audience predicate, transactional and arbitration rules, channels and
reason templates.  The engine-vs-reference property test runs both sides on them.

``settled_only`` (the default) leaves out the two shapes whose due time can lie
before the event that makes it due - a cadence step under an anchor that an order
does not move (first_order without cancel_on purchase, last_session) and a
last_session anchor with min_orders > 0: for them the reference says "due at that
event" (agents/offline/timeline.py), which the engine has to agree on first.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from agents.core.settings import CoreSettings
from agents.core.timeutil import MICROS_PER_DAY, MICROS_PER_SECOND

# The default file (agents/core/rules/default.toml as the design writes it, issue 20):
# today's three rules, guardrails and reasons.  The reference without a file and the
# reference with this text must decide alike (tests/unit/offline/test_reference_rules.py).
DEFAULT_RULES = """\
format = 1

[guardrails]
holdout_percent = 10.0
holdout_salt = "retention"
min_gap = "PT24H"
frequency_cap = 4
frequency_window = "P30D"
attribution_window = "P5D"
arbitration = false

[lifecycle]
at_risk_after = "P14D"
lapsed_after = "P60D"
priority = 15

[[rule]]
name = "second_purchase"
priority = 10
description = "Ordered once and not come back."
reason = "no second order {span} after the first on {anchor_date}"
anchor = "first_order"
cancel_on = ["purchase"]
steps = ["P7D", "P14D", "P30D"]

[[rule]]
name = "inactivity"
priority = 20
description = "No order or session for a while."
reason = "no activity for {span} since {anchor_date}"
anchor = "last_activity"
steps = ["P14D", "P30D", "P60D"]

[[rule]]
name = "overdue"
priority = 30
description = "Late for their own rhythm of ordering."
reason = "no order for {span} since {anchor_date}, overdue for their usual rhythm"
anchor = { kind = "last_order", min_orders = 3 }
steps = [{ cadence = 2.0, floor = "P7D" }]
"""


def iso_duration(micros: int) -> str:
    """A duration in whole seconds as ISO 8601: ``P7D``, ``PT12H``, ``P1DT12H``."""
    seconds, rest = divmod(micros, MICROS_PER_SECOND)
    assert rest == 0 and seconds > 0, micros
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")


def legacy_document(core: CoreSettings) -> str:
    """The rules file that says what ``core``'s legacy settings say (all rules enabled)."""
    sp, ina = core.second_purchase, core.inactivity
    doc: dict[str, Any] = {
        "format": 1,
        "guardrails": {
            "holdout_percent": float(core.holdout_percent),
            "holdout_salt": core.holdout_salt,
            "min_gap": iso_duration(core.min_gap),
            "frequency_cap": core.frequency_cap,
            "frequency_window": iso_duration(core.frequency_window),
            "attribution_window": iso_duration(core.attribution_window),
        },
        "lifecycle": {
            "at_risk_after": iso_duration(ina.steps[0]),
            "lapsed_after": iso_duration(ina.steps[-1]),
            "priority": 15,
        },
        "rule": [
            {
                "name": "second_purchase",
                "priority": 10,
                "reason": "no second order {span} after the first on {anchor_date}",
                "anchor": "first_order",
                "cancel_on": ["purchase"],
                "steps": [iso_duration(s) for s in sp.steps],
            },
            {
                "name": "inactivity",
                "priority": 20,
                "reason": "no activity for {span} since {anchor_date}",
                "anchor": "last_activity",
                "steps": [iso_duration(s) for s in ina.steps],
            },
            {
                "name": "overdue",
                "priority": 30,
                "reason": "no order for {span} since {anchor_date}, overdue for their usual rhythm",
                "anchor": {"kind": "last_order", "min_orders": core.overdue_min_orders},
                "steps": [
                    {
                        "cadence": float(core.overdue_multiplier),
                        "floor": iso_duration(core.overdue_floor),
                    }
                ],
            },
        ],
    }
    return to_toml(doc)


# --- writing TOML ---------------------------------------------------------------------


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    assert isinstance(v, dict), v
    return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"


def to_toml(doc: dict[str, Any]) -> str:
    """``doc`` (format, default_timezone, [guardrails], [lifecycle], [send_window],
    [[rule]] with [rule.audience]) as TOML."""
    out = [f"format = {doc['format']}"]
    if "default_timezone" in doc:
        out.append(f"default_timezone = {_value(doc['default_timezone'])}")
    for table in ("guardrails", "lifecycle", "send_window"):
        if table in doc:
            out += ["", f"[{table}]"] + [f"{k} = {_value(v)}" for k, v in doc[table].items()]
    for rule in doc.get("rule", []):
        out += ["", "[[rule]]"]
        out += [f"{k} = {_value(v)}" for k, v in rule.items() if k != "audience"]
        if "audience" in rule:
            out += ["", "[rule.audience]"]
            out += [f"{k} = {_value(v)}" for k, v in rule["audience"].items()]
    return "\n".join(out) + "\n"


# --- send windows (docs/send-windows.md) -------------------------------------------------

# 20 zones a customer's events may carry (issue 22's DST edges, half-hour and
# 45-minute offsets, southern summers), an unknown one, and none.
ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Apia",
    "Asia/Tehran",
    "UTC",
    "Europe/London",
    "America/Los_Angeles",
    "America/St_Johns",
    "America/Sao_Paulo",
    "Asia/Riyadh",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Chatham",
    "Europe/Moscow",
    "America/Santiago",
    "Africa/Cairo",
    "US/Eastern",
)
EVENT_ZONES = (*ZONES, None, None, None, "Mars/Olympus_Mons")

# Windows that meet the half-day grid (10:00 and 22:00 UTC) in UTC and London,
# Berlin's skipped hour, one crossing midnight, and the core's check's own draws.
TABLES: tuple[dict[str, Any], ...] = (
    {"windows": [{"days": "weekdays", "open": "09:00", "close": "20:00"}]},
    {"windows": [{"days": "all", "open": "10:00", "close": "12:00"}]},
    {"windows": [{"days": "all", "open": "22:00", "close": "23:00"}], "policy": "drop"},
    {
        "windows": [
            {"days": ["fri"], "open": "22:00", "close": "01:00"},
            {"days": "weekends", "open": "10:00", "close": "18:00"},
        ]
    },
    {"windows": [{"days": "all", "open": "02:30", "close": "03:30"}]},
    {"windows": [{"days": "weekdays", "open": "09:00", "close": "17:00"}], "max_delay": "PT12H"},
    {"windows": [{"days": ["mon", "wed"], "open": "10:00", "close": "10:30"}], "max_delay": "P2D"},
)


@st.composite
def window_table(draw: st.DrawFn) -> dict[str, Any]:
    table = dict(draw(st.sampled_from(TABLES)))
    if draw(st.integers(0, 3)) == 0:
        table["zone"] = draw(st.sampled_from(ZONES))
    return table


# --- random files -----------------------------------------------------------------------

NAMES = ("welcome", "second_purchase", "winback", "vip_cadence", "receipt", "nudge_b", "lapsed")
STAGES = ("prospect", "new", "repeat", "at_risk", "lapsed", "reactivated")
# Half-days, the grid of the offline test histories, so due times often meet events.
HALF_DAY = MICROS_PER_DAY // 2
REASONS = (
    None,
    "{rule} step {step}: {span} after {anchor_date}",
    "We miss you: {span} since {anchor_date}",
    "plain text, no placeholders",
)


@st.composite
def _steps(draw: st.DrawFn, cadence_ok: bool) -> list[Any]:
    if cadence_ok and draw(st.integers(0, 3)) == 0:
        k = draw(st.sampled_from((1.0, 1.5, 2.0, 3.0)))
        floor = draw(st.integers(1, 6)) * HALF_DAY
        return [{"cadence": k, "floor": iso_duration(floor)}]
    halves = draw(st.lists(st.integers(1, 16), min_size=1, max_size=3, unique=True))
    return [iso_duration(h * HALF_DAY) for h in sorted(halves)]


@st.composite
def _bounds(draw: st.DrawFn, low: int, high: int) -> dict[str, int]:
    a, b = sorted(draw(st.lists(st.integers(low, high), min_size=2, max_size=2)))
    out = {}
    if draw(st.booleans()):
        out["min"] = a
    if draw(st.booleans()) or not out:
        out["max"] = b
    return out


@st.composite
def _audience(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.integers(0, 3)) == 0:
        out["orders"] = draw(_bounds(0, 4))
    if draw(st.integers(0, 3)) == 0:
        out["stage"] = draw(st.lists(st.sampled_from(STAGES), min_size=1, max_size=3, unique=True))
    if draw(st.integers(0, 4)) == 0:
        bounds = draw(_bounds(0, 60))
        out["spend"] = {"currency": "EUR", **{k: f"{v}.00" for k, v in bounds.items()}}
    if draw(st.integers(0, 4)) == 0:
        out["consent"] = draw(st.sampled_from(("not_opted_out", "opted_in")))
    if draw(st.integers(0, 4)) == 0:
        out["days_since_first_order"] = draw(_bounds(0, 20))
    return out


@st.composite
def _rule(
    draw: st.DrawFn,
    name: str,
    priority: int,
    settled_only: bool,
    may_disable: bool,
    windows: bool = False,
) -> dict[str, Any]:
    kind = draw(st.sampled_from(("first_order", "last_order", "last_activity", "last_session")))
    cancel_on = draw(
        st.lists(st.sampled_from(("purchase", "session", "consent")), max_size=2, unique=True)
    )
    anchor: Any = kind
    if kind in ("last_order", "last_activity") and draw(st.booleans()):
        least = 1 if kind == "last_order" else 0
        anchor = {"kind": kind, "min_orders": draw(st.integers(least, 3))}
    elif kind == "last_session" and not settled_only and draw(st.booleans()):
        anchor = {"kind": kind, "min_orders": draw(st.integers(0, 2))}
    cadence_ok = not settled_only or kind in ("last_order", "last_activity")
    cadence_ok |= kind == "first_order" and "purchase" in cancel_on
    rule: dict[str, Any] = {"name": name, "priority": priority}
    if may_disable and draw(st.integers(0, 5)) == 0:
        rule["enabled"] = False
    reason = draw(st.sampled_from(REASONS))
    if reason is not None:
        rule["reason"] = reason
    channel = draw(st.sampled_from((None, "email", "sms")))
    if channel is not None:
        rule["channel"] = channel
    rule["anchor"] = anchor
    if cancel_on:
        rule["cancel_on"] = cancel_on
    rule["steps"] = draw(_steps(cadence_ok))
    if draw(st.integers(0, 4)) == 0:
        rule["transactional"] = True  # never outranked: no arbitration of its own
    elif draw(st.integers(0, 2)) == 0:
        rule["arbitration"] = draw(st.booleans())
    if windows:
        own = draw(st.integers(0, 3))
        if own == 1:
            rule["send_window"] = draw(window_table())
        elif own == 2:
            rule["send_window"] = "none"
    audience = draw(_audience())
    if audience:
        rule["audience"] = audience
    return rule


@st.composite
def rules_document_dicts(
    draw: st.DrawFn, *, settled_only: bool = True, windows: bool = False
) -> dict[str, Any]:
    """What ``tomllib`` gives for a random valid rules file (``windows``: with send
    windows, a file default and a default zone now and then)."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
    priorities = draw(
        st.lists(st.integers(1, 40), min_size=len(names) + 1, max_size=len(names) + 1, unique=True)
    )
    doc: dict[str, Any] = {"format": 1}
    if windows and draw(st.booleans()):
        doc["default_timezone"] = draw(st.sampled_from(ZONES))
    if windows and draw(st.booleans()):
        doc["send_window"] = draw(window_table())
    guardrails: dict[str, Any] = {}
    if draw(st.booleans()):
        guardrails["holdout_percent"] = draw(st.sampled_from((0.0, 10.0, 50.0)))
        guardrails["holdout_salt"] = "parity"
    if draw(st.booleans()):
        guardrails["min_gap"] = iso_duration(draw(st.integers(1, 4)) * HALF_DAY)
    if draw(st.booleans()):
        guardrails["frequency_cap"] = draw(st.integers(1, 4))
        guardrails["frequency_window"] = iso_duration(draw(st.integers(2, 30)) * MICROS_PER_DAY)
    if draw(st.booleans()):
        guardrails["attribution_window"] = iso_duration(draw(st.integers(1, 6)) * HALF_DAY)
    if draw(st.integers(0, 2)) == 0:
        guardrails["arbitration"] = True
    if guardrails:
        doc["guardrails"] = guardrails
    if draw(st.booleans()):
        at_risk = draw(st.integers(1, 10))
        lapsed = at_risk + draw(st.integers(1, 10))
        doc["lifecycle"] = {
            "at_risk_after": iso_duration(at_risk * HALF_DAY),
            "lapsed_after": iso_duration(lapsed * HALF_DAY),
            "priority": priorities[-1],
        }
    else:
        priorities[-1] = 15
        if 15 in priorities[:-1]:
            priorities[priorities.index(15)] = 41
    # The first rule is always enabled: a file runs at least one rule.
    doc["rule"] = [
        draw(_rule(name, priority, settled_only, i > 0, windows))
        for i, (name, priority) in enumerate(zip(names, priorities, strict=False))
    ]
    return doc


def rules_documents(*, settled_only: bool = True, windows: bool = False) -> st.SearchStrategy[str]:
    """Random valid rules files, as TOML text."""
    return rules_document_dicts(settled_only=settled_only, windows=windows).map(to_toml)
