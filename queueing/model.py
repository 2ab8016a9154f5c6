"""What the queue knows: services, kiosks, experts and calls.

An expert's **status** is chosen by the person (available, on break, logged out);
its **state** is set by the system (idle, offered, in call, wrap-up,
disconnected). The two never mix: going on break during a call changes the status
at once and the state only when the call ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from .hours import ALWAYS_OPEN, OpeningHours
from .ids import CallId, ExpertId, KioskId, ServiceId

__all__ = [
    "Call",
    "CallState",
    "Expert",
    "ExpertState",
    "ExpertStatus",
    "KioskSpec",
    "Outcome",
    "Participant",
    "ParticipantRole",
    "PartyRole",
    "ServiceSpec",
    "Strategy",
]


ParticipantRole = Literal["kiosk", "expert", "interpreter", "supervisor"]
"""What a participant is in a call: the kiosk and the answering expert anchor it (the
call ends when either hangs up); an interpreter and a supervisor are guests who join
and leave while it runs. An interpreter who answers a call of its own service (a
kiosk calling the sign-language service) is that call's expert."""

PartyRole = ParticipantRole
"""Kept for callers that name who sends a command: the role it speaks as."""


class Strategy(StrEnum):
    """How a service picks among its free experts."""

    LONGEST_IDLE = "longest-idle"
    FEWEST_CALLS = "fewest-calls"
    ROUND_ROBIN = "round-robin"
    RING_ALL = "ring-all"


class ExpertStatus(StrEnum):
    AVAILABLE = "available"
    BREAK = "break"
    LOGGED_OUT = "logged_out"


class ExpertState(StrEnum):
    IDLE = "idle"
    OFFERED = "offered"
    IN_CALL = "in_call"
    WRAP_UP = "wrap_up"
    DISCONNECTED = "disconnected"


