"""A case file and its transitions, as a pure state machine (sans-I/O).

Rules this module keeps:

1. Every method either raises ``CaseError`` having changed nothing, or changes the case
   and returns the audit rows that say what changed, in order. An empty list means the
   request was already satisfied (a repeat): nothing changed.
2. Time is never read: every method that depends on it takes ``now`` (Unix seconds).
   ``next_deadline()`` tells when ``expire(now)`` must next be called.
3. Repeats are harmless. Issuing a known command key returns that command with
   ``created=False``; adding a document under a key that already produced one returns
   it with ``created=False``; viewing, reviewing with the same verdict, exporting and
   purging again change nothing. A device report about a finished command is ignored
   (devices report late, or twice).
4. Documents move only as ``DOCUMENT_MOVES`` says::

       requested -> scanned -> received          (a scan; an upload starts at received)
       received -> viewed                        (first time the expert opens it)
       received | viewed -> accepted | rejected  (rejected needs a reason)
       accepted -> exported
       any -> purged                             (bytes deleted, record kept)

   Printing never changes the state (a printed document keeps its review state); it
   adds to ``printed_copies``. Rejected and purged documents cannot be printed.
5. A scan's document exists from the moment the command is issued, in ``requested``,
   with an id derived from the case and the command key. When the command ends without
   a document (failed, cancelled, timed out, undeliverable), the document is **dropped**
   from the case: it never had bytes, and a list of empty placeholders helps nobody.
   The audit row ``document_dropped`` keeps its id and the reason, and the command
   stays in the case with its state and reason, so everyone sees why there is nothing.
   A rescan is a new command with a new key.
6. A device that reports a scan ``done`` before its upload arrived is not believed:
   the command waits in ``uploading`` (deadline pushed on), so a lost upload still
   times out. The upload itself is what finishes a scan.
7. A print reported ``done`` counts its copies on the document at once; the server
   does not call ``mark_printed`` for it again.
8. ``version`` belongs to the store: ``load`` gives it, ``save`` checks it has not
   moved and bumps it. The machine never touches it.

Audit actions, each row naming the document and command it is about:
``case_opened``, ``call_attached``; ``command_issued``, ``command_progress`` (detail:
state and pages), ``command_done|failed|cancelled|timed_out|undeliverable`` (detail: the
reason); ``document_requested|scanned|received|viewed|accepted|rejected|exported|
printed|purged|dropped`` (detail: the rejection reason, the export target, the number of
copies, why a scan's document was dropped); ``export_failed``; ``share_given``,
``share_linked``, ``share_unlinked``, ``consent_withdrawn`` and, from
``Share.withdraw``, ``share_withdrawn`` (detail: the share code).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import CaseError
from .model import (
    PRINTABLE,
    AuditRow,
    CommandState,
    DeviceCommand,
    Document,
    DocumentState,
    Share,
    as_command_kind,
    as_origin,
)

__all__ = ["DOCUMENT_MOVES", "SYSTEM", "CaseFile"]

SYSTEM = "system"
"""The actor of the server's own timers: expiry, export, purge."""

_S = DocumentState
DOCUMENT_MOVES: Mapping[DocumentState, frozenset[DocumentState]] = {
    _S.REQUESTED: frozenset({_S.SCANNED, _S.RECEIVED, _S.PURGED}),
    _S.SCANNED: frozenset({_S.RECEIVED, _S.PURGED}),
    _S.RECEIVED: frozenset({_S.VIEWED, _S.ACCEPTED, _S.REJECTED, _S.PURGED}),
    _S.VIEWED: frozenset({_S.ACCEPTED, _S.REJECTED, _S.PURGED}),
    _S.ACCEPTED: frozenset({_S.EXPORTED, _S.PURGED}),
    _S.REJECTED: frozenset({_S.PURGED}),
    _S.EXPORTED: frozenset({_S.PURGED}),
    _S.PRINTED: frozenset({_S.PURGED}),
    _S.PURGED: frozenset(),
}
"""From each state, the states a document may move to (rule 4)."""

