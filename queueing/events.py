"""Events: what happened in the queue, in order.

Every event carries ``at`` (the ``now`` of the command or timer that caused it).
The event log keeps one row per event; reports are computed from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ids import CallId, ExpertId, KioskId, ServiceId
from .model import CallState, ExpertState, ExpertStatus, Outcome

__all__ = [
    "CallConnected",
    "CallEnded",
    "CallOffered",
    "CallQueued",
    "CallRefused",
    "CallRequeued",
    "CallResumed",
    "CallTransferred",
    "Event",
    "ExpertChanged",
    "OfferEnded",
    "PartyBack",
    "PartyLost",
    "PositionChanged",
    "WrapUpFinished",
    "WrapUpStarted",
]


@dataclass(frozen=True)
class Event:
    at: float


@dataclass(frozen=True)
class CallQueued(Event):
    call: CallId
    service: ServiceId
    kiosk: KioskId
    beneficiary: str
    priority: int
    position: int


@dataclass(frozen=True)
class CallRefused(Event):
    """A call that never entered the queue: closed, full or no expert signed in."""

    call: CallId
    service: ServiceId
    kiosk: KioskId
    outcome: Outcome
    next_opening: float | None = None
    code: str = "call_refused"
    """The wire error code the kiosk gets; rows logged before it existed load with this."""
    reason: str = "the call could not be queued"
    """The wire error's reason, in words a citizen can be shown."""


@dataclass(frozen=True)
class PositionChanged(Event):
    call: CallId
    service: ServiceId
    kiosk: KioskId
    position: int


@dataclass(frozen=True)
class CallOffered(Event):
    call: CallId
    service: ServiceId
    kiosk: KioskId
    expert: ExpertId
    beneficiary: str
    waited_s: float
    expires_at: float
    language: str | None = None
    interpreter: bool = False
    transferred_from: ServiceId | None = None


@dataclass(frozen=True)
class OfferEnded(Event):
    """One expert's offer closed.

    ``result``: accepted, declined, timeout, taken, cancelled, expert_lost or status.
    """

    call: CallId
    service: ServiceId
    expert: ExpertId
    result: str


@dataclass(frozen=True)
class CallConnected(Event):
    call: CallId
    service: ServiceId
    kiosk: KioskId
    expert: ExpertId
    waited_s: float


@dataclass(frozen=True)
class PartyLost(Event):
    """A party of a call lost its connection; the call waits for it until ``until``."""

    call: CallId
    service: ServiceId
    role: str
    party: str
    until: float


@dataclass(frozen=True)
class PartyBack(Event):
    call: CallId
    service: ServiceId
    role: str
    party: str


@dataclass(frozen=True)
class CallResumed(Event):
    """The kiosk came back within its grace period and finds its call as it was."""

    call: CallId
    service: ServiceId
    kiosk: KioskId
    state: CallState
    position: int
    expert: ExpertId | None = None


@dataclass(frozen=True)
class CallRequeued(Event):
    """The call lost its expert and goes back to the head of its queue."""

    call: CallId
    service: ServiceId
    kiosk: KioskId
    expert: ExpertId
    position: int
    reason: str


@dataclass(frozen=True)
class CallTransferred(Event):
    call: CallId
    from_service: ServiceId
    to_service: ServiceId
    kiosk: KioskId
    expert: ExpertId
    position: int


@dataclass(frozen=True)
class CallEnded(Event):
    """The call left ``service`` for good, with its outcome."""

    call: CallId
    service: ServiceId
    kiosk: KioskId
    expert: ExpertId | None
    outcome: Outcome
    reason: str
    waited_s: float
    talk_s: float | None = None
    short: bool = False


@dataclass(frozen=True)
class ExpertChanged(Event):
    expert: ExpertId
    status: ExpertStatus
    state: ExpertState
    call: CallId | None = None
    reason: str = ""


@dataclass(frozen=True)
class WrapUpStarted(Event):
    expert: ExpertId
    call: CallId
    service: ServiceId
    until: float


@dataclass(frozen=True)
class WrapUpFinished(Event):
    expert: ExpertId
    call: CallId
    service: ServiceId
    reason: str
    automatic: bool = False
