"""The input corpus (tests/fixtures/corpus/inputs.jsonl), read both ways: by the
processor and by a third-party JSON Schema validator with format checks (jsonschema's
``FormatChecker``; ``format: date-time`` by ``rfc3339-validator``).

What the processor accepts as RFC 3339, the schema with its formats accepts, and the
other way round (README "Inputs"), with the documented exceptions:

* ``lenient:FORM``: a space for ``T`` or a ``:60`` second.  Accepted and counted
  (``retention_lenient_timestamps_total{form}``) until a later version refuses them;
  the schema refuses them already.
* ``year_1_before_utc``: a year-1 time whose offset puts it before year 1 in UTC,
  earlier than any accepted event time (``early_timestamp``).
* ``go_zero_time``: before ``RETENTION_MIN_EVENT_TIME`` (``early_timestamp``), a
  bound a schema cannot express, like ``future_timestamp``.

``timezone_ignored`` is an accepted event whose ``timezone`` string is no zone the
pinned tzdata knows: applied with its zone ignored (README "Inputs"), so the schema
accepts it like any other accepted event.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from agents.core.validation import ValidationError, validate
from streams.config import Topics
from tests.fixtures.contracts import check_outputs

ROOT = Path(__file__).resolve().parents[3]
CORPUS = ROOT / "tests" / "fixtures" / "corpus" / "inputs.jsonl"
FAR_FUTURE = 2**62  # no future_timestamp: not expressible in a schema
HUGE = 1 << 30  # no too_large, likewise
# Refused by the processor, accepted by the format checker (module docstring).
EXCEPTIONS = {"year_1_before_utc", "go_zero_time"}
ACCEPTED = ("accepted", "timezone_ignored")

# Every input contract's schema file (docs/lifecycle.md "Inputs" for the lifecycle's).
INPUTS = (
    "purchase",
    "session",
    "consent",
    "signup",
    "product_view",
    "cart",
    "order_cancelled",
    "purchase_2",
)

CASES = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]


def _validators() -> dict[str, Draft202012Validator]:
    checker = Draft202012Validator.FORMAT_CHECKER
    out = {}
    for name in INPUTS:
        schema = json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())
        out[schema["properties"]["schema"]["const"]] = Draft202012Validator(
            schema, format_checker=checker
        )
    return out


VALIDATORS = _validators()


def ours(message: Any) -> str:
    """``accepted``, ``lenient:FORM``, ``timezone_ignored`` or the dead-letter code."""
    lenient: Counter[str] = Counter()
    try:
        event = validate(
            orjson.dumps(message),
            now=FAR_FUTURE,
            max_bytes=HUGE,
            future_tolerance=0,
            lenient=lenient,
        )
    except ValidationError as exc:
        return exc.code
    if lenient:
        return f"lenient:{next(iter(lenient))}"
    return "timezone_ignored" if event.timezone_ignored is not None else "accepted"


def theirs(message: Any) -> bool:
    validator = VALIDATORS.get(message.get("schema")) if isinstance(message, dict) else None
    return validator is not None and validator.is_valid(message)


def test_the_third_party_validator_checks_date_time() -> None:
    # Without rfc3339-validator (a dev dependency) jsonschema skips the format silently.
    assert "date-time" in Draft202012Validator.FORMAT_CHECKER.checkers
    assert not theirs(CASES[0]["message"] | {"occurred_at": "2026-02-30T10:15:00Z"})


def test_the_corpus_covers_every_outcome() -> None:
    kinds = {c["expect"] for c in CASES}
    assert {"accepted", "lenient:space_separator", "lenient:leap_second"} <= kinds
    assert {"naive_timestamp", "invalid_timestamp", "missing_field", "invalid_field"} <= kinds
    assert "unknown_schema" in kinds
    assert "timezone_ignored" in kinds
    assert len({c["case"] for c in CASES}) == len(CASES)
    # Each contract is read both ways, accepted and refused.
    contracts = set(VALIDATORS)
    assert {c["message"].get("schema") for c in CASES if c["expect"] == "accepted"} >= contracts
    refused = {c["message"].get("schema") for c in CASES if c["expect"] not in ACCEPTED}
    assert refused >= contracts


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_the_processor_and_the_schema_with_formats_agree(case: dict[str, Any]) -> None:
    message, expect = case["message"], case["expect"]
    assert ours(message) == expect
    schema_accepts = theirs(message)
    if case["case"] in EXCEPTIONS:
        assert schema_accepts and expect != "accepted"
    else:
        assert schema_accepts == (expect in ACCEPTED)


def test_the_e2e_output_check_refuses_what_a_consumer_validator_refuses() -> None:
    # tests/e2e/harness.py Deployment.read runs every consumed output through it.
    topics = Topics()
    outcome = json.loads((ROOT / "schemas" / "outcome.schema.json").read_text())["examples"][0]
    check_outputs(topics, topics.outcomes, [outcome])
    check_outputs(topics, topics.customer_events, [{"not": "checked"}])  # internal
    for bad in ({"hours_to_convert": 0.0}, {"due_at": "2026-02-30T10:00:00Z"}):
        with pytest.raises(AssertionError, match=r"outcome\.schema\.json"):
            check_outputs(topics, topics.outcomes, [outcome | bad])
