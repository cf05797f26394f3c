"""schemas/asyncapi.json: a valid AsyncAPI 3.0 document that agrees with the config and records.

Validated against the official AsyncAPI 3.0.0 JSON Schema, vendored from the
``@asyncapi/specs`` 6.11.1 package (Apache-2.0) as
tests/fixtures/asyncapi/asyncapi-3.0.0.schema.json (the ``-without-$id`` variant,
self-contained).
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import jsonschema
import pytest

from schemas import records
from streams import cli
from streams.asyncapi import document
from streams.config import Config, Topics

ROOT = Path(__file__).resolve().parents[3]
DOC_FILE = ROOT / "schemas" / "asyncapi.json"
SPEC = ROOT / "tests" / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json"

# Topics field -> the record contract its messages carry (None: internal, inline)
CONTRACTS = {
    "purchases": records.SCHEMA_PURCHASE,
    "sessions": records.SCHEMA_SESSION,
    "consents": records.SCHEMA_CONSENT,
    "nudges": records.SCHEMA_NUDGE,
    "decisions": records.SCHEMA_DECISION,
    "outcomes": records.SCHEMA_OUTCOME,
    "dlq": records.SCHEMA_DEAD_LETTER,
    "customer_events": None,
}


def _validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SPEC.read_text()))


def test_checked_in_document_is_valid_asyncapi_3() -> None:
    doc = json.loads(DOC_FILE.read_text())
    errors = sorted(_validator().iter_errors(doc), key=str)
    assert errors == [], errors[0].message if errors else ""
    assert doc["asyncapi"] == "3.0.0"


def test_the_validator_really_rejects_a_broken_document() -> None:
    doc = document()
    doc["operations"]["sendNudges"]["action"] = "publish"  # AsyncAPI 2 wording
    assert not _validator().is_valid(doc)


def test_checked_in_document_equals_what_the_code_generates() -> None:
    # `python -c 'import json; from streams.asyncapi import document; ...'` regenerates it
    assert json.loads(DOC_FILE.read_text()) == document()


def test_one_channel_per_configured_topic_with_its_record_schema_and_key() -> None:
    doc = document()
    topics = Topics()
    by_address = {c["address"]: c for c in doc["channels"].values()}
    assert sorted(by_address) == sorted(topics.all())
    assert {f.name for f in fields(Topics)} == set(CONTRACTS)
    for name, contract in CONTRACTS.items():
        channel = by_address[getattr(topics, name)]
        assert channel["bindings"]["kafka"]["topic"] == channel["address"]
        main = [m for m in channel["messages"].values() if m["name"] != "controlAdvance"]
        assert len(main) == 1
        message = main[0]
        key = message["bindings"]["kafka"]["key"]
        payload = message["payload"]
        if contract is None:
            kinds = {s["properties"]["type"]["const"] for s in payload["oneOf"]}
            assert kinds == {"ev", "adv", "tick", "bundle"}  # agents/messages.py
            assert "__bundle__" in key["description"] and "__tick__" in key["description"]
            continue
        schema_file = ROOT / "schemas" / payload["$ref"].removeprefix("./")
        record_schema = json.loads(schema_file.read_text())
        assert record_schema["properties"]["schema"]["const"] == contract
        if channel["address"] in topics.inputs():  # any key, and the replay clock marker
            assert key["type"] == ["string", "null"]
            assert "controlAdvance" in channel["messages"]
        elif name == "dlq":
            assert key["pattern"] == "^.+:[0-9]+:[0-9]+$"
        else:
            assert "customer_id" in key["description"]
            assert "customer_id" in record_schema["required"]


def test_operations_say_who_receives_and_who_sends_every_channel() -> None:
    doc = document()
    actions: dict[str, set[str]] = {}
    for op in doc["operations"].values():
        channel = op["channel"]["$ref"].removeprefix("#/channels/")
        actions.setdefault(channel, set()).add(op["action"])
        for ref in op["messages"]:
            assert ref["$ref"].startswith(f"#/channels/{channel}/messages/")
            assert ref["$ref"].rpartition("/")[2] in doc["channels"][channel]["messages"]
    assert actions == {
        "purchases": {"receive"},
        "sessions": {"receive"},
        "consents": {"receive"},
        "nudges": {"send"},
        "decisions": {"send"},
        "outcomes": {"send"},
        "dlq": {"send"},
        "customerEvents": {"send", "receive"},
    }


def test_cli_prints_the_effective_topic_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RETENTION_TOPIC_PREFIX", "acme.")
    assert cli.main(["schema", "asyncapi"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert _validator().is_valid(doc)
    prefixed = Config(topic_prefix="acme.").topics
    assert sorted(c["address"] for c in doc["channels"].values()) == sorted(prefixed.all())
    assert doc["channels"]["nudges"]["address"] == "acme.retention.nudges"
