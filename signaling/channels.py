"""The channels of a call: what each carries, who may use it, and how much.

Rules this module keeps:

1. A channel is declared once, in ``CHANNELS``: the shape of its payload, the roles
   that may send on it, the roles that may receive it, its size and rate bounds.
   The next capabilities (co-browsing, documents) add a line here, not a new path.
2. Membership of the call is checked by the call control; this module checks the role
   and the payload, so that both are the one permission check on every node.
3. A payload that does not fit its channel is refused whole (``invalid_data``); a
   sender over the channel's rate gets ``rate_limited`` and nothing is relayed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from .errors import Forbidden, InvalidData, RateLimited

__all__ = [
    "CHANNELS",
    "ChannelRule",
    "ChannelTraffic",
    "RealTimeText",
    "Whisper",
    "check_payload",
]


class RealTimeText(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One line of real-time text as it is being typed (EN 301 549 clause 6.2).

    Each keystroke sends the whole line so far: a correction (backspace) is a shorter
    text with a higher ``seq``, and a lost or late message is repaired by the next."""

    seq: Annotated[int, msgspec.Meta(ge=0)]
    """Grows with each keystroke of the sender; a receiver ignores older ones."""
    text: Annotated[str, msgspec.Meta(max_length=500)]
    final: bool = False
    """True when the line is finished (Enter, or a pause): the next starts afresh."""
    line: Annotated[int, msgspec.Meta(ge=0)] = 0
    """Number of the line in the sender's conversation."""


class Whisper(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A written word between a supervisor and the expert it coaches."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=1_000)]


@dataclass(frozen=True)
class ChannelRule:
    payload: type[msgspec.Struct]
    senders: frozenset[str]
    receivers: frozenset[str]
    max_bytes: int
    rate_per_s: float
    burst: int
    needs_addressee: bool = False


CHANNELS: dict[str, ChannelRule] = {
    "rtt": ChannelRule(
        payload=RealTimeText,
        senders=frozenset({"kiosk", "expert", "interpreter"}),
        receivers=frozenset({"kiosk", "expert", "interpreter", "supervisor"}),
        max_bytes=2_048,
        rate_per_s=30.0,
        burst=60,
    ),
    "whisper": ChannelRule(
        payload=Whisper,
        senders=frozenset({"supervisor", "expert"}),
        receivers=frozenset({"supervisor", "expert"}),
        max_bytes=4_096,
        rate_per_s=2.0,
        burst=10,
        needs_addressee=True,
    ),
}


def check_payload(channel: str, sender_role: str, data: dict[str, Any]) -> msgspec.Struct:
    """The payload as its channel's type, or a typed error saying what is wrong."""
    rule = CHANNELS.get(channel)
    if rule is None:
        raise InvalidData(f"unknown channel {channel!r}")
    if sender_role not in rule.senders:
        raise Forbidden(f"a {sender_role} may not send on the {channel!r} channel")
    encoded = msgspec.json.encode(data)
    if len(encoded) > rule.max_bytes:
        raise InvalidData(
            f"{channel!r} data is {len(encoded)} bytes; the limit is {rule.max_bytes}"
        )
    try:
        return msgspec.json.decode(encoded, type=rule.payload)
    except msgspec.ValidationError as exc:
        raise InvalidData(f"invalid {channel!r} data: {exc}") from None


@dataclass
class ChannelTraffic:
    """Token buckets per channel for one connection: a flood on one channel does not
    starve the others, nor the signalling the call needs."""

    clock: Any = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, channel: str) -> None:
        rule = CHANNELS[channel]
        now = self.clock()
        tokens, stamp = self._buckets.get(channel, (float(rule.burst), now))
        tokens = min(float(rule.burst), tokens + (now - stamp) * rule.rate_per_s)
        if tokens < 1:
            self._buckets[channel] = (tokens, now)
            raise RateLimited(f"too many messages on the {channel!r} channel; slow down")
        self._buckets[channel] = (tokens - 1, now)
