"""schemas/control_rules.schema.json and ingest read a ``control/rules`` marker alike.

A third-party validator with format checks (jsonschema's ``FormatChecker``,
``format: date-time`` by ``rfc3339-validator``) accepts a marker exactly when the
ingest agent forwards it, except for what a schema cannot express: that the TOML
loads, that ``version`` is the text's set id, the time bounds, and ``effective_at``
null (the seed on the rules topic; refused on an input topic).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from agents.core.clock import ManualClock
from agents.core.rules import default_text, load_rules
from agents.core.rules.history import set_id
from agents.core.timeutil import to_micros
from tests.unit.agents.factories import processors

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "schemas" / "control_rules.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
NOW = to_micros(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
TEXT = default_text().replace('steps = ["P7D", "P14D", "P30D"]', 'steps = ["P5D", "P14D"]')
VERSION = set_id(load_rules(TEXT))
GOOD = {"schema": "control/rules", "effective_at": "2026-03-20T00:00:00+01:00", "rules": TEXT}

AGREE = {
    "no version": (GOOD, True),
    "its version": (GOOD | {"version": VERSION}, True),
    "extra keys ignored": (GOOD | {"published_at": "2026-03-10T11:00:00Z", "by": "ops"}, True),
    "fraction and lower-case t": (GOOD | {"effective_at": "2026-03-20t00:00:00.5Z"}, True),
    "no rules": ({k: v for k, v in GOOD.items() if k != "rules"}, False),
    "rules not text": (GOOD | {"rules": ["format = 1"]}, False),
    "no effective_at": ({k: v for k, v in GOOD.items() if k != "effective_at"}, False),
    "naive time": (GOOD | {"effective_at": "2026-03-20T00:00:00"}, False),
    "impossible date": (GOOD | {"effective_at": "2026-02-30T00:00:00Z"}, False),
    "words": (GOOD | {"effective_at": "next week"}, False),
    "version not hex": (GOOD | {"version": "v2"}, False),
}
# Refused by ingest, accepted by the schema (module docstring).
EXCEPTIONS = {
    "not TOML": GOOD | {"rules": "[[rule]"},
    "another text's version": GOOD | {"version": "0123456789ab"},
    "seed's null time": GOOD | {"effective_at": None},
    "two years ahead": GOOD | {"effective_at": "2028-03-20T00:00:00Z"},
    "before 1970": GOOD | {"effective_at": "1960-01-01T00:00:00Z"},
}


def forwarded(record: dict[str, Any]) -> bool:
    ingest = processors(ManualClock(NOW)).ingest
    outputs, controls = ingest.handle(orjson.dumps(record), "retention.purchases", 0, 0)
    assert bool(controls) != bool(outputs)  # forwarded, or one dead letter
    if outputs:
        assert orjson.loads(outputs[0].value)["error_code"] == "invalid_rules"
    return bool(controls)


def test_the_third_party_validator_checks_date_time() -> None:
    assert "date-time" in Draft202012Validator.FORMAT_CHECKER.checkers


@pytest.mark.parametrize("case", sorted(AGREE))
def test_the_schema_accepts_a_marker_iff_ingest_forwards_it(case: str) -> None:
    record, accepted = AGREE[case]
    assert VALIDATOR.is_valid(record) is accepted
    assert forwarded(record) is accepted


@pytest.mark.parametrize("case", sorted(EXCEPTIONS))
def test_what_a_schema_cannot_express_is_refused_by_ingest_alone(case: str) -> None:
    assert VALIDATOR.is_valid(EXCEPTIONS[case])
    assert not forwarded(EXCEPTIONS[case])


def test_the_schema_example_is_a_marker_ingest_forwards() -> None:
    (example,) = SCHEMA["examples"]
    assert VALIDATOR.is_valid(example)
    assert example["version"] == set_id(load_rules(example["rules"]))
    assert forwarded(example)
