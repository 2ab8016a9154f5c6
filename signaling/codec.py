"""Parse client frames into typed messages and dump server messages to JSON text."""

from __future__ import annotations

from typing import Any

import msgspec

from .errors import MalformedMessage, UnknownType
from .messages import ClientMessage, Message, ServerMessage

__all__ = ["CLIENT_TYPES", "decode_client", "decode_server", "encode", "request_id_of"]

_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
_server_decoder: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)
_encoder = msgspec.json.Encoder()


def _tags(union: Any) -> frozenset[str]:
    return frozenset(cls.__struct_config__.tag for cls in union.__args__)


CLIENT_TYPES = _tags(ClientMessage)


def decode_client(frame: str | bytes) -> ClientMessage:
    """Parse one client frame; raise a typed error saying what is wrong with it."""
    try:
        return _decoder.decode(frame)
    except msgspec.ValidationError as exc:
        raw = _loose(frame)
        kind = raw.get("type") if isinstance(raw, dict) else None
        if isinstance(kind, str) and kind not in CLIENT_TYPES:
            raise UnknownType(f"unknown message type {kind!r}") from None
        if kind is None:
            raise MalformedMessage("a message is a JSON object with a string 'type'") from None
        raise MalformedMessage(f"invalid {kind!r} message: {exc}") from None
    except msgspec.DecodeError as exc:
        raise MalformedMessage(f"not valid JSON: {exc}") from None
    except RecursionError:
        # msgspec gives up on deep nesting with RecursionError: a frame of brackets
        # must be refused like any malformed frame, not end the connection.
        raise MalformedMessage("the message is nested too deeply") from None


def decode_server(frame: str | bytes) -> ServerMessage:
    """Parse a server message that another node put on the shared bus."""
    return _server_decoder.decode(frame)


def request_id_of(frame: str | bytes) -> str | None:
    """The ``id`` of a frame that failed to parse, so its error can echo it."""
    raw = _loose(frame)
    if isinstance(raw, dict):
        rid = raw.get("id")
        if isinstance(rid, str) and len(rid) <= 64:
            return rid
    return None


def encode(message: Message) -> str:
    return _encoder.encode(message).decode()


def _loose(frame: str | bytes) -> Any:
    try:
        return msgspec.json.decode(frame)
    except (msgspec.DecodeError, RecursionError):
        return None
