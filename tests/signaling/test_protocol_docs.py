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
from signaling.errors import MalformedMessage
from signaling.messages import CallRequest, ClientMessage, ServerMessage, Welcome

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


@pytest.mark.parametrize(
    "message",
    [
        {"type": "call.request", "id": "1", "service": "caf\n"},
        {"type": "call.transfer", "id": "1", "call": "c", "service": "cpam\n"},
        {"type": "call.invite", "id": "1", "call": "c", "role": "interpreter", "language": "fr\n"},
        {"type": "case.share", "id": "1", "call": "c", "code": "ABCD-1234\n"},
        {"type": "rtc.ice", "call": "c", "candidate": None, "to": "expert:camille\n"},
        {"type": "device.cancel", "call": "c", "key": "k3y-0000-aaaa\n"},
    ],
    ids=["service", "transfer", "language", "share-code", "participant", "idempotency-key"],
)
def test_a_trailing_newline_does_not_pass_a_pattern(message: dict[str, Any]) -> None:
    # Python's ``$`` matches before a final newline; the patterns must not.
    with pytest.raises(MalformedMessage):
        decode_client(json.dumps(message))
    assert not _validator("ClientMessage").is_valid(message)
    decode_client(json.dumps({**message, **_without_newline(message)}))


def _without_newline(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v.rstrip("\n") for k, v in message.items() if isinstance(v, str)}


def test_null_is_accepted_only_where_the_type_says_or_null() -> None:
    accepted = {"type": "call.request", "id": "1", "service": "caf", "language": None}
    assert isinstance(decode_client(json.dumps(accepted)), CallRequest)
    assert _validator("ClientMessage").is_valid(accepted)
    refused = {"type": "call.request", "id": "1", "service": "caf", "beneficiary": None}
    with pytest.raises(MalformedMessage, match="beneficiary"):
        decode_client(json.dumps(refused))
    assert not _validator("ClientMessage").is_valid(refused)


def test_server_messages_send_fields_at_their_default() -> None:
    # protocol.md: "Req. no" in a server message is a default that is still sent;
    # only the nested shapes it names leave defaults out.
    assert not any(cls.__struct_config__.omit_defaults for cls in ServerMessage.__args__)
    welcome = json.loads(
        encode(Welcome(id="1", role="kiosk", identity="k", name="K", services=[], heartbeat_s=10.0))
    )
    assert welcome["kiosk"] is None and welcome["status"] is None and welcome["state"] is None
    assert welcome["interpreter_languages"] == []
