"""Wire messages: one JSON text frame per message, discriminated by ``type``.

Rules this module keeps:

1. Every message type is declared once, here, as a frozen ``msgspec`` struct; the
   JSON Schema in ``docs/protocol.schema.json`` is generated from these classes.
2. A request from a client carries an ``id`` (a string of the client's choosing);
   the reply, or the ``error``, echoes it.  Events pushed by the server carry none.
3. Unknown fields are refused, so a typo in a client is an error and never a
   silently ignored field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "Ack",
    "CallCancel",
    "CallConnected",
    "CallData",
    "CallEnded",
    "CallHangup",
    "CallInterpreter",
    "CallInvite",
    "CallJoin",
    "CallMediaFailed",
    "CallOffered",
    "CallParticipants",
    "CallPeerState",
    "CallPosition",
    "CallQueued",
    "CallRequest",
    "CallRequeued",
    "CallResumed",
    "CallSummary",
    "CallTransfer",
    "CallTransferred",
    "CaseConsent",
    "CaseConsented",
    "CaseDocument",
    "CaseFileMessage",
    "CaseReview",
    "CaseShare",
    "CaseWithdraw",
    "ClientMessage",
    "DeviceCancel",
    "DeviceCommand",
    "DeviceHealth",
    "DeviceHealthReport",
    "DevicePage",
    "DevicePart",
    "DevicePrint",
    "DeviceProgress",
    "DeviceScan",
    "DeviceStatus",
    "DocumentInfo",
    "ErrorMessage",
    "ExpertState",
    "ExpertStatusSet",
    "Hello",
    "IceCandidate",
    "IceServer",
    "InterpreterWaiting",
    "KioskInfo",
    "OfferAccept",
    "OfferReject",
    "OfferWithdrawn",
    "ParticipantKey",
    "ParticipantRole",
    "PartyInfo",
    "Ping",
    "Pong",
    "QueueStatus",
    "QueueSubscribe",
    "RtcIce",
    "RtcSdp",
    "ScanSettings",
    "ServerMessage",
    "ServiceInfo",
    "ServiceQueue",
    "ServiceRef",
    "SessionDescription",
    "Welcome",
    "WrapUpDone",
    "WrapUpStarted",
]

# Patterns end with ``(?![\s\S])`` ("no character follows"), not ``$``: in Python ``$``
# also matches before a final newline, so ``"caf\n"`` would pass; the lookahead means
# end of string alike in Python and in ECMAScript (JSON Schema validators).
RequestId = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=64, description="Chosen by the client; echoed by the reply."
    ),
]
CallIdField = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=64, description="Call identifier given by the server."),
]
ServiceIdField = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*(?![\s\S])")
]
Seconds = Annotated[float, msgspec.Meta(ge=0, description="Duration in seconds.")]
ParticipantRole = Literal["kiosk", "expert", "interpreter", "supervisor"]
"""What a participant is in a call; the role decides what it may send and receive."""
ParticipantKey = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=140,
        pattern=r"^(kiosk|expert|interpreter|supervisor):.+(?![\s\S])",
        description="A participant of a call, named '<role>:<id>'.",
    ),
]
LanguageField = Annotated[
    str,
    msgspec.Meta(min_length=2, max_length=16, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*(?![\s\S])"),
]
Timestamp = Annotated[float, msgspec.Meta(description="Unix time in seconds.")]


class Message(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"
):
    """Base of every wire message."""


# ---------------------------------------------------------------------------
# Shared shapes
# ---------------------------------------------------------------------------


class SessionDescription(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An SDP offer or answer, as RTCSessionDescription serialises it."""

    type: Literal["offer", "answer", "pranswer", "rollback"]
    sdp: Annotated[str, msgspec.Meta(max_length=60_000)] = ""


