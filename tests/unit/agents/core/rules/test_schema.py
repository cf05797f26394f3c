"""The rules file's JSON Schema (schemas/rules.schema.json) and ``load_rules`` agree on
the shipped default file, every example (docs/rules.md "Worked examples") and on a
handful of files the schema refuses."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from agents.core.rules import builtin_text, default_rules, default_text, load_rules
from agents.core.rules.check import check_rules

ROOT = Path(__file__).resolve().parents[5]
SCHEMA = Draft202012Validator(json.loads((ROOT / "schemas" / "rules.schema.json").read_text()))
EXAMPLES = sorted((ROOT / "docs" / "examples" / "rules").glob("*.toml"))


def test_the_examples_exist() -> None:
    assert {p.stem for p in EXAMPLES} >= {
        "vip_cadence",
        "welcome_back",
        "transactional",
        "collide",
        "collide_arbitrated",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_valid_for_the_schema_and_loads(path: Path) -> None:
    text = path.read_text()
    assert list(SCHEMA.iter_errors(tomllib.loads(text))) == []
    assert load_rules(text).active


def test_the_default_file_is_valid_and_ships_with_the_package() -> None:
    assert list(SCHEMA.iter_errors(tomllib.loads(default_text()))) == []
    assert [r.name for r in default_rules().active] == ["second_purchase", "inactivity", "overdue"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "core/rules/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["agents"]


GOOD = """format = 1
[[rule]]
name = "winback"
priority = 10
anchor = "last_order"
steps = ["P7D"]
"""

REFUSED = {
    "unknown top key": GOOD + "colour = 1\n",
    "bad name": GOOD.replace('"winback"', '"Win-Back"'),
    "unknown anchor": GOOD.replace('"last_order"', '"last_visit"'),
    "zero step": GOOD.replace('"P7D"', '"PT0S"'),
    "month step": GOOD.replace('"P7D"', '"P1M"'),
    "unknown audience": GOOD + "[rule.audience]\nage = { min = 18 }\n",
    "unknown stage": GOOD + '[rule.audience]\nstage = ["vip"]\n',
    "spend as number": GOOD + '[rule.audience]\nspend = { currency = "EUR", min = 50 }\n',
    "cadence beside fixed": GOOD.replace('["P7D"]', '["P3D", { cadence = 2.0, floor = "P7D" }]'),
    "unknown event kind": GOOD + 'cancel_on = ["refund"]\n',
    "eleven steps": GOOD.replace(
        '["P7D"]', str([f"P{d}D" for d in range(1, 12)]).replace("'", '"')
    ),
    "no format": GOOD.replace("format = 1\n", ""),
    "unknown on_change": GOOD + 'on_change = "keep"\n',
    "send_window off": GOOD + 'send_window = "off"\n',
    "window open not HH:MM": GOOD
    + 'send_window = { windows = [ { days = "all", open = "9am", close = "20:00" } ] }\n',
    "drop with max_delay": GOOD
    + 'send_window = { windows = [ { days = "all", open = "09:00", close = "20:00" } ], '
    + 'policy = "drop", max_delay = "PT2H" }\n',
    "zone as a path": GOOD
    + 'send_window = { windows = [ { days = "all", open = "09:00", close = "20:00" } ], '
    + 'zone = "../../etc/passwd" }\n',
    "default_timezone a number": GOOD.replace("format = 1\n", "format = 1\ndefault_timezone = 1\n"),
    "file window without windows": GOOD.replace(
        "format = 1\n", 'format = 1\n[send_window]\npolicy = "drop"\n'
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_file_the_schema_refuses_is_refused_by_the_check(name: str) -> None:
    text = REFUSED[name]
    assert not SCHEMA.is_valid(tomllib.loads(text)), name
    assert check_rules(text), name


def test_a_pinned_rule_is_valid_for_the_schema_and_loads() -> None:
    text = GOOD + 'on_change = "pin"\n'
    assert SCHEMA.is_valid(tomllib.loads(text))
    assert load_rules(text).rules[0].on_change == "pin"


WINDOWED = """format = 1
default_timezone = "America/New_York"

[send_window]
windows = [
  { days = "weekdays", open = "09:00", close = "20:00" },
  { days = ["sat"], open = "22:00", close = "24:00" },
]
max_delay = "PT36H"

[[rule]]
name = "winback"
priority = 10
anchor = "last_order"
steps = ["P7D"]
send_window = "none"

[[rule]]
name = "welcome"
priority = 20
anchor = "first_order"
steps = ["P1D"]

[rule.send_window]
windows = [ { days = "sun", open = "10:00", close = "12:00" } ]
policy = "drop"
zone = "Europe/Berlin"
"""


def test_a_file_with_send_windows_is_valid_for_the_schema_and_loads() -> None:
    assert list(SCHEMA.iter_errors(tomllib.loads(WINDOWED))) == []
    winback, welcome = load_rules(WINDOWED).rules
    assert winback.send_window is None
    assert welcome.send_window is not None and welcome.send_window.zone == "Europe/Berlin"


def test_the_lifecycle_file_is_valid_and_its_new_parts_are_described() -> None:
    """lifecycle.toml passes the schema; a wrong cart exit or a milestone out of range
    does not (docs/lifecycle.md "Rules")."""
    doc = tomllib.loads(builtin_text("lifecycle"))
    assert list(SCHEMA.iter_errors(doc)) == []
    for anchor, steps in (
        ({"kind": "cart", "exit": "basket"}, ["PT1H"]),
        ("first_order", [{"order": 0}]),
        ("first_order", [{"anniversary": 11}]),
        ({"kind": "signup", "unknown": 1}, ["PT1H"]),
    ):
        rule = {"name": "r", "priority": 1, "anchor": anchor, "steps": steps}
        assert not SCHEMA.is_valid({"format": 1, "rule": [rule]}), (anchor, steps)