class CallState(StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"
    CONNECTED = "connected"
    ENDED = "ended"


class Outcome(StrEnum):
    """How a call left its queue; each call has exactly one per service it visited."""

    ANSWERED = "answered"
    ABANDONED = "abandoned"
    TIMED_OUT = "timed_out"
    NO_EXPERT = "no_expert"
    CLOSED = "closed"
    FULL = "full"
    TRANSFERRED = "transferred"
    FAILED = "failed"


@dataclass(frozen=True)
class ServiceSpec:
    """One partner service and its queue's rules."""

    id: ServiceId
    name: str
    partner: str
    hours: OpeningHours = ALWAYS_OPEN
    strategy: Strategy = Strategy.LONGEST_IDLE
    max_wait_s: float = 1800.0
    """A caller still waiting after this long leaves with ``timed_out``."""
    max_waiting: int = 200
    """Callers beyond this many are refused with ``full``."""
    service_level_s: float = 120.0
    """Answered within this many seconds counts toward the service level."""
    short_abandon_s: float = 10.0
    """Abandons quicker than this are marked short (misdials, not lost callers)."""
    offer_timeout_s: float = 20.0
    wrap_up_s: float = 120.0
    beneficiary_label: str = "Numéro d'allocataire"
    beneficiary_pattern: str | None = None
    beneficiary_hint: str = ""
    languages: tuple[str, ...] = ("fr",)
    interpreter: bool = False
    """Whether a caller (the kiosk) may ask for an interpreter on this service; the
    expert always may."""
    interpreting: bool = False
    """Its experts are interpreters: besides its own calls, it queues requests for an
    interpreter in one of its ``languages``, who then joins the requesting call."""
    rtt_transcript: bool = False
    """Whether finished lines of real-time text are kept in the event log."""
    visit_reasons: tuple[str, ...] = ("Information", "Dossier en cours", "Autre")
    expected_handle_s: float = 600.0
    """Prior mean handle time used by the wait estimate until calls are measured."""

    def __post_init__(self) -> None:
        if self.beneficiary_pattern is not None:
            re.compile(self.beneficiary_pattern)

    def accepts_beneficiary(self, beneficiary: str) -> bool:
        if self.beneficiary_pattern is None:
            return len(beneficiary) <= 32
        return re.fullmatch(self.beneficiary_pattern, beneficiary) is not None


@dataclass(frozen=True)
class KioskSpec:
    """A kiosk and the catalogue of services it may call."""

    id: KioskId
    name: str
    place: str
    services: tuple[ServiceId, ...]
    priority: int = 0
    """Callers from this kiosk go ahead of callers with a lower priority."""


@dataclass
class Participant:
    """A guest of a connected call: an interpreter or a supervisor."""

    role: ParticipantRole
    id: str
    name: str
    joined_at: float
    language: str | None = None
    lost_until: float | None = None
    """Set while its connection is lost: it has until then to come back."""

    @property
    def key(self) -> str:
        return f"{self.role}:{self.id}"


@dataclass
class Call:
    """A caller's journey; it keeps its id across a transfer and a requeue.

    A call is also a room: the kiosk, the answering expert, and its guests. A request
    for an interpreter is a call of its own in the interpreting service's queue, with
    ``joins`` naming the call the interpreter will join; it never becomes connected:
    accepting it adds the interpreter to that call."""

    id: CallId
    service: ServiceId
    kiosk: KioskId
    beneficiary: str
    priority: int
    arrived_at: float
    """First arrival, kept across transfers: it orders the queue."""
    queued_at: float
    """Arrival in the current service: the maximum wait counts from here."""
    seq: int
    state: CallState = CallState.WAITING
    language: str | None = None
    interpreter: bool = False
    expert: ExpertId | None = None
    offered_to: set[ExpertId] = field(default_factory=set)
    offer_expires_at: float | None = None
    declined_until: dict[ExpertId, float] = field(default_factory=dict)
    """Experts who declined this call are not offered it again before this time."""
    at_head: bool = False
    """Set when the call lost its expert: it goes before every other caller."""
    connected_at: float | None = None
    answered_after_s: float | None = None
    kiosk_lost_until: float | None = None
    expert_lost_until: float | None = None
    transferred_from: ServiceId | None = None
    position: int = 0
    """Last position told to the kiosk (1 is next); 0 when not waiting."""
    guests: list[Participant] = field(default_factory=list)
    joins: CallId | None = None
    """For a request for an interpreter: the call it is for."""
    interpreter_request: CallId | None = None
    """The request for an interpreter of this call that waits, if any."""
    requests_made: int = 0
    """How many requests for an interpreter this call made: numbers the next one."""

    def queue_key(self) -> tuple[int, int, float, int]:
        return (0 if self.at_head else 1, -self.priority, self.arrived_at, self.seq)

    def members(self) -> dict[str, ParticipantRole]:
        """Who is in the room now, by ``<role>:<id>``; empty until it is connected."""
        if self.state is not CallState.CONNECTED or self.expert is None:
            return {}
        found: dict[str, ParticipantRole] = {
            f"kiosk:{self.kiosk}": "kiosk",
            f"expert:{self.expert}": "expert",
        }
        for guest in self.guests:
            found[guest.key] = guest.role
        return found

    def guest(self, role: str, identity: str) -> Participant | None:
        return next((g for g in self.guests if g.role == role and g.id == identity), None)


@dataclass
class Expert:
    """An expert station as the queue sees it."""

    id: ExpertId
    name: str
    partner: str
    services: frozenset[ServiceId]
    languages: frozenset[str] = frozenset()
    status: ExpertStatus = ExpertStatus.BREAK
    state: ExpertState = ExpertState.DISCONNECTED
    call: CallId | None = None
    idle_since: float = 0.0
    answered: int = 0
    wrap_up_until: float | None = None

    def is_free(self) -> bool:
        return self.status is ExpertStatus.AVAILABLE and self.state is ExpertState.IDLE