class IceCandidate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One trickled ICE candidate, as RTCIceCandidate.toJSON() gives it."""

    candidate: Annotated[str, msgspec.Meta(max_length=1_000)]
    sdpMid: str | None = None
    sdpMLineIndex: int | None = None
    usernameFragment: str | None = None


class IceServer(msgspec.Struct, frozen=True, omit_defaults=True):
    """An entry of RTCConfiguration.iceServers; TURN credentials are short-lived."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class ServiceInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """A service of a kiosk's catalogue, with its opening state now."""

    id: str
    name: str
    partner: str
    open: bool
    next_opening: Timestamp | None = None
    closes_at: Timestamp | None = None
    timezone: str = "Europe/Paris"
    """IANA zone of the opening hours: show opening times in this zone."""
    beneficiary_label: str = ""
    beneficiary_pattern: str | None = None
    beneficiary_hint: str = ""
    languages: list[str] = []
    interpreter: bool = False
    visit_reasons: list[str] = []


class KioskInfo(msgspec.Struct, frozen=True):
    """Where a kiosk stands, shown to the expert who is offered its call."""

    id: str
    name: str
    place: str


class PartyInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """A participant of a call."""

    role: ParticipantRole
    id: str
    name: str
    place: str = ""
    key: str = ""
    """``<role>:<id>``: how ``to`` and ``sender`` name this participant."""
    language: str | None = None
    """For an interpreter: the language it interprets."""
    sends_media: bool = True
    """False for a supervisor, who only receives."""


class ServiceRef(msgspec.Struct, frozen=True):
    """A service named for people, with its opening state now."""

    id: str
    name: str
    open: bool


class CallSummary(msgspec.Struct, frozen=True, omit_defaults=True):
    """A connected call as admins and supervisors see it."""

    call: str
    service: str
    kiosk: str
    kiosk_name: str
    connected_s: Seconds
    participants: list[PartyInfo]


class InterpreterWaiting(msgspec.Struct, frozen=True, omit_defaults=True):
    """A request for an interpreter that waits in an interpreting service's queue."""

    request: str
    for_call: str
    service: str
    language: str | None
    waited_s: Seconds
    state: Literal["waiting", "offered"]


class ServiceQueue(msgspec.Struct, frozen=True):
    """Live state of one service's queue, for admins and supervisors."""

    service: str
    name: str
    partner: str
    open: bool
    waiting: int
    offered: int
    connected: int
    oldest_wait_s: Seconds
    experts: dict[str, int]
    """Experts of the service by state: idle (free), break (connected, not taking calls),
    offered, in_call, wrap_up, away (not connected)."""


DocumentIdField = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+(?![\s\S])",
        description="Document id.",
    ),
]
IdempotencyKey = Annotated[
    str,
    msgspec.Meta(
        min_length=8,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+(?![\s\S])",
        description="Chosen by the expert's console, once per command and kept on retry: "
        "a command sent twice with the same key runs once.",
    ),
]
DeviceProgressState = Literal[
    "queued",
    "scanning",
    "waiting_page",
    "uploading",
    "printing",
    "done",
    "failed",
    "cancelled",
    "timed_out",
    "undeliverable",
]
"""How a device command goes; the last two are given by the server, never by a device."""
DocumentStateName = Literal[
    "requested",
    "scanned",
    "received",
    "viewed",
    "accepted",
    "rejected",
    "exported",
    "printed",
    "purged",
]


class ScanSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the expert asks the kiosk's scanner for."""

    source: Literal["flatbed", "feeder"] = "flatbed"
    color: Literal["color", "gray"] = "gray"
    resolution: Literal[75, 100, 150, 200, 300, 600] = 150
    multipage: bool = False
    """Several pages gathered into one PDF: the citizen says "add a page" or "finished"."""


