"""Identifiers and states of the case-file records."""

from __future__ import annotations

import hashlib

from casefiles import (
    SHARE_CODE_ALPHABET,
    CommandState,
    case_id_for,
    new_document_id,
    new_share_code,
)


def test_a_case_per_beneficiary_is_found_again_from_service_and_number() -> None:
    first = case_id_for("call1", "caf", "1234567", per_beneficiary=True)
    digest = hashlib.sha256(b"caf\x001234567").hexdigest()[:24]

    assert first == "b-" + digest
    assert case_id_for("call2", "caf", "1234567", per_beneficiary=True) == first
    assert case_id_for("call2", "cpam", "1234567", per_beneficiary=True) != first


def test_otherwise_a_case_belongs_to_its_call() -> None:
    assert case_id_for("call1", "caf", "1234567", per_beneficiary=False) == "c-call1"
    assert case_id_for("call1", "caf", "", per_beneficiary=True) == "c-call1"


def test_share_codes_use_eight_unambiguous_letters() -> None:
    code = new_share_code(lambda n: bytes(range(n)))

    assert code == "ABCDEFGH"
    assert new_share_code(lambda n: bytes([31, 63, 255] + [0] * (n - 3))) == "999AAAAA"
    assert not set("IO01") & set(SHARE_CODE_ALPHABET)
    for _ in range(50):
        drawn = new_share_code()
        assert len(drawn) == 8 and set(drawn) <= set(SHARE_CODE_ALPHABET)


def test_document_ids_are_random_and_prefixed() -> None:
    assert new_document_id(lambda n: b"\xab" * n) == "d-" + "ab" * 12
    assert new_document_id() != new_document_id()


def test_finished_command_states_are_the_five_final_ones() -> None:
    finished = {state.value for state in CommandState if state.finished}

    assert finished == {"done", "failed", "cancelled", "timed_out", "undeliverable"}
