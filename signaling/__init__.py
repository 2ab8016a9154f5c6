"""Wire protocol of visio-guichet: typed messages, codec, JSON Schema, session rules, bus."""

from .bus import LocalBus, MessageBus, Subscription, address
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
from .session import ALLOWED, check_allowed

__all__ = [
    "ALLOWED",
    "CLIENT_TYPES",
    "Forbidden",
    "LocalBus",
    "MalformedMessage",
    "MessageBus",
    "NotAuthenticated",
    "ProtocolError",
    "RateLimited",
    "Subscription",
    "UnknownType",
    "address",
    "check_allowed",
    "decode_client",
    "encode",
    "protocol_schema",
    "request_id_of",
]