class DevicePart(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The state of a kiosk's scanner or printer, as its device agent sees it."""

    present: bool
    ready: bool = False
    state: Annotated[str, msgspec.Meta(max_length=32)] = ""
    """idle, processing, stopped, offline..."""
    detail: Annotated[str, msgspec.Meta(max_length=500)] = ""
    """The device's own words: CUPS state reasons, the SANE error."""
    media: Literal["", "ok", "low", "empty"] = ""
    """Paper, where the printer reports it."""
    toner: Literal["", "ok", "low", "empty"] = ""
    """Toner or ink, where the printer reports it."""


class DeviceHealth(msgspec.Struct, frozen=True, omit_defaults=True):
    """A kiosk's devices as last reported by its agent."""

    kiosk: str
    online: bool
    """Whether the kiosk's device agent is connected now."""
    scanner: DevicePart
    printer: DevicePart
    last_error: str = ""
    at: Timestamp = 0.0
    """When the agent last reported (or went away)."""
    name: str = ""
    """The kiosk's name, for people."""


class DocumentInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """A document of a case file and where it stands."""

    id: str
    case: str
    title: str
    origin: Literal["scan", "upload", "shared"]
    mime: str
    pages: int
    bytes: int
    state: DocumentStateName
    created_at: Timestamp
    updated_at: Timestamp
    reason: str = ""
    """Why it was rejected ("illegible, rescan")."""
    command: str = ""
    """The idempotency key of the scan that produced it."""
    from_partner: str = ""
    """For a shared document: the partner it was accepted by."""
    exported: bool = False
    printed_copies: int = 0


# ---------------------------------------------------------------------------
# Client -> server requests
# ---------------------------------------------------------------------------


class Hello(Message, tag="hello", frozen=True):
    """First message on a connection: authenticates with a JWT (never in the URL)."""

    id: RequestId
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=8_192)]
    language: Annotated[str, msgspec.Meta(max_length=8)] | None = None


class Ping(Message, tag="ping", frozen=True):
    """Application-level liveness probe; answered by ``pong``."""

    id: RequestId


class CallRequest(Message, tag="call.request", frozen=True):
    """Kiosk: the citizen pressed Call for a service of the catalogue."""

    id: RequestId
    service: ServiceIdField
    beneficiary: Annotated[str, msgspec.Meta(max_length=32)] = ""
    language: Annotated[str, msgspec.Meta(max_length=8)] | None = None
    interpreter: bool = False


class CallCancel(Message, tag="call.cancel", frozen=True):
    """Kiosk: leave the queue before being answered."""

    id: RequestId
    call: CallIdField


class CallHangup(Message, tag="call.hangup", frozen=True):
    """Kiosk or answering expert: end the call for everyone. Interpreter or supervisor:
    leave it; the call goes on."""

    id: RequestId
    call: CallIdField


class CallMediaFailed(Message, tag="call.media_failed", frozen=True):
    """Kiosk or expert: media could not be established or was lost for good."""

    id: RequestId
    call: CallIdField
    detail: Annotated[str, msgspec.Meta(max_length=200)] = ""


class ExpertStatusSet(Message, tag="expert.status", frozen=True):
    """Expert: set the status chosen by the person."""

    id: RequestId
    status: Literal["available", "break", "logged_out"]


class OfferAccept(Message, tag="offer.accept", frozen=True):
    """Expert: take the offered call."""

    id: RequestId
    call: CallIdField


class OfferReject(Message, tag="offer.reject", frozen=True):
    """Expert: decline the offered call; it goes to the next expert and keeps its place."""

    id: RequestId
    call: CallIdField


class WrapUpDone(Message, tag="wrapup.done", frozen=True):
    """Expert: record the visit reason and leave wrap-up."""

    id: RequestId
    call: CallIdField
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]


class CallTransfer(Message, tag="call.transfer", frozen=True):
    """Expert: hand a connected call to another service's queue; it keeps its arrival time."""

    id: RequestId
    call: CallIdField
    service: ServiceIdField


