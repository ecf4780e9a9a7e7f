"""The checked-in JSON Schema is the one generated from the contract, and SDK output obeys it."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema

import aipulse
from aipulse.contract import json_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "collectors" / "schema" / "aipulse-event-v1.json"


def test_schema_file_matches_the_models():
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema(), (
        "regenerate: python -c \"import json; from aipulse.contract import json_schema; "
        "print(json.dumps(json_schema(), indent=2, sort_keys=True))\" > collectors/schema/aipulse-event-v1.json")


def test_sdk_events_validate_against_the_schema(captured):
    schema = json.loads(SCHEMA_FILE.read_text())
    with aipulse.interaction(feature="chat", model="gpt-4o", user_id="u") as call:
        call.update(input_tokens=3, output_tokens=4, attributes={"a": 1})
    aipulse.feedback(call.id, "task_completed", score=1.0)
    aipulse.evaluate(call.id, score=0.7, source="shadow")
    assert len(captured.events) == 3
    for ev in captured.events:
        jsonschema.validate(ev, schema)
