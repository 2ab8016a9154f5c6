"""What a case file is made of: documents, device commands, shares and audit rows.

The case file itself, whose methods are the transitions, is ``casefiles.machine.CaseFile``.

Rules this module keeps:

1. Every record turns into a JSON-safe dict (``to_dict``) and back (``from_dict``) to an
   equal record: stores keep nothing else.
2. Identifiers the server hands out are unguessable (``new_document_id``,
   ``new_share_code``) but a case id is derived, so every node finds the same case for
   the same call or beneficiary without asking anyone (``case_id_for``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any, Literal, cast

from .errors import CaseError

__all__ = [
    "PRINTABLE",
    "SHARE_CODE_ALPHABET",
    "AuditRow",
    "CaseError",
    "CommandKind",
    "CommandState",
    "DeviceCommand",
    "Document",
    "DocumentState",
    "Origin",
    "Share",
    "as_command_kind",
    "as_origin",
    "case_id_for",
    "new_document_id",
    "new_share_code",
]

Origin = Literal["scan", "upload", "shared"]
"""Where a document came from: the kiosk's scanner, an upload by the expert, or a link
to a document the citizen shared from an earlier call."""

CommandKind = Literal["scan", "print"]

ORIGINS: tuple[Origin, ...] = ("scan", "upload", "shared")
COMMAND_KINDS: tuple[CommandKind, ...] = ("scan", "print")


class DocumentState(StrEnum):
    """The last tracked state of a document (see ``casefiles.machine`` for the moves)."""

    REQUESTED = "requested"
    """A scan command asked for it; no page has reached the server yet."""
    SCANNED = "scanned"
    """The device has scanned it and is uploading it."""
    RECEIVED = "received"
    """Its bytes are stored and checked."""
    VIEWED = "viewed"
    """The expert opened it."""
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPORTED = "exported"
    """Accepted, then handed to the partner's document management system."""
    PRINTED = "printed"
    """Named on the wire only: printing never replaces the review state, it counts
    ``printed_copies`` (and a ``document_printed`` audit row) instead."""
    PURGED = "purged"
    """Its bytes are deleted; the record stays for the audit."""

    @property
    def has_content(self) -> bool:
        """Whether the server holds its bytes."""
        return self in _WITH_CONTENT


_WITH_CONTENT = frozenset(
    {
        DocumentState.RECEIVED,
        DocumentState.VIEWED,
        DocumentState.ACCEPTED,
        DocumentState.REJECTED,
        DocumentState.EXPORTED,
        DocumentState.PRINTED,
    }
)

PRINTABLE = frozenset(
    {
        DocumentState.RECEIVED,
        DocumentState.VIEWED,
        DocumentState.ACCEPTED,
        DocumentState.EXPORTED,
    }
)
"""States from which a document may be printed: it is there and nobody rejected it."""


class CommandState(StrEnum):
    """Where a device command is; the device reports most, the server adds the last two."""

    SENT = "sent"
    QUEUED = "queued"
    SCANNING = "scanning"
    WAITING_PAGE = "waiting_page"
    UPLOADING = "uploading"
    PRINTING = "printing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    """No news from the device before the command's deadline."""
    UNDELIVERABLE = "undeliverable"
    """No device of the kiosk was connected to take it."""

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset(
    {
        CommandState.DONE,
        CommandState.FAILED,
        CommandState.CANCELLED,
        CommandState.TIMED_OUT,
        CommandState.UNDELIVERABLE,
    }
)


@dataclass
class Document:
    """One document of a case file. Its bytes live in a blob store under ``blob``."""

    id: str
    case: str
    call: str
    """The call during which it was requested or uploaded."""
    title: str
    origin: Origin
    mime: str
    """As checked from the content, not as declared; empty until received."""
    pages: int
    size: int
    """Bytes."""
    state: DocumentState
    reason: str
    """Why it was rejected, in words the citizen can act on."""
    created_at: float
    updated_at: float
    command: str = ""
    """Idempotency key of the command or upload that produced it."""
    blob: str = ""
    """Server-generated file name of its bytes; empty before it arrives and once purged."""
    sha256: str = ""
    printed_copies: int = 0
    exported_at: float | None = None
    export_attempts: int = 0
    export_next_at: float | None = None
    """When the exporter may try again after a failure."""
    export_error: str = ""
    from_partner: str = ""
    """For a shared document: the partner whose expert accepted it."""
    retain_until: float = 0.0
    """Its bytes are purged at this time."""

    @property
    def exported(self) -> bool:
        return self.exported_at is not None

    def info(self, shared_by: str = "") -> dict[str, Any]:
        """The fields of the wire's ``DocumentInfo``. ``shared_by`` names the partner
        whose expert accepted it, when it is shown in another case through a share."""
        return {
            "id": self.id,
            "case": self.case,
            "title": self.title,
            "origin": "shared" if shared_by else self.origin,
            "mime": self.mime,
            "pages": self.pages,
            "bytes": self.size,
            "state": self.state.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "reason": self.reason,
            "command": self.command,
            "from_partner": shared_by or self.from_partner,
            "exported": self.exported,
            "printed_copies": self.printed_copies,
        }

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["state"] = self.state.value
        return row

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Document:
        values = _known(cls, data)
        values["state"] = DocumentState(values["state"])
        values["origin"] = as_origin(values["origin"])
        return cls(**values)