class CallInvite(Message, tag="call.invite", frozen=True):
    """Answering expert, or kiosk where the service allows it: ask for an interpreter
    in ``language``. The request waits in the interpreting service's queue; its
    progress arrives as ``call.interpreter``."""

    id: RequestId
    call: CallIdField
    role: Literal["interpreter"]
    language: LanguageField


class CallJoin(Message, tag="call.join", frozen=True):
    """Supervisor: join a connected call of its partner, receiving only."""

    id: RequestId
    call: CallIdField


class CallData(Message, tag="call.data", frozen=True):
    """Any participant: a message on one of the call's channels, relayed by the server
    to the other participants (or to ``to`` only). ``rtt``: real-time text, the line
    being typed, sent at each keystroke; ``whisper``: supervisor <-> expert text the
    kiosk never receives. Size and rate are bounded per channel."""

    call: CallIdField
    channel: Literal["rtt", "whisper"]
    data: dict[str, Any]
    to: ParticipantKey | None = None
    id: RequestId | None = None
    sender: str | None = None
    """Filled in by the server when it relays the message: ``<role>:<id>`` of the sender."""


class RtcSdp(Message, tag="rtc.sdp", frozen=True):
    """A participant: an SDP offer or answer for one other participant of the call.
    Each pair of participants negotiates its own connection."""

    call: CallIdField
    description: SessionDescription
    to: ParticipantKey | None = None
    """The participant it is for; without it, the kiosk's or the answering expert's
    counterpart (two-party calls)."""
    id: RequestId | None = None
    sender: str | None = None
    """Filled in by the server when it relays the message: ``<role>:<id>`` of the sender."""


class RtcIce(Message, tag="rtc.ice", frozen=True):
    """A participant: a trickled ICE candidate for one other participant; ``null``
    marks the end of candidates."""

    call: CallIdField
    candidate: IceCandidate | None
    to: ParticipantKey | None = None
    id: RequestId | None = None
    sender: str | None = None
    """Filled in by the server when it relays the message: ``<role>:<id>`` of the sender."""


class QueueSubscribe(Message, tag="queue.subscribe", frozen=True):
    """Admin or supervisor: receive ``queue.status`` whenever a visible queue changes."""

    id: RequestId


class DeviceScan(Message, tag="device.scan", frozen=True):
    """The expert of a connected call: scan at the kiosk. Progress arrives as
    ``device.progress``; the document as ``case.document``."""

    id: RequestId
    call: CallIdField
    key: IdempotencyKey
    settings: ScanSettings = ScanSettings()
    title: Annotated[str, msgspec.Meta(max_length=120)] = ""


class DevicePrint(Message, tag="device.print", frozen=True):
    """The expert of a connected call: print a document of the case file at the kiosk."""

    id: RequestId
    call: CallIdField
    key: IdempotencyKey
    document: DocumentIdField
    copies: Annotated[int, msgspec.Meta(ge=1, le=9)] = 1


class DeviceCancel(Message, tag="device.cancel", frozen=True):
    """The expert: stop a scan or print command. Relayed to the device agent (without
    ``id``)."""

    call: CallIdField
    key: IdempotencyKey
    id: RequestId | None = None


class DevicePage(Message, tag="device.page", frozen=True):
    """The kiosk, during a multi-page scan: the citizen placed another page
    (``more``) or is finished. Relayed to the device agent, with ``sender``."""

    call: CallIdField
    key: IdempotencyKey
    more: bool
    id: RequestId | None = None
    sender: str | None = None
    """Filled in by the server when it relays the message."""


class DeviceHealthReport(Message, tag="device.health", frozen=True):
    """The device agent: the state of its scanner and printer, at start and on change."""

    scanner: DevicePart
    printer: DevicePart
    last_error: Annotated[str, msgspec.Meta(max_length=500)] = ""
    id: RequestId | None = None


