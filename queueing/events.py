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
    "ParticipantJoined",
    "ParticipantLeft",
    "PartyBack",
    "PartyLost",
    "PositionChanged",
    "TextSaid",
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
    joins: CallId | None = None
    """For a request for an interpreter: the call it is for."""
    notify: tuple[str, ...] = ()
    """For a request: the participants of that call to tell how it goes."""
    language: str | None = None


@dataclass(frozen=True)
class CallRefused(Event):
    """A call that never entered the queue: closed, full or no expert signed in."""

    call: CallId
    service: ServiceId
    kiosk: KioskId
    outcome: Outcome
    next_opening: float | None = None
    joins: CallId | None = None
    notify: tuple[str, ...] = ()
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
    joins: CallId | None = None
    notify: tuple[str, ...] = ()


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
    joins: CallId | None = None
    notify: tuple[str, ...] = ()


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
    """The call was answered; for a request for an interpreter, the interpreter joins
    the call named by ``joins`` (see ``ParticipantJoined``)."""

    call: CallId
    service: ServiceId
    kiosk: KioskId
    expert: ExpertId
    waited_s: float
    joins: CallId | None = None


@dataclass(frozen=True)
class PartyLost(Event):
    """A participant of a call lost its connection; the call waits for it until ``until``."""

    call: CallId
    service: ServiceId
    role: str
    party: str
    until: float
    members: tuple[str, ...] = ()
    """The participants of the call now (``<role>:<id>``), to be told."""


@dataclass(frozen=True)
class PartyBack(Event):
    call: CallId
    service: ServiceId
    role: str
    party: str
    members: tuple[str, ...] = ()


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
    joins: CallId | None = None
    notify: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParticipantJoined(Event):
    """A guest joined a connected call (the kiosk and the expert join by ``CallConnected``)."""

    call: CallId
    service: ServiceId
    role: str
    party: str
    name: str
    members: tuple[str, ...]
    """Everyone in the call now, the newcomer included."""
    language: str | None = None
    request: CallId | None = None
    """The request for an interpreter it answered."""


@dataclass(frozen=True)
class ParticipantLeft(Event):
    """A guest left a call (``reason``: left, lost, call_ended, requeued, transferred)."""

    call: CallId
    service: ServiceId
    role: str
    party: str
    reason: str
    stayed_s: float
    """How long it was in the call: interpreter minutes are counted from this."""
    members: tuple[str, ...]
    """Who is left in the call, to be told."""
    name: str = ""
    language: str | None = None


@dataclass(frozen=True)
class TextSaid(Event):
    """A finished line of real-time text, kept because the service keeps a transcript."""

    call: CallId
    service: ServiceId
    role: str
    party: str
    text: str


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
