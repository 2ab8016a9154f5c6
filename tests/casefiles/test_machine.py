"""The case file's transitions, driven with explicit ``now`` values: no store, no clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from casefiles import (
    AuditRow,
    CaseError,
    CaseFile,
    CommandState,
    Document,
    DocumentState,
    Share,
)

EXPERT = "expert:alice"
DEVICE = "device:k1"
TIMEOUT = 60.0
RETAIN = 30 * 86400.0
SETTINGS = {"source": "flatbed", "color": "gray", "resolution": 150, "multipage": False}


def opened(now: float = 1000.0) -> CaseFile:
    case, rows = CaseFile.open("c-call1", "caf", "CAF", "1234567", "k1", "call1", now)
    assert [row.action for row in rows] == ["case_opened"]
    return case


def actions(rows: list[AuditRow]) -> list[str]:
    return [row.action for row in rows]


def scan(case: CaseFile, key: str = "scan-1", now: float = 1010.0) -> Document:
    command, created, _ = case.issue(
        key, "call1", "scan", SETTINGS, "", 1, "Avis d'imposition", EXPERT, now, TIMEOUT
    )
    assert created
    return case.documents[command.document]


def upload(
    case: CaseFile, key: str = "scan-1", now: float = 1030.0, doc_id: str = "d-unused", **kw: Any
) -> tuple[Document, bool, list[AuditRow]]:
    values: dict[str, Any] = {
        "call": "call1",
        "title": "",
        "origin": "scan",
        "mime": "application/pdf",
        "pages": 2,
        "size": 4096,
        "blob": "0123abcd.pdf",
        "sha256": "f" * 64,
        "actor": DEVICE,
        "retain_until": now + RETAIN,
    }
    values.update(kw)
    return case.add_document(doc_id=doc_id, command_key=key, now=now, **values)


def received(case: CaseFile, key: str = "scan-1") -> Document:
    scan(case, key)
    document, created, _ = upload(case, key)
    assert created
    return document


# --------------------------------------------------------------------------- a scan's journey


def test_a_scan_goes_from_request_to_export_with_one_audit_row_per_change() -> None:
    case = opened()

    command, created, issued = case.issue(
        "scan-1", "call1", "scan", SETTINGS, "", 1, "Avis", EXPERT, 1010.0, TIMEOUT
    )
    document = case.documents[command.document]
    assert created and command.state is CommandState.SENT and command.deadline == 1070.0
    assert command.kiosk == case.kiosk  # the case's kiosk, unless the call names another
    assert (document.state, document.origin, document.command) == (
        DocumentState.REQUESTED,
        "scan",
        "scan-1",
    )
    assert actions(issued) == ["command_issued", "document_requested"]

    scanning = case.progress("scan-1", "scanning", 1, 0, "", DEVICE, 1015.0, TIMEOUT)
    assert actions(scanning) == ["command_progress"]
    assert command.deadline == 1075.0  # each report pushes the deadline on

    uploading = case.progress("scan-1", "uploading", 2, 2, "", DEVICE, 1020.0, TIMEOUT)
    assert actions(uploading) == ["command_progress", "document_scanned"]
    assert document.state is DocumentState.SCANNED

    filled, created, rows = upload(case, title="Avis 2024")
    assert created and filled is document
    assert actions(rows) == ["document_received", "command_done"]
    assert (document.state, document.title, document.pages, document.blob) == (
        DocumentState.RECEIVED,
        "Avis 2024",
        2,
        "0123abcd.pdf",
    )
    assert (command.state, command.result) == (CommandState.DONE, document.id)
    assert case.next_deadline() is None

    assert actions(case.mark_viewed(document.id, EXPERT, 1040.0)) == ["document_viewed"]
    assert case.mark_viewed(document.id, EXPERT, 1041.0) == []
    assert case.documents[document.id].state is DocumentState.VIEWED

    assert actions(case.review(document.id, "accepted", "", EXPERT, 1050.0)) == [
        "document_accepted"
    ]
    assert case.export_due(1050.0) == [document]

    exported = case.mark_exported(document.id, "ged-caf", 1060.0)
    assert actions(exported) == ["document_exported"]
    assert exported[0].detail == "ged-caf" and exported[0].actor == "system"
    assert (document.state, document.exported, document.exported_at) == (
        DocumentState.EXPORTED,
        True,
        1060.0,
    )
    assert case.export_due(2000.0) == []
    assert case.mark_exported(document.id, "ged-caf", 1061.0) == []


def test_every_row_names_the_case_the_call_and_the_actor() -> None:
    case = opened()
    document = received(case)

    [row] = case.review(document.id, "rejected", "illegible, rescan", EXPERT, 1050.0)

    assert row == AuditRow(
        1050.0,
        "c-call1",
        "call1",
        EXPERT,
        "document_rejected",
        document.id,
        "",
        "illegible, rescan",
    )


def test_rejection_keeps_its_reason_and_cannot_be_reversed() -> None:
    case = opened()
    document = received(case)

    case.review(document.id, "rejected", "  illegible, rescan ", EXPERT, 1050.0)

    assert (document.state, document.reason) == (DocumentState.REJECTED, "illegible, rescan")
    assert case.review(document.id, "rejected", "illegible, rescan", EXPERT, 1051.0) == []
    with pytest.raises(CaseError) as refused:
        case.review(document.id, "accepted", "", EXPERT, 1052.0)
    assert refused.value.code == "invalid_state"
    assert "rejected" in refused.value.reason


def test_rejection_without_a_reason_is_refused_and_changes_nothing() -> None:
    case = opened()
    document = received(case)
    before = case.to_dict()

    with pytest.raises(CaseError) as refused:
        case.review(document.id, "rejected", "   ", EXPERT, 1050.0)

    assert refused.value.code == "invalid_command"
    assert case.to_dict() == before


@pytest.mark.parametrize("verdict", ["maybe", "viewed", ""])
def test_a_verdict_other_than_accepted_or_rejected_is_refused(verdict: str) -> None:
    case = opened()
    document = received(case)

    with pytest.raises(CaseError) as refused:
        case.review(document.id, verdict, "why", EXPERT, 1050.0)
    assert refused.value.code == "invalid_command"


def test_a_document_still_being_scanned_cannot_be_reviewed() -> None:
    case = opened()
    document = scan(case)

    with pytest.raises(CaseError) as refused:
        case.review(document.id, "accepted", "", EXPERT, 1020.0)
    assert refused.value.code == "invalid_state"
    assert refused.value.details == {"document": document.id, "state": "requested"}


def test_an_accepted_document_cannot_be_rejected_afterwards() -> None:
    case = opened()
    document = received(case)
    case.review(document.id, "accepted", "", EXPERT, 1050.0)

    assert case.review(document.id, "accepted", "", EXPERT, 1051.0) == []
    with pytest.raises(CaseError) as refused:
        case.review(document.id, "rejected", "wrong page", EXPERT, 1052.0)
    assert refused.value.code == "invalid_state"


def test_an_unknown_document_is_refused_with_its_code() -> None:
    case = opened()

    attempts: list[Callable[[], list[AuditRow]]] = [
        lambda: case.mark_viewed("d-nope", EXPERT, 1.0),
        lambda: case.review("d-nope", "accepted", "", EXPERT, 1.0),
        lambda: case.mark_printed("d-nope", 1, EXPERT, 1.0),
        lambda: case.purge("d-nope", 1.0),
    ]
    for attempt in attempts:
        with pytest.raises(CaseError) as refused:
            attempt()
        assert (refused.value.code, refused.value.details) == (
            "unknown_document",
            {"document": "d-nope"},
        )


# --------------------------------------------------------------------------- idempotency


def test_issuing_a_known_key_again_returns_the_command_and_adds_nothing() -> None:
    case = opened()
    first, _, _ = case.issue("k", "call1", "scan", SETTINGS, "", 1, "", EXPERT, 1010.0, TIMEOUT)
    before = case.to_dict()

    again, created, rows = case.issue(
        "k", "call1", "scan", {"color": "color"}, "", 1, "other", EXPERT, 1020.0, TIMEOUT
    )

    assert (again, created, rows) == (first, False, [])
    assert case.to_dict() == before
    assert len(case.documents) == 1


def test_the_same_upload_twice_gives_the_same_document_and_no_row() -> None:
    case = opened()
    document = received(case)
    before = case.to_dict()

    again, created, rows = upload(case, now=1090.0, blob="other.pdf")

    assert (again, created, rows) == (document, False, [])
    assert case.to_dict() == before


def test_an_expert_upload_is_received_at_once_and_idempotent_by_its_key() -> None:
    case = opened()

    document, created, rows = upload(
        case, key="up-1", doc_id="d-up", origin="upload", actor=EXPERT, title="Formulaire"
    )
    again, created_again, _ = upload(case, key="up-1", doc_id="d-other", origin="upload")

    assert created and not created_again and again is document
    assert (document.id, document.state, document.origin, document.command) == (
        "d-up",
        DocumentState.RECEIVED,
        "upload",
        "up-1",
    )
    assert actions(rows) == ["document_received"]
    assert list(case.documents) == ["d-up"]


def test_an_upload_without_a_key_is_idempotent_by_its_id() -> None:
    case = opened()
    document, _, _ = upload(case, key="", doc_id="d-x", origin="upload")

    again, created, rows = upload(case, key="", doc_id="d-x", origin="upload")

    assert (again, created, rows) == (document, False, [])


def test_an_upload_for_a_print_command_key_is_refused() -> None:
    case = opened()
    document = received(case)
    case.issue("p-1", "call1", "print", {}, document.id, 1, "", EXPERT, 1100.0, TIMEOUT)

    with pytest.raises(CaseError) as refused:
        upload(case, key="p-1")
    assert refused.value.code == "invalid_command"


# --------------------------------------------------------------------------- ending badly


@pytest.mark.parametrize("state", ["failed", "cancelled", "undeliverable"])
def test_a_scan_that_ends_without_a_document_drops_it_and_keeps_why(state: str) -> None:
    case = opened()
    document = scan(case)

    rows = case.progress("scan-1", state, 0, 0, "paper jam", DEVICE, 1020.0, TIMEOUT)

    assert actions(rows) == ["command_" + state, "document_dropped"]
    assert rows[1].document == document.id and "paper jam" in rows[1].detail
    assert document.id not in case.documents
    command = case.commands["scan-1"]
    assert (command.state.value, command.reason) == (state, "paper jam")


def test_a_late_upload_after_the_scan_failed_is_refused() -> None:
    case = opened()
    scan(case)
    case.progress("scan-1", "failed", 0, 0, "no paper", DEVICE, 1020.0, TIMEOUT)

    with pytest.raises(CaseError) as refused:
        upload(case)
    assert refused.value.code == "invalid_command"
    assert "failed" in refused.value.reason


def test_expire_times_out_every_command_past_its_deadline() -> None:
    case = opened()
    document = scan(case, "scan-1", now=1010.0)
    scan(case, "scan-2", now=1040.0)
    assert case.next_deadline() == 1070.0

    assert case.expire(1069.0) == []
    rows = case.expire(1070.0)

    assert actions(rows) == ["command_timed_out", "document_dropped"]
    assert [row.actor for row in rows] == ["system", "system"]
    assert case.commands["scan-1"].state is CommandState.TIMED_OUT
    assert document.id not in case.documents
    assert case.commands["scan-2"].state is CommandState.SENT
    assert case.next_deadline() == 1100.0


def test_progress_after_a_command_finished_is_ignored() -> None:
    case = opened()
    scan(case)
    case.expire(2000.0)
    before = case.to_dict()

    assert case.progress("scan-1", "uploading", 1, 1, "", DEVICE, 2001.0, TIMEOUT) == []
    assert case.to_dict() == before


def test_a_repeated_progress_report_pushes_the_deadline_but_adds_no_row() -> None:
    case = opened()
    scan(case)
    case.progress("scan-1", "waiting_page", 1, 0, "", DEVICE, 1020.0, TIMEOUT)

    assert case.progress("scan-1", "waiting_page", 1, 0, "", DEVICE, 1050.0, TIMEOUT) == []
    assert case.next_deadline() == 1110.0


def test_a_scan_reported_done_before_its_upload_waits_for_it() -> None:
    case = opened()
    document = scan(case)

    rows = case.progress("scan-1", "done", 1, 1, "", DEVICE, 1020.0, TIMEOUT)

    command = case.commands["scan-1"]
    assert command.state is CommandState.UPLOADING and not command.state.finished
    assert actions(rows) == ["command_progress", "document_scanned"]
    assert actions(upload(case)[2]) == ["document_received", "command_done"]
    assert document.state is DocumentState.RECEIVED


def test_progress_is_refused_for_an_unknown_key_a_bad_state_or_the_wrong_kind() -> None:
    case = opened()
    scan(case)

    cases = [
        ("nope", "scanning", "unknown_command"),
        ("scan-1", "sleeping", "invalid_command"),
        ("scan-1", "sent", "invalid_command"),
        ("scan-1", "printing", "invalid_command"),
    ]
    for key, state, code in cases:
        with pytest.raises(CaseError) as refused:
            case.progress(key, state, 0, 0, "", DEVICE, 1020.0, TIMEOUT)
        assert refused.value.code == code, (key, state)


def test_an_unknown_command_kind_is_refused() -> None:
    case = opened()

    with pytest.raises(CaseError) as refused:
        case.issue("k", "call1", "fax", {}, "", 1, "", EXPERT, 1010.0, TIMEOUT)
    assert refused.value.code == "invalid_command"
    assert case.commands == {} and case.documents == {}


# --------------------------------------------------------------------------- printing


def test_a_print_done_counts_its_copies_and_keeps_the_review_state() -> None:
    case = opened()
    document = received(case)
    case.review(document.id, "accepted", "", EXPERT, 1050.0)

    command, created, rows = case.issue(
        "p-1", "call1", "print", {}, document.id, 3, "", EXPERT, 1100.0, TIMEOUT
    )
    assert created and command.document == document.id and actions(rows) == ["command_issued"]
    case.progress("p-1", "printing", 1, 3, "", DEVICE, 1105.0, TIMEOUT)
    done = case.progress("p-1", "done", 3, 3, "", DEVICE, 1110.0, TIMEOUT)

    assert actions(done) == ["command_done", "document_printed"]
    assert done[1].detail == "3"
    assert (document.state, document.printed_copies) == (DocumentState.ACCEPTED, 3)
    assert command.result == document.id
    assert case.progress("p-1", "done", 3, 3, "", DEVICE, 1111.0, TIMEOUT) == []
    assert document.printed_copies == 3


def test_mark_printed_adds_copies_without_changing_the_state() -> None:
    case = opened()
    document = received(case)

    rows = case.mark_printed(document.id, 2, EXPERT, 1100.0)
    case.mark_printed(document.id, 1, EXPERT, 1101.0)

    assert actions(rows) == ["document_printed"]
    assert (document.state, document.printed_copies) == (DocumentState.RECEIVED, 3)


@pytest.mark.parametrize(
    ("prepare", "code"),
    [
        ("rejected", "invalid_command"),
        ("purged", "invalid_command"),
        ("requested", "invalid_command"),
        ("unknown", "unknown_document"),
    ],
)
def test_printing_what_cannot_be_printed_is_refused(prepare: str, code: str) -> None:
    case = opened()
    if prepare == "requested":
        doc = scan(case).id
    elif prepare == "unknown":
        doc = "d-nope"
    else:
        doc = received(case).id
        if prepare == "rejected":
            case.review(doc, "rejected", "blurred", EXPERT, 1050.0)
        else:
            case.purge(doc, 1050.0)
    before = case.to_dict()

    with pytest.raises(CaseError) as refused:
        case.issue("p-1", "call1", "print", {}, doc, 1, "", EXPERT, 1100.0, TIMEOUT)

    assert refused.value.code == code
    assert case.to_dict() == before


@pytest.mark.parametrize("copies", [0, 10])
def test_copies_outside_one_to_nine_are_refused(copies: int) -> None:
    case = opened()
    document = received(case)

    with pytest.raises(CaseError) as refused:
        case.issue("p-1", "call1", "print", {}, document.id, copies, "", EXPERT, 1.0, TIMEOUT)
    assert refused.value.code == "invalid_command"


# --------------------------------------------------------------------------- export and purge


def test_a_failed_export_is_tried_again_at_the_time_given() -> None:
    case = opened()
    document = received(case)
    case.review(document.id, "accepted", "", EXPERT, 1050.0)

    rows = case.export_failed(document.id, "503 from the GED", 1200.0, 1060.0)

    assert actions(rows) == ["export_failed"]
    assert (document.export_attempts, document.export_error) == (1, "503 from the GED")
    assert case.export_due(1199.0) == []
    assert case.export_due(1200.0) == [document]


def test_only_an_accepted_document_is_exported() -> None:
    case = opened()
    document = received(case)

    with pytest.raises(CaseError) as refused:
        case.mark_exported(document.id, "ged", 1060.0)
    assert refused.value.code == "invalid_state"
    assert case.export_due(1060.0) == []


def test_purge_deletes_what_outlived_its_retention_and_keeps_the_record() -> None:
    case = opened()
    old = received(case, "scan-1")
    scan(case, "scan-2")  # still requested: nothing to purge
    assert case.purge_due(old.retain_until - 1) == []

    assert case.purge_due(old.retain_until) == [old]
    rows = case.purge(old.id, old.retain_until)

    assert actions(rows) == ["document_purged"]
    assert (old.state, old.blob, old.sha256) == (DocumentState.PURGED, "", "f" * 64)
    assert case.purge_due(old.retain_until + RETAIN * 2) == []
    assert case.purge(old.id, old.retain_until + 1) == []


# --------------------------------------------------------------------------- consent and shares


def test_consent_shares_the_accepted_documents_of_the_call_under_one_code() -> None:
    case = opened()
    accepted = received(case, "scan-1")
    rejected = received(case, "scan-2")
    case.review(accepted.id, "accepted", "", EXPERT, 1050.0)
    case.review(rejected.id, "rejected", "blurred", EXPERT, 1050.0)

    share, rows = case.give_consent("call1", "ABCD2345", "kiosk:k1", 1100.0)
    again, _ = case.give_consent("call1", "ZZZZ9999", "kiosk:k1", 1200.0)

    assert share == Share("ABCD2345", "c-call1", "CAF", [accepted.id], 1100.0, None, "call1")
    assert actions(rows) == ["share_given"]
    assert again.code == "ABCD2345"
    assert case.consents == {"call1": "ABCD2345"}

    assert actions(case.withdraw_consent("ABCD2345", "kiosk:k1", 1300.0)) == ["consent_withdrawn"]
    assert case.consents == {}
    assert actions(share.withdraw("kiosk:k1", 1300.0)) == ["share_withdrawn"]
    assert share.withdraw("kiosk:k1", 1301.0) == []
    assert not share.active


def test_a_share_is_linked_once_and_unlinked() -> None:
    case = opened()
    share = Share("ABCD2345", "c-earlier", "CAF", ["d-1"], 900.0)

    assert actions(case.link_share(share, 1100.0, "kiosk:k1")) == ["share_linked"]
    assert case.link_share(share, 1101.0) == []
    assert case.shared == ["ABCD2345"]
    assert actions(case.unlink_share("ABCD2345", 1200.0)) == ["share_unlinked"]
    assert case.unlink_share("ABCD2345", 1201.0) == []
    assert case.shared == []


def test_a_withdrawn_share_cannot_be_linked_and_its_own_case_is_not_linked() -> None:
    case = opened()
    withdrawn = Share("ABCD2345", "c-earlier", "CAF", [], 900.0, withdrawn_at=950.0)
    own = Share("EFGH6789", "c-call1", "CAF", [], 900.0)

    with pytest.raises(CaseError) as refused:
        case.link_share(withdrawn, 1100.0)
    assert refused.value.code == "unknown_share_code"
    assert case.link_share(own, 1100.0) == []
    assert case.shared == []


# --------------------------------------------------------------------------- opening and reading


def test_a_later_call_attaches_once_and_moves_the_case_to_its_kiosk() -> None:
    case = opened()

    assert actions(case.attach_call("call2", 2000.0, kiosk="k2")) == ["call_attached"]
    assert case.attach_call("call2", 2001.0) == []
    assert (case.calls, case.kiosk) == (["call1", "call2"], "k2")


def test_documents_are_listed_oldest_first() -> None:
    case = opened()
    second = scan(case, "scan-b", now=1020.0)
    first = scan(case, "scan-a", now=1010.0)

    assert case.info_documents() == [first, second]


def test_work_is_what_a_timer_still_has_to_do() -> None:
    case = opened()
    assert not case.has_work() and case.next_work_at() is None

    document = received(case)
    assert case.has_work()
    assert case.next_work_at() == document.retain_until

    case.review(document.id, "accepted", "", EXPERT, 1050.0)
    assert case.next_work_at() == 1050.0
    assert case.next_work_at(exports=False) == document.retain_until

    case.purge(document.id, 1060.0)
    assert not case.has_work()


def test_a_case_round_trips_through_its_dict() -> None:
    case = opened()
    document = received(case, "scan-1")
    case.review(document.id, "rejected", "blurred", EXPERT, 1050.0)
    printed = received(case, "scan-3")
    case.issue("p-1", "call1", "print", {}, printed.id, 2, "", EXPERT, 1060.0, TIMEOUT)
    scan(case, "scan-2")
    case.give_consent("call1", "ABCD2345", "kiosk:k1", 1070.0)
    case.link_share(Share("EFGH6789", "c-old", "CAF", [], 1.0), 1080.0)
    case.version = 4

    restored = CaseFile.from_dict(json.loads(json.dumps(case.to_dict())))

    assert restored == case
    assert restored.to_dict() == case.to_dict()
    assert isinstance(restored.documents[document.id].state, DocumentState)
    assert isinstance(restored.commands["scan-2"].state, CommandState)


def test_records_round_trip_through_their_dicts() -> None:
    share = Share("ABCD2345", "c-1", "CAF", ["d-1", "d-2"], 10.0, 20.0, "call1")
    row = AuditRow(1.0, "c-1", "call1", EXPERT, "document_viewed", "d-1", "", "")

    assert Share.from_dict(share.to_dict()) == share
    assert AuditRow.from_dict(row.to_dict()) == row


def test_a_document_describes_itself_as_the_wire_does() -> None:
    case = opened()
    document = received(case)
    case.review(document.id, "accepted", "", EXPERT, 1050.0)
    case.mark_exported(document.id, "ged", 1060.0)

    info = document.info()
    shared = document.info(shared_by="CAF")

    assert info == {
        "id": document.id,
        "case": "c-call1",
        "title": "Avis d'imposition",
        "origin": "scan",
        "mime": "application/pdf",
        "pages": 2,
        "bytes": 4096,
        "state": "exported",
        "created_at": 1010.0,
        "updated_at": 1060.0,
        "reason": "",
        "command": "scan-1",
        "from_partner": "",
        "exported": True,
        "printed_copies": 0,
    }
    assert (shared["origin"], shared["from_partner"]) == ("shared", "CAF")


def test_a_command_remembers_the_kiosk_it_was_sent_to() -> None:
    """A case kept per beneficiary moves on to calls at other kiosks; each command still
    belongs to the device of the kiosk it went to."""
    case, _ = CaseFile.open("b-1", "caf", "caf", "1234567", "kiosk-a", "call1", 1000.0)
    first, _, _ = case.issue("k-a", "call1", "scan", SETTINGS, "", 1, "", EXPERT, 1001.0, TIMEOUT)
    case.attach_call("call2", 2000.0, kiosk="kiosk-b")
    second, _, _ = case.issue(
        "k-b", "call2", "scan", SETTINGS, "", 1, "", EXPERT, 2001.0, TIMEOUT, kiosk="kiosk-b"
    )
    restored = CaseFile.from_dict(case.to_dict())
    assert (restored.commands["k-a"].kiosk, restored.commands["k-b"].kiosk) == (
        "kiosk-a",
        "kiosk-b",
    )
    assert (first.kiosk, second.kiosk) == ("kiosk-a", "kiosk-b")