class DeviceProgress(Message, tag="device.progress", frozen=True):
    """The device agent: how a command goes. Told by the server to the call's expert and
    kiosk, with ``kind``."""

    call: CallIdField
    key: IdempotencyKey
    state: DeviceProgressState
    page: Annotated[int, msgspec.Meta(ge=0, le=500)] = 0
    pages: Annotated[int, msgspec.Meta(ge=0, le=500)] = 0
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""
    """For ``failed``: the device's own words."""
    document: str = ""
    """For ``done``: the document the scan produced, or the one printed."""
    upload_kbps: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 0
    """For ``uploading``: the pace of the upload. The kiosk page takes it out of its
    media budget while the upload lasts, so that the link never carries both at once."""
    kind: Literal["", "scan", "print"] = ""
    """Filled in by the server."""
    id: RequestId | None = None


class CaseReview(Message, tag="case.review", frozen=True):
    """The expert of the call: accept a document, or reject it with a reason."""

    id: RequestId
    call: CallIdField
    document: DocumentIdField
    verdict: Literal["accepted", "rejected"]
    reason: Annotated[str, msgspec.Meta(max_length=300)] = ""


class CaseConsent(Message, tag="case.consent", frozen=True):
    """The kiosk: the citizen agrees (``share``) that documents accepted in this call may
    be offered to the expert of a later call, of another partner, through a code
    ("tell us once"); or takes it back. Reply: ``case.consented``."""

    id: RequestId
    call: CallIdField
    share: bool


class CaseShare(Message, tag="case.share", frozen=True):
    """The kiosk: the citizen types the code of an earlier consent; its documents are
    offered to this call's expert."""

    id: RequestId
    call: CallIdField
    code: Annotated[
        str, msgspec.Meta(min_length=4, max_length=16, pattern=r"^[A-Za-z0-9-]+(?![\s\S])")
    ]


class CaseWithdraw(Message, tag="case.withdraw", frozen=True):
    """The kiosk, in a call or not: withdraw the consent behind ``code`` at once."""

    id: RequestId
    code: Annotated[
        str, msgspec.Meta(min_length=4, max_length=16, pattern=r"^[A-Za-z0-9-]+(?![\s\S])")
    ]


ClientMessage = (
    Hello
    | Ping
    | CallRequest
    | CallCancel
    | CallHangup
    | CallMediaFailed
    | ExpertStatusSet
    | OfferAccept
    | OfferReject
    | WrapUpDone
    | CallTransfer
    | CallInvite
    | CallJoin
    | CallData
    | RtcSdp
    | RtcIce
    | QueueSubscribe
    | DeviceScan
    | DevicePrint
    | DeviceCancel
    | DevicePage
    | DeviceHealthReport
    | DeviceProgress
    | CaseReview
    | CaseConsent
    | CaseShare
    | CaseWithdraw
)


# ---------------------------------------------------------------------------
# Server -> client replies and events
# ---------------------------------------------------------------------------


class Welcome(Message, tag="welcome", frozen=True):
    """Reply to ``hello``: who the server thinks you are and what you may use."""

    id: RequestId
    role: str
    identity: str
    name: str
    services: list[ServiceInfo]
    heartbeat_s: Seconds
    kiosk: KioskInfo | None = None
    status: str | None = None
    state: str | None = None
    interpreter_languages: list[str] = []
    """Languages an interpreter can be asked for (from the interpreting services)."""


class Pong(Message, tag="pong", frozen=True):
    """Reply to ``ping``."""

    id: RequestId
    server_time: Timestamp


class Ack(Message, tag="ack", frozen=True):
    """Success reply to a request that has no richer reply."""

    id: RequestId


class ErrorMessage(Message, tag="error", frozen=True):
    """A typed error; ``id`` echoes the request when there was one."""

    code: str
    reason: str
    id: str | None = None
    details: dict[str, Any] = {}


class CallQueued(Message, tag="call.queued", frozen=True):
    """Reply to ``call.request``: the call waits in the queue."""

    id: RequestId
    call: str
    service: str
    position: int
    wait_min_s: Seconds | None = None
    wait_max_s: Seconds | None = None


