"""Wire protocol of visio-guichet: typed messages, codec, JSON Schema, session rules, bus."""

from .bus import LocalBus, MessageBus, Subscription, address, not_cancelled
from .channels import CHANNELS, ChannelRule, ChannelTraffic, check_payload
from .codec import CLIENT_TYPES, decode_client, decode_server, encode, request_id_of
from .errors import (
    Forbidden,
    InvalidData,
    MalformedMessage,
    NotAuthenticated,
    ProtocolError,
    RateLimited,
    Unavailable,
    UnknownType,
)
from .schema import protocol_schema
from .session import ALLOWED, check_allowed

__all__ = [
    "ALLOWED",
    "CHANNELS",
    "CLIENT_TYPES",
    "ChannelRule",
    "ChannelTraffic",
    "Forbidden",
    "InvalidData",
    "LocalBus",
    "MalformedMessage",
    "MessageBus",
    "NotAuthenticated",
    "ProtocolError",
    "RateLimited",
    "Subscription",
    "Unavailable",
    "UnknownType",
    "address",
    "check_allowed",
    "check_payload",
    "decode_client",
    "decode_server",
    "encode",
    "not_cancelled",
    "protocol_schema",
    "request_id_of",
]
