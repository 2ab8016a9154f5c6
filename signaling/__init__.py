"""Wire protocol of visio-guichet: typed messages, codec, JSON Schema, session rules, bus."""

from .codec import CLIENT_TYPES, decode_client, encode, request_id_of
from .errors import (
    Forbidden,
    MalformedMessage,
    NotAuthenticated,
    ProtocolError,
    RateLimited,
    UnknownType,
)
from .schema import protocol_schema

__all__ = [
    "CLIENT_TYPES",
    "Forbidden",
    "MalformedMessage",
    "NotAuthenticated",
    "ProtocolError",
    "RateLimited",
    "UnknownType",
    "decode_client",
    "encode",
    "protocol_schema",
    "request_id_of",
]