class CallPosition(Message, tag="call.position", frozen=True):
    """Kiosk: the place in the queue or the estimated wait range changed."""

    call: str
    position: int
    wait_min_s: Seconds | None = None
    wait_max_s: Seconds | None = None


class CallOffered(Message, tag="call.offered", frozen=True):
    """Expert: a call is offered; accept or reject before ``expires_in_s``."""

    call: str
    service: str
    service_name: str
    beneficiary: str
    kiosk: KioskInfo
    waited_s: Seconds
    expires_in_s: Seconds
    language: str | None = None
    interpreter: bool = False
    transferred_from: str | None = None
    transferred_from_name: str | None = None
    joins: str | None = None
    """For an interpreter: the running call it would join."""
    joins_service_name: str | None = None


class OfferWithdrawn(Message, tag="offer.withdrawn", frozen=True):
    """Expert: the offer is gone (taken by another expert, timed out, caller left...)."""

    call: str
    reason: Literal[
        "accepted", "declined", "timeout", "taken", "cancelled", "expert_lost", "status"
    ]


class CallConnected(Message, tag="call.connected", frozen=True):
    """A participant is in the call: who else is, and to whom it makes SDP offers.

    Each pair of participants has its own peer connection; the participant who joined
    later makes the offer (the expert towards the kiosk)."""

    call: str
    service: str
    peer: PartyInfo
    """The kiosk's counterpart (the answering expert), or for everyone else the kiosk."""
    ice_servers: list[IceServer]
    media_mode: Literal["p2p", "relay"]
    initiator: bool
    """True when ``offer_to`` is not empty."""
    you: str = ""
    """This participant, ``<role>:<id>``."""
    participants: list[PartyInfo] = []
    """Everyone in the call now, this participant included."""
    offer_to: list[str] = []
    """Participants this one must send an SDP offer to."""
    send_media: bool = True
    """False for a supervisor: it receives and sends nothing."""
    uplink_kbps: int | None = None
    """The kiosk's uplink budget: its outgoing connections share it, audio first."""
    beneficiary: str = ""
    transfer_targets: list[ServiceRef] = []
    """For the expert: the services of the kiosk's catalogue the call may go to."""
    rtt_transcript: bool = False
    """Whether the service keeps the real-time text in its event log."""


class CallParticipants(Message, tag="call.participants", frozen=True):
    """Every participant: someone joined or left the call; the whole list as it is now."""

    call: str
    participants: list[PartyInfo]
    change: Literal["joined", "left"]
    party: PartyInfo
    reason: str = ""
    offer_to: list[str] = []
    """Whom this participant must now send an SDP offer to (usually nobody: the
    newcomer makes the offers)."""


class CallInterpreter(Message, tag="call.interpreter", frozen=True):
    """Kiosk and answering expert: how the request for an interpreter goes.

    ``unavailable`` and ``left`` leave the call running; ``reason`` says why
    (``closed``, ``full``, ``no_expert``, ``timed_out``, ``cancelled``, ``lost``...)."""

    call: str
    state: Literal["queued", "offered", "joined", "unavailable", "left", "lost"]
    language: str | None = None
    position: int | None = None
    interpreter: PartyInfo | None = None
    reason: str = ""
    next_opening: Timestamp | None = None


class CallResumed(Message, tag="call.resumed", frozen=True):
    """Kiosk after reconnecting: the call it had is still there (waiting or connected)."""

    call: str
    service: str
    state: Literal["waiting", "offered", "connected"]
    position: int | None = None


class CallPeerState(Message, tag="call.peer_state", frozen=True):
    """Another participant's connection was lost (and may come back) or came back."""

    call: str
    state: Literal["lost", "back"]
    grace_s: Seconds | None = None
    party: str | None = None
    """``<role>:<id>`` of the participant whose connection changed."""