@dataclass
class DeviceCommand:
    """A scan or print the expert asked the kiosk's device for."""

    key: str
    """Idempotency key, unique within its case: issuing it again changes nothing."""
    call: str
    kind: CommandKind
    settings: dict[str, Any]
    """Scan settings as on the wire (source, color, resolution, multipage)."""
    document: str
    """The document it prints, or the one a scan fills."""
    copies: int
    title: str
    state: CommandState
    page: int
    pages: int
    reason: str
    issued_by: str
    issued_at: float
    deadline: float
    """Unfinished past this time, it times out; each progress report pushes it on."""
    result: str = ""
    """The document id the command produced (a scan) or printed (a print)."""
    kiosk: str = ""
    """The kiosk whose device it was sent to: only that kiosk's agent reports on it,
    even once a case kept per beneficiary has moved on to a call at another kiosk."""

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["state"] = self.state.value
        return row

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceCommand:
        values = _known(cls, data)
        values["state"] = CommandState(values["state"])
        values["kind"] = as_command_kind(values["kind"])
        values["settings"] = dict(values["settings"])
        return cls(**values)


@dataclass
class Share:
    """The citizen's consent to show the accepted documents of one call in later calls.

    A later case links the share by its code; the documents are never copied, so a
    withdrawal hides them everywhere at once."""

    code: str
    case: str
    partner: str
    """The partner whose expert accepted the documents."""
    documents: list[str]
    given_at: float
    withdrawn_at: float | None = None
    call: str = ""
    """The call in which the consent was given."""

    @property
    def active(self) -> bool:
        return self.withdrawn_at is None

    def withdraw(self, actor: str, now: float) -> list[AuditRow]:
        """Consent withdrawn at once; withdrawing again changes nothing."""
        if self.withdrawn_at is not None:
            return []
        self.withdrawn_at = now
        return [AuditRow(now, self.case, self.call, actor, "share_withdrawn", detail=self.code)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Share:
        values = _known(cls, data)
        values["documents"] = list(values["documents"])
        return cls(**values)


@dataclass(frozen=True)
class AuditRow:
    """One line of the durable audit log: who changed what in which case, and when.

    ``actor`` is ``<role>:<id>`` (``expert:alice``, ``device:k1``, ``kiosk:k1``) or
    ``system`` for the server's own timers."""

    at: float
    case: str
    call: str
    actor: str
    action: str
    document: str = ""
    command: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRow:
        return cls(**_known(cls, data))


def case_id_for(call: str, service: str, beneficiary: str, per_beneficiary: bool) -> str:
    """The case file of a call: one per (service, beneficiary) when the service keeps
    one across calls and a beneficiary was given, else one per call."""
    if per_beneficiary and beneficiary:
        digest = hashlib.sha256(f"{service}\0{beneficiary}".encode()).hexdigest()
        return "b-" + digest[:24]
    return "c-" + call


SHARE_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""No I, O, 0 or 1: a citizen reads the code aloud or types it from a slip of paper.
Thirty-two letters, so a random byte modulo its length is unbiased."""


def new_share_code(random: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """Eight letters of ``SHARE_CODE_ALPHABET`` (40 bits)."""
    return "".join(SHARE_CODE_ALPHABET[byte % len(SHARE_CODE_ALPHABET)] for byte in random(8))


def new_document_id(random: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """An id for an uploaded document (scans get theirs from ``CaseFile.issue``)."""
    return "d-" + random(12).hex()


def _known(cls: type[Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``cls`` found in ``data``: a record written by a newer version
    with more fields still loads."""
    names = {f.name for f in fields(cls)}
    return {name: value for name, value in data.items() if name in names}


def as_origin(value: Any) -> Origin:
    if value not in ORIGINS:
        raise CaseError("invalid_command", f"unknown document origin {value!r}")
    return cast(Origin, value)


def as_command_kind(value: Any) -> CommandKind:
    if value not in COMMAND_KINDS:
        raise CaseError("invalid_command", f"a device can scan or print, not {value!r}", kind=value)
    return cast(CommandKind, value)
