"""schemas/asyncapi.json: a valid AsyncAPI 3.0 document that agrees with the config and records.

Validated against the official AsyncAPI 3.0.0 JSON Schema, vendored from the
``@asyncapi/specs`` 6.11.1 package (Apache-2.0) as
tests/fixtures/asyncapi/asyncapi-3.0.0.schema.json (the ``-without-$id`` variant,
self-contained), and parsed with the official AsyncAPI parser (npm
``@asyncapi/parser``, tests/tools/asyncapi/), which also resolves every ``$ref``.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import jsonschema
import pytest

from schemas import records
from streams import cli
from streams.asyncapi import document, published
from streams.config import Config, Topics
from tests.fixtures.asyncapi_parser import ERROR, diagnostics
from tests.fixtures.asyncapi_parser import errors as parser_errors

ROOT = Path(__file__).resolve().parents[3]
DOC_FILE = ROOT / "schemas" / "asyncapi.json"
SPEC = ROOT / "tests" / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json"

# Topics field -> the record contract its messages carry (None: internal, inline)
CONTRACTS = {
    "purchases": records.SCHEMA_PURCHASE,
    "sessions": records.SCHEMA_SESSION,
    "consents": records.SCHEMA_CONSENT,
    "signups": records.SCHEMA_SIGNUP,
    "product_views": records.SCHEMA_PRODUCT_VIEW,
    "carts": records.SCHEMA_CART,
    "order_cancellations": records.SCHEMA_ORDER_CANCELLED,
    "nudges": records.SCHEMA_NUDGE,
    "decisions": records.SCHEMA_DECISION,
    "outcomes": records.SCHEMA_OUTCOME,
    "dlq": records.SCHEMA_DEAD_LETTER,
    "customer_events": None,
    "rules": "control/rules",
}
# Later versions of a contract on the same topic (docs/lifecycle.md "Inputs").
VERSIONS = {"purchases": {records.SCHEMA_PURCHASE_2}}
# Record schema files: 8 input contracts (purchase/2 too), 4 outputs and the rules marker.
SCHEMA_FILES = 13


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


def test_checked_in_document_parses_with_the_official_parser() -> None:
    # beside its record schemas, as a consumer who clones the repository reads it
    found = diagnostics(DOC_FILE)
    assert [d for d in found if d["severity"] == ERROR] == []


def test_printed_document_is_self_contained_for_the_official_parser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What a consumer saves from `retention schema asyncapi` has no schema files beside it.
    assert cli.main(["schema", "asyncapi"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert parser_errors(printed, tmp_path / "asyncapi.json") == []
    assert printed == published()
    assert "$ref" not in json.dumps(printed).replace('"$ref": "#/', "")  # only local refs


def test_the_parser_really_reports_the_references_a_saved_copy_cannot_follow(
    tmp_path: Path,
) -> None:
    found = parser_errors(document(), tmp_path / "asyncapi.json")
    # one per schema file: the records' and the rules marker's (control_rules.schema.json)
    assert len(found) == SCHEMA_FILES and all(e.startswith("invalid-ref") for e in found), found


def test_bundled_payloads_are_the_record_schemas() -> None:
    doc = published()
    bundled = doc["components"]["schemas"]
    for channel_id, channel in doc["channels"].items():
        for message_id, message in channel["messages"].items():
            ref = message["payload"].get("$ref")
            if ref is None:  # controlAdvance and the internal topic: inline
                continue
            assert ref == f"#/components/schemas/{message_id}"
            checked_in = document()["channels"][channel_id]["messages"][message_id]
            on_disk = json.loads((ROOT / "schemas" / checked_in["payload"]["$ref"]).read_text())
            assert bundled[message_id] == {
                k: v for k, v in on_disk.items() if k not in ("$schema", "$id")
            }
    assert len(bundled) == SCHEMA_FILES


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
        markers = ("controlAdvance", "controlRules")
        main = [m for m in channel["messages"].values() if m["name"] not in markers]
        if name == "rules":
            main = list(channel["messages"].values())
        assert len(main) == 1 + len(VERSIONS.get(name, ()))
        message = main[0]
        for later in main[1:]:  # another version: the same key, its own schema
            assert later["bindings"] == message["bindings"]
            file = ROOT / "schemas" / later["payload"]["$ref"].removeprefix("./")
            assert json.loads(file.read_text())["properties"]["schema"]["const"] in VERSIONS[name]
        key = message["bindings"]["kafka"]["key"]
        payload = message["payload"]
        if contract is None:
            kinds = {s["properties"]["type"]["const"] for s in payload["oneOf"]}
            assert kinds == {"ev", "adv", "rules", "tick", "bundle"}  # agents/wire.py
            assert "__bundle__" in key["description"] and "__tick__" in key["description"]
            continue
        schema_file = ROOT / "schemas" / payload["$ref"].removeprefix("./")
        record_schema = json.loads(schema_file.read_text())
        assert record_schema["properties"]["schema"]["const"] == contract
        if channel["address"] in topics.inputs():  # any key, and the replay clock marker
            assert key["type"] == ["string", "null"]
            assert "controlAdvance" in channel["messages"]
            assert "controlRules" in channel["messages"]
        elif name == "rules":  # compacted on the version
            assert key["pattern"] == "^[0-9a-f]{12}$"
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
        "signups": {"receive"},
        "productViews": {"receive"},
        "carts": {"receive"},
        "orderCancellations": {"receive"},
        "nudges": {"send"},
        "decisions": {"send"},
        "outcomes": {"send"},
        "dlq": {"send"},
        "customerEvents": {"send", "receive"},
        "rules": {"send", "receive"},
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