class CallRequeued(Message, tag="call.requeued", frozen=True):
    """Kiosk: the expert was lost; the call is back at the head of its queue."""

    call: str
    position: int
    reason: str


class CallTransferred(Message, tag="call.transferred", frozen=True):
    """Kiosk: the expert handed the call to another service; it waits there."""

    call: str
    service: str
    service_name: str
    position: int


class CallEnded(Message, tag="call.ended", frozen=True):
    """The call is over, with its outcome."""

    call: str
    outcome: Literal[
        "answered", "abandoned", "timed_out", "no_expert", "closed", "full", "transferred", "failed"
    ]
    reason: str = ""


class WrapUpStarted(Message, tag="wrapup.started", frozen=True):
    """Expert: the call ended; choose a visit reason before ``deadline_in_s``."""

    call: str
    service: str
    reasons: list[str]
    deadline_in_s: Seconds


class ExpertState(Message, tag="expert.state", frozen=True):
    """Expert: its status (set by the person) or state (set by the system) changed."""

    status: Literal["available", "break", "logged_out"]
    state: Literal["idle", "offered", "in_call", "wrap_up", "disconnected"]
    call: str | None = None
    reason: str = ""


class QueueStatus(Message, tag="queue.status", frozen=True):
    """Admin or supervisor: every visible service's queue, now."""

    at: Timestamp
    services: list[ServiceQueue]
    calls: list[CallSummary] = []
    """Connected calls of the visible services, with their participants."""
    interpreter_requests: list[InterpreterWaiting] = []
    """Requests for an interpreter waiting for the visible calls."""
    devices: list[DeviceHealth] = []
    """One per kiosk that calls a visible service; ``online`` false without an agent."""


class DeviceCommand(Message, tag="device.command", frozen=True):
    """The device agent: run a scan or a print for the expert. ``upload_url`` takes the
    scan (``POST``, raw body, ``Idempotency-Key: <key>``), paced to ``upload_kbps`` so
    that the call keeps its share of the kiosk's link."""

    call: str
    key: str
    kind: Literal["scan", "print"]
    upload_url: str
    upload_kbps: int
    settings: ScanSettings | None = None
    document: str = ""
    """For a print: the document, fetched at ``/api/documents/<document>/content``."""
    copies: int = 1
    title: str = ""


class DeviceStatus(Message, tag="device.status", frozen=True):
    """The call's expert and kiosk: the kiosk's devices, after ``call.connected`` and on
    every change."""

    health: DeviceHealth


class CaseDocument(Message, tag="case.document", frozen=True):
    """The call's expert, interpreter and kiosk: a document was added or changed state."""

    call: str
    document: DocumentInfo


class CaseFileMessage(Message, tag="case.file", frozen=True):
    """The call's expert and kiosk: the whole case file, after ``call.connected`` and
    after ``case.share``."""

    call: str
    case: str
    documents: list[DocumentInfo]
    consent: bool = False
    """Whether the citizen agreed to share this call's accepted documents."""
    share_code: str = ""


class CaseConsented(Message, tag="case.consented", frozen=True):
    """Reply to ``case.consent``: the code to type at a later call (empty once withdrawn)."""

    id: RequestId
    call: str
    share: bool
    code: str = ""


ServerMessage = (
    Welcome
    | Pong
    | Ack
    | ErrorMessage
    | CallQueued
    | CallPosition
    | CallOffered
    | OfferWithdrawn
    | CallConnected
    | CallResumed
    | CallPeerState
    | CallParticipants
    | CallInterpreter
    | CallData
    | CallRequeued
    | CallTransferred
    | CallEnded
    | WrapUpStarted
    | ExpertState
    | QueueStatus
    | RtcSdp
    | RtcIce
    | DeviceCommand
    | DevicePage
    | DeviceCancel
    | DeviceProgress
    | DeviceStatus
    | CaseDocument
    | CaseFileMessage
    | CaseConsented
)
