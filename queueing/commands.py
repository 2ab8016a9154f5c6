"""Commands: what the outside world asks of the queue machine.

Each is a small frozen dataclass; the machine's ``apply(command, now)`` either
returns events or raises ``QueueError`` having changed nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ids import CallId, ExpertId, KioskId, ServiceId
from .model import ExpertStatus, PartyRole

__all__ = [
    "AcceptOffer",
    "CancelCall",
    "Command",
    "DeclineOffer",
    "ExpertLost",
    "ExpertSignIn",
    "FinishWrapUp",
    "HangUp",
    "InviteInterpreter",
    "JoinCall",
    "KioskBack",
    "KioskLost",
    "LeaveCall",
    "NodeLost",
    "RecordText",
    "ReportMediaFailure",
    "RequestCall",
    "Restarted",
    "SetStatus",
    "SupervisorLost",
    "TransferCall",
]


@dataclass(frozen=True)
class Command:
    """Base of every command."""


@dataclass(frozen=True)
class RequestCall(Command):
    call: CallId
    """Chosen by the caller of ``apply`` so that replaying a journal gives the same ids."""
    kiosk: KioskId
    service: ServiceId
    beneficiary: str
    language: str | None = None
    interpreter: bool = False


@dataclass(frozen=True)
class CancelCall(Command):
    """The citizen leaves the queue before being answered."""

    call: CallId
    kiosk: KioskId


@dataclass(frozen=True)
class KioskLost(Command):
    """The kiosk's connection dropped; its call waits for it during the grace period."""

    kiosk: KioskId
    link: str = ""
    """The connection that dropped; when the kiosk has another one already (it came back
    first, maybe through another node), the loss of the old one changes nothing."""


@dataclass(frozen=True)
class KioskBack(Command):
    """The kiosk connected (again); resumes its call if it still has one."""

    kiosk: KioskId
    link: str = ""
    """Its connection, named ``<node>/<connection>``: the queue keeps which node holds
    which party, so that the loss of a node is the loss of its parties."""


@dataclass(frozen=True)
class ExpertSignIn(Command):
    """An expert console connected (again), with the skills its token grants."""

    expert: ExpertId
    name: str
    partner: str
    services: tuple[ServiceId, ...]
    languages: tuple[str, ...] = ()
    link: str = ""


@dataclass(frozen=True)
class ExpertLost(Command):
    expert: ExpertId
    link: str = ""


@dataclass(frozen=True)
class NodeLost(Command):
    """A server node stopped sending its heartbeat: each party it held is lost, as if
    its connection had dropped, unless the party has connected through another node."""

    node: str


@dataclass(frozen=True)
class SetStatus(Command):
    expert: ExpertId
    status: ExpertStatus


@dataclass(frozen=True)
class AcceptOffer(Command):
    expert: ExpertId
    call: CallId


@dataclass(frozen=True)
class DeclineOffer(Command):
    expert: ExpertId
    call: CallId


@dataclass(frozen=True)
class HangUp(Command):
    """The kiosk or the answering expert ends the call for everyone; from a guest
    (interpreter, supervisor) it is a ``LeaveCall``: the call goes on."""

    call: CallId
    by: str
    """The id of the participant hanging up."""
    role: PartyRole
    """Which kind of id ``by`` is: ids of kiosks, experts and supervisors come from
    different sources and may collide. Interpreters speak as ``expert``."""


@dataclass(frozen=True)
class LeaveCall(Command):
    """A guest leaves a running call; the others stay connected."""

    call: CallId
    by: str
    role: PartyRole


@dataclass(frozen=True)
class InviteInterpreter(Command):
    """The answering expert, or the kiosk where its service allows it, asks for an
    interpreter in ``language``; the request waits in an interpreting service's queue."""

    call: CallId
    by: str
    role: PartyRole
    language: str


@dataclass(frozen=True)
class JoinCall(Command):
    """A supervisor of the call's partner joins a connected call, receiving only."""

    call: CallId
    supervisor: str
    name: str
    partner: str
    link: str = ""


@dataclass(frozen=True)
class SupervisorLost(Command):
    """A supervisor's connection dropped: it leaves the calls it had joined."""

    supervisor: str
    link: str = ""


@dataclass(frozen=True)
class RecordText(Command):
    """A finished line of real-time text, kept where the service keeps a transcript."""

    call: CallId
    by: str
    role: PartyRole
    text: str


@dataclass(frozen=True)
class FinishWrapUp(Command):
    expert: ExpertId
    call: CallId
    reason: str


@dataclass(frozen=True)
class TransferCall(Command):
    expert: ExpertId
    call: CallId
    service: ServiceId


@dataclass(frozen=True)
class ReportMediaFailure(Command):
    call: CallId
    by: str
    role: PartyRole
    detail: str = ""


@dataclass(frozen=True)
class Restarted(Command):
    """The server process started again: every connection it had is gone."""
