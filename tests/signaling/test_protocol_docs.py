"""docs/protocol.md and docs/protocol.schema.json say what the code does."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from signaling import CLIENT_TYPES, decode_client, encode, protocol_schema
from signaling.messages import ClientMessage, ServerMessage

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "protocol.md"
SCHEMA = ROOT / "docs" / "protocol.schema.json"
_JSON_BLOCK = re.compile(r"^```json\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.MULTILINE)


def _tags(union: Any) -> set[str]:
    return {str(cls.__struct_config__.tag) for cls in union.__args__}


SERVER_TYPES = _tags(ServerMessage)


def _examples() -> list[dict[str, Any]]:
    return [json.loads(block) for block in _JSON_BLOCK.findall(REFERENCE.read_text("utf-8"))]


def _validator(union: str) -> jsonschema.Draft202012Validator:
    """The committed schema, rooted at one direction's union of messages."""
    schema = json.loads(SCHEMA.read_text("utf-8"))
    rooted = {k: v for k, v in schema.items() if k != "oneOf"}
    return jsonschema.Draft202012Validator({**rooted, "$ref": f"#/$defs/{union}"})


def test_committed_schema_is_the_generated_one() -> None:
    committed = SCHEMA.read_text("utf-8")
    assert json.loads(committed) == protocol_schema()
    assert committed.endswith("}\n")
    jsonschema.Draft202012Validator.check_schema(json.loads(committed))


def test_every_message_type_has_a_heading() -> None:
    headings = _HEADING.findall(REFERENCE.read_text("utf-8"))
    named = {name for heading in headings for name in re.findall(r"`([^`]+)`", heading)}
    missing = (_tags(ClientMessage) | SERVER_TYPES) - named
    assert not missing, f"protocol.md has no heading for {sorted(missing)}"


def test_every_message_type_has_an_example() -> None:
    shown = {example["type"] for example in _examples()}
    assert (_tags(ClientMessage) | SERVER_TYPES) <= shown


@pytest.mark.parametrize("example", _examples(), ids=lambda e: f"{e.get('type')}-{e.get('id', '')}")
def test_example_validates_and_decodes(example: dict[str, Any]) -> None:
    kind = example["type"]
    assert kind in CLIENT_TYPES | SERVER_TYPES, f"{kind} is not a message type"
    if kind in CLIENT_TYPES:
        errors = [e.message for e in _validator("ClientMessage").iter_errors(example)]
        assert not errors, errors
        # The server's own decoder takes it, and nothing is lost on the way.
        decoded = decode_client(json.dumps(example))
        assert json.loads(encode(decoded)).items() >= example.items()
    if kind in SERVER_TYPES:
        errors = [e.message for e in _validator("ServerMessage").iter_errors(example)]
        assert not errors, errors


def test_script_check_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "protocol_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
