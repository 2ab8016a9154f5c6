"""JSON Schema of the wire protocol, generated from the message classes."""

from __future__ import annotations

from typing import Any

import msgspec

from .messages import ClientMessage, ServerMessage

__all__ = ["protocol_schema"]


def protocol_schema() -> dict[str, Any]:
    """One JSON Schema document with ``client`` and ``server`` message unions."""
    (client, server), components = msgspec.json.schema_components(
        [ClientMessage, ServerMessage], ref_template="#/$defs/{name}"
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://visio-guichet.example/protocol.schema.json",
        "title": "visio-guichet WebSocket protocol",
        "$defs": {**components, "ClientMessage": client, "ServerMessage": server},
        # rtc.sdp and rtc.ice travel both ways, so a message may match both unions.
        "anyOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
    }