_SCAN_ONLY = frozenset({CommandState.SCANNING, CommandState.WAITING_PAGE, CommandState.UPLOADING})
_PRINT_ONLY = frozenset({CommandState.PRINTING})
_NOT_YET_THERE = frozenset({DocumentState.REQUESTED, DocumentState.SCANNED})

_WHY_NOT_REVIEWABLE = {
    _S.REQUESTED: "it has not been scanned yet",
    _S.SCANNED: "it is still being uploaded",
    _S.ACCEPTED: "it was already accepted",
    _S.REJECTED: "it was already rejected; ask for a new scan instead",
    _S.EXPORTED: "it was accepted and already exported",
    _S.PURGED: "it was deleted at the end of its retention period",
}


@dataclass
class CaseFile:
    """The documents of a call (or of a beneficiary across calls), the device commands
    that produced or printed them, and the shares linked into it."""

    id: str
    service: str
    partner: str
    beneficiary: str
    kiosk: str
    """The kiosk of the latest call."""
    calls: list[str] = field(default_factory=list)
    documents: dict[str, Document] = field(default_factory=dict)
    commands: dict[str, DeviceCommand] = field(default_factory=dict)
    shared: list[str] = field(default_factory=list)
    """Share codes whose documents are linked (never copied) into this case."""
    version: int = 0
    """Set by the store: the version this copy was loaded at (0: never saved)."""
    consents: dict[str, str] = field(default_factory=dict)
    """Call id -> the share code the citizen's consent in that call created."""
    opened_at: float = 0.0

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        case_id: str,
        service: str,
        partner: str,
        beneficiary: str,
        kiosk: str,
        call: str,
        now: float,
    ) -> tuple[CaseFile, list[AuditRow]]:
        case = cls(case_id, service, partner, beneficiary, kiosk, calls=[call], opened_at=now)
        return case, [case._row(now, call, SYSTEM, "case_opened", detail=service)]

    def attach_call(self, call: str, now: float, kiosk: str | None = None) -> list[AuditRow]:
        """A later call of the same beneficiary reuses this case; attaching twice
        changes nothing."""
        if kiosk:
            self.kiosk = kiosk
        if call in self.calls:
            return []
        self.calls.append(call)
        return [self._row(now, call, SYSTEM, "call_attached")]

    # ------------------------------------------------------------------ commands

    def issue(
        self,
        key: str,
        call: str,
        kind: str,
        settings: Mapping[str, Any],
        document: str,
        copies: int,
        title: str,
        actor: str,
        now: float,
        timeout_s: float,
        kiosk: str = "",
    ) -> tuple[DeviceCommand, bool, list[AuditRow]]:
        """Record a device command for ``kiosk``'s device (the case's kiosk by default);
        ``created`` is False for a key already known (the caller then sends nothing
        again). A scan creates its document (rule 5)."""
        known = self.commands.get(key)
        if known is not None:
            return known, False, []
        if not key:
            raise CaseError("invalid_command", "a device command needs an idempotency key")
        checked_kind = as_command_kind(kind)
        if checked_kind == "print":
            self._check_printable(document, copies)
            scan_document = None
        else:
            scan_document = Document(
                id=self._scan_document_id(key),
                case=self.id,
                call=call,
                title=title,
                origin="scan",
                mime="",
                pages=0,
                size=0,
                state=DocumentState.REQUESTED,
                reason="",
                created_at=now,
                updated_at=now,
                command=key,
            )
            document, copies = scan_document.id, 0
        command = DeviceCommand(
            key=key,
            call=call,
            kind=checked_kind,
            settings=dict(settings),
            document=document,
            copies=copies,
            title=title,
            state=CommandState.SENT,
            page=0,
            pages=0,
            reason="",
            issued_by=actor,
            issued_at=now,
            deadline=now + timeout_s,
            kiosk=kiosk or self.kiosk,
        )
        self.commands[key] = command
        rows = [self._row(now, call, actor, "command_issued", document, key, checked_kind)]
        if scan_document is not None:
            self.documents[scan_document.id] = scan_document
            rows.append(self._row(now, call, actor, "document_requested", document, key))
        return command, True, rows

    def progress(
        self,
        key: str,
        state: str,
        page: int,
        pages: int,
        reason: str,
        actor: str,
        now: float,
        timeout_s: float,
    ) -> list[AuditRow]:
        """A device's report on a command; it pushes the deadline on (rules 5 to 7)."""
        command = self._command(key)
        try:
            reported = CommandState(state)
        except ValueError:
            raise CaseError(
                "invalid_command", f"{state!r} is not a state a device command can be in"
            ) from None
        if reported is CommandState.SENT:
            raise CaseError("invalid_command", "only the server marks a command as sent")
        wrong_kind = _PRINT_ONLY if command.kind == "scan" else _SCAN_ONLY
        if reported in wrong_kind:
            raise CaseError(
                "invalid_command",
                f"a {command.kind} command cannot be {reported.value}",
                command=key,
            )
        if command.state.finished:
            return []
        if reported is CommandState.DONE and command.kind == "scan":
            reported = CommandState.UPLOADING  # rule 6: the upload finishes a scan
        command.deadline = now + timeout_s
        if (command.state, command.page, command.pages, command.reason) == (
            reported,
            page,
            pages,
            reason,
        ):
            return []
        command.state, command.page, command.pages, command.reason = (
            reported,
            page,
            pages,
            reason,
        )
        if reported.finished:
            return self._finish(command, actor, now)
        detail = reported.value + (f" {page}/{pages}" if pages else "")
        rows = [self._row(now, command.call, actor, "command_progress", "", key, detail)]
        scanned = self.documents.get(command.document)
        if (
            reported is CommandState.UPLOADING
            and scanned is not None
            and scanned.state is DocumentState.REQUESTED
        ):
            self._move(scanned, DocumentState.SCANNED, now)
            rows.append(self._row(now, scanned.call, actor, "document_scanned", scanned.id, key))
        return rows

    def expire(self, now: float) -> list[AuditRow]:
        """Every unfinished command past its deadline times out."""
        rows: list[AuditRow] = []
        for command in self.commands.values():
            if not command.state.finished and command.deadline <= now:
                command.state = CommandState.TIMED_OUT
                command.reason = "no news from the kiosk's device in time"
                rows += self._finish(command, SYSTEM, now)
        return rows

    def next_deadline(self) -> float | None:
        """When the first unfinished command times out; None when none is pending."""
        deadlines = [c.deadline for c in self.commands.values() if not c.state.finished]
        return min(deadlines, default=None)

    def _finish(self, command: DeviceCommand, actor: str, now: float) -> list[AuditRow]:
        """Rows for a command that just reached a finished state, and what follows."""
        state = command.state
        rows = [
            self._row(
                now,
                command.call,
                actor,
                "command_" + state.value,
                command.document,
                command.key,
                command.reason,
            )
        ]
        target = self.documents.get(command.document)
        if command.kind == "print":
            if state is CommandState.DONE:
                command.result = command.document
                if target is not None and target.state is not DocumentState.PURGED:
                    target.printed_copies += command.copies
                    target.updated_at = now
                    rows.append(self._printed_row(target, command.copies, actor, now))
        elif target is not None and target.state in _NOT_YET_THERE:
            del self.documents[target.id]  # rule 5
            rows.append(
                self._row(
                    now,
                    target.call,
                    actor,
                    "document_dropped",
                    target.id,
                    command.key,
                    f"scan {state.value}: {command.reason}" if command.reason else state.value,
                )
            )
        return rows

    # ------------------------------------------------------------------ documents

    def add_document(
        self,
        doc_id: str,
        call: str,
        title: str,
        origin: str,
        mime: str,
        pages: int,
        size: int,
        blob: str,
        sha256: str,
        command_key: str,
        actor: str,
        now: float,
        retain_until: float,
    ) -> tuple[Document, bool, list[AuditRow]]:
        """A document whose bytes are stored and checked.

        With the key of a scan command it fills that scan's document (``doc_id`` is
        then not used) and finishes the command. With a key already used (a repeated
        upload) it returns the document that key produced, ``created=False``."""
        checked_origin = as_origin(origin)
        if command_key:
            produced = self._document_of_key(command_key)
            command = self.commands.get(command_key)
            if produced is not None and produced.state not in _NOT_YET_THERE:
                return produced, False, []
            if command is not None:
                return self._receive_scan(
                    command, title, mime, pages, size, blob, sha256, actor, now, retain_until
                )
        known = self.documents.get(doc_id)
        if known is not None:
            return known, False, []
        document = Document(
            id=doc_id,
            case=self.id,
            call=call,
            title=title,
            origin=checked_origin,
            mime=mime,
            pages=pages,
            size=size,
            state=DocumentState.RECEIVED,
            reason="",
            created_at=now,
            updated_at=now,
            command=command_key,
            blob=blob,
            sha256=sha256,
            retain_until=retain_until,
        )
        self.documents[doc_id] = document
        return document, True, [self._row(now, call, actor, "document_received", doc_id)]

    def _receive_scan(
        self,
        command: DeviceCommand,
        title: str,
        mime: str,
        pages: int,
        size: int,
        blob: str,
        sha256: str,
        actor: str,
        now: float,
        retain_until: float,
    ) -> tuple[Document, bool, list[AuditRow]]:
        key = command.key
        if command.kind != "scan":
            raise CaseError(
                "invalid_command", "this key belongs to a print command, not a scan", command=key
            )
        document = self.documents.get(command.document)
        if command.state.finished or document is None:
            raise CaseError(
                "invalid_command",
                f"this scan is over ({command.state.value}); the expert must ask for a new one",
                command=key,
            )
        document.title = title or document.title
        document.mime, document.pages, document.size = mime, pages, size
        document.blob, document.sha256, document.retain_until = blob, sha256, retain_until
        self._move(document, DocumentState.RECEIVED, now)
        command.state, command.result, command.reason = CommandState.DONE, document.id, ""
        command.pages = command.pages or pages
        return (
            document,
            True,
            [
                self._row(now, document.call, actor, "document_received", document.id, key),
                self._row(now, command.call, actor, "command_done", document.id, key),
            ],
        )

    def mark_viewed(self, doc: str, actor: str, now: float) -> list[AuditRow]:
        """The expert opened it; only the first time from ``received`` counts."""
        document = self._document(doc)
        if document.state is not DocumentState.RECEIVED:
            return []
        self._move(document, DocumentState.VIEWED, now)
        return [self._row(now, document.call, actor, "document_viewed", doc)]

    def review(self, doc: str, verdict: str, reason: str, actor: str, now: float) -> list[AuditRow]:
        """The expert's verdict: ``accepted``, or ``rejected`` with a reason the citizen
        can act on ("illegible, rescan"). The same verdict again changes nothing."""
        document = self._document(doc)
        if verdict not in (DocumentState.ACCEPTED, DocumentState.REJECTED):
            raise CaseError(
                "invalid_command", f"a verdict is accepted or rejected, not {verdict!r}"
            )
        to = DocumentState(verdict)
        reason = reason.strip()
        if to is DocumentState.REJECTED and not reason:
            raise CaseError(
                "invalid_command",
                "say why the document is rejected, so the citizen knows what to bring",
                document=doc,
            )
        if document.state is to and (to is DocumentState.ACCEPTED or document.reason == reason):
            return []
        if to not in DOCUMENT_MOVES[document.state]:
            raise CaseError(
                "invalid_state",
                f"this document cannot be {to.value}: "
                + _WHY_NOT_REVIEWABLE.get(document.state, f"it is {document.state.value}"),
                document=doc,
                state=document.state.value,
            )
        document.reason = reason if to is DocumentState.REJECTED else ""
        self._move(document, to, now)
        return [self._row(now, document.call, actor, "document_" + to.value, doc, "", reason)]

    def mark_printed(self, doc: str, copies: int, actor: str, now: float) -> list[AuditRow]:
        """Copies printed outside a print command (a print command counts its own)."""
        document = self._check_printable(doc, copies)
        document.printed_copies += copies
        document.updated_at = now
        return [self._printed_row(document, copies, actor, now)]

    def _check_printable(self, doc: str, copies: int) -> Document:
        document = self._document(doc)
        if document.state not in PRINTABLE:
            why = {
                _S.REJECTED: "it was rejected",
                _S.PURGED: "it was deleted at the end of its retention period",
            }.get(document.state, "it has not arrived yet")
            raise CaseError(
                "invalid_command",
                f"this document cannot be printed: {why}",
                document=doc,
                state=document.state.value,
            )
        if not 1 <= copies <= 9:
            raise CaseError("invalid_command", "print between 1 and 9 copies", copies=copies)
        return document

    def _printed_row(self, document: Document, copies: int, actor: str, now: float) -> AuditRow:
        return self._row(
            now, document.call, actor, "document_printed", document.id, "", str(copies)
        )

    # ------------------------------------------------------------------ export

    def export_due(self, now: float) -> list[Document]:
        """Accepted documents not exported yet whose next try is due, oldest first."""
        return [
            d
            for d in self.info_documents()
            if d.state is DocumentState.ACCEPTED
            and (d.export_next_at is None or d.export_next_at <= now)
        ]

    def mark_exported(self, doc: str, target: str, now: float) -> list[AuditRow]:
        """Handed to the partner's document system ``target``; again changes nothing."""
        document = self._document(doc)
        if document.state is DocumentState.EXPORTED:
            return []
        if document.state is not DocumentState.ACCEPTED:
            raise CaseError(
                "invalid_state",
                f"only an accepted document is exported; this one is {document.state.value}",
                document=doc,
            )
        self._move(document, DocumentState.EXPORTED, now)
        document.exported_at, document.export_next_at, document.export_error = now, None, ""
        return [self._row(now, document.call, SYSTEM, "document_exported", doc, "", target)]

    def export_failed(self, doc: str, error: str, next_at: float, now: float) -> list[AuditRow]:
        """The exporter will try again at ``next_at``."""
        document = self._document(doc)
        if document.state is not DocumentState.ACCEPTED:
            raise CaseError(
                "invalid_state",
                f"only an accepted document is exported; this one is {document.state.value}",
                document=doc,
            )
        document.export_attempts += 1
        document.export_error, document.export_next_at = error, next_at
        document.updated_at = now
        return [self._row(now, document.call, SYSTEM, "export_failed", doc, "", error)]

    # ------------------------------------------------------------------ purge

    def purge_due(self, now: float) -> list[Document]:
        """Documents holding bytes whose retention ended, oldest first. The caller
        deletes the bytes first, then calls ``purge``: a crash in between leaves a
        record that is purged again, never bytes that nothing points at."""
        return [d for d in self.info_documents() if d.state.has_content and d.retain_until <= now]

    def purge(self, doc: str, now: float) -> list[AuditRow]:
        document = self._document(doc)
        if document.state is DocumentState.PURGED:
            return []
        self._move(document, DocumentState.PURGED, now)
        document.blob, document.export_next_at = "", None
        return [self._row(now, document.call, SYSTEM, "document_purged", doc)]

    # ------------------------------------------------------------------ consent and shares

    def give_consent(
        self, call: str, code: str, actor: str, now: float
    ) -> tuple[Share, list[AuditRow]]:
        """The citizen lets later calls see this call's accepted documents.

        ``code`` is used the first time (``new_share_code()``); asked again in the same
        call, the consent keeps its code and covers the documents accepted since. The
        caller saves the returned share."""
        code = self.consents.setdefault(call, code)
        documents = [
            d.id
            for d in self.info_documents()
            if d.call == call and d.state in (DocumentState.ACCEPTED, DocumentState.EXPORTED)
        ]
        share = Share(code, self.id, self.partner, documents, now, None, call)
        return share, [self._row(now, call, actor, "share_given", detail=code)]

    def withdraw_consent(self, code: str, actor: str, now: float) -> list[AuditRow]:
        """Forget the consent that created share ``code`` (the caller withdraws the
        share itself with ``Share.withdraw``)."""
        calls = [call for call, given in self.consents.items() if given == code]
        for call in calls:
            del self.consents[call]
        return [self._row(now, call, actor, "consent_withdrawn", detail=code) for call in calls]

    def link_share(self, share: Share, now: float, actor: str = SYSTEM) -> list[AuditRow]:
        """Show the documents of ``share`` in this case, as links."""
        if not share.active:
            raise CaseError("unknown_share_code", "this share code was withdrawn", share=share.code)
        if share.case == self.id or share.code in self.shared:
            return []
        self.shared.append(share.code)
        call = self.calls[-1] if self.calls else ""
        return [self._row(now, call, actor, "share_linked", detail=share.code)]

    def unlink_share(self, code: str, now: float, actor: str = SYSTEM) -> list[AuditRow]:
        if code not in self.shared:
            return []
        self.shared.remove(code)
        call = self.calls[-1] if self.calls else ""
        return [self._row(now, call, actor, "share_unlinked", detail=code)]

    # ------------------------------------------------------------------ reading

    def info_documents(self) -> list[Document]:
        """This case's own documents, oldest first (shared ones are resolved by the
        server from each share's case)."""
        return sorted(self.documents.values(), key=lambda d: (d.created_at, d.id))

    def document(self, doc: str) -> Document:
        """The document ``doc``; ``CaseError("unknown_document")`` if it is not here."""
        return self._document(doc)

    def command(self, key: str) -> DeviceCommand:
        """The command ``key``; ``CaseError("unknown_command")`` if it is not here."""
        return self._command(key)

    def has_work(self) -> bool:
        """Whether a timer of the server still has something to do here: a command to
        time out, a document to export or bytes to purge one day."""
        return any(not c.state.finished for c in self.commands.values()) or any(
            d.state.has_content for d in self.documents.values()
        )

    def next_work_at(self, exports: bool = True) -> float | None:
        """The earliest time a timer has something to do here: a command deadline, an
        export (when ``exports``) or the end of a retention; None when nothing is left."""
        times = [c.deadline for c in self.commands.values() if not c.state.finished]
        for document in self.documents.values():
            if exports and document.state is DocumentState.ACCEPTED:
                times.append(document.export_next_at or document.updated_at)
            if document.state.has_content:
                times.append(document.retain_until)
        return min(times, default=None)

    # ------------------------------------------------------------------ records

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "partner": self.partner,
            "beneficiary": self.beneficiary,
            "kiosk": self.kiosk,
            "calls": list(self.calls),
            "documents": [d.to_dict() for d in self.documents.values()],
            "commands": [c.to_dict() for c in self.commands.values()],
            "shared": list(self.shared),
            "version": self.version,
            "consents": dict(self.consents),
            "opened_at": self.opened_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseFile:
        documents = (Document.from_dict(d) for d in data.get("documents", []))
        commands = (DeviceCommand.from_dict(c) for c in data.get("commands", []))
        return cls(
            id=data["id"],
            service=data["service"],
            partner=data["partner"],
            beneficiary=data["beneficiary"],
            kiosk=data["kiosk"],
            calls=list(data.get("calls", [])),
            documents={d.id: d for d in documents},
            commands={c.key: c for c in commands},
            shared=list(data.get("shared", [])),
            version=int(data.get("version", 0)),
            consents=dict(data.get("consents", {})),
            opened_at=float(data.get("opened_at", 0.0)),
        )

    # ------------------------------------------------------------------ helpers

    def _document(self, doc: str) -> Document:
        document = self.documents.get(doc)
        if document is None:
            raise CaseError("unknown_document", "no such document in this case file", document=doc)
        return document

    def _command(self, key: str) -> DeviceCommand:
        command = self.commands.get(key)
        if command is None:
            raise CaseError(
                "unknown_command", "no device command with this key in this case", command=key
            )
        return command

    def _document_of_key(self, key: str) -> Document | None:
        return next((d for d in self.documents.values() if d.command == key), None)

    def _scan_document_id(self, key: str) -> str:
        # Derived, not drawn: the machine stays deterministic, and ids stay unique
        # because keys are unique within a case.
        return "d-" + hashlib.sha256(f"{self.id}\0{key}".encode()).hexdigest()[:24]

    def _move(self, document: Document, to: DocumentState, now: float) -> None:
        assert to in DOCUMENT_MOVES[document.state], (document.state, to)
        document.state = to
        document.updated_at = now

    def _row(
        self,
        now: float,
        call: str,
        actor: str,
        action: str,
        document: str = "",
        command: str = "",
        detail: str = "",
    ) -> AuditRow:
        return AuditRow(now, self.id, call, actor, action, document, command, detail)
