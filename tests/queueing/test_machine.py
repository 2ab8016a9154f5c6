"""The queue machine's transitions: requests, offers, wrap-up, transfer, positions."""

from __future__ import annotations

import pytest

from queueing import (
    AcceptOffer,
    CallConnected,
    CallEnded,
    CallId,
    CallOffered,
    CallQueued,
    CallRefused,
    CallState,
    CallTransferred,
    CancelCall,
    DeclineOffer,
    ExpertChanged,
    ExpertId,
    ExpertLost,
    ExpertState,
    ExpertStatus,
    FinishWrapUp,
    HangUp,
    KioskId,
    OfferEnded,
    OpeningHours,
    Outcome,
    PositionChanged,
    QueueError,
    ReportMediaFailure,
    RequestCall,
    ServiceId,
    SetStatus,
    TransferCall,
    WrapUpFinished,
    WrapUpStarted,
)
from tests.queueing.helpers import (
    CAF,
    CPAM,
    kiosk,
    machine,
    one,
    only,
    paris,
    positions,
    request,
    run_until,
    service,
    sign_in,
    weekdays,
)

A, B = ExpertId("a"), ExpertId("b")
C1, C2, C3, C4 = CallId("c1"), CallId("c2"), CallId("c3"), CallId("c4")


def on_break_machine(**settings: float):
    """A machine where callers queue (an expert is signed in) but nobody is offered."""
    m = machine(**settings)
    sign_in(m, "a", 0.0, ("caf", "cpam"), available=False)
    return m


def connected(m=None, now: float = 10.0):
    """Call c1 from k1 answered by expert a at ``now``."""
    m = m or machine()
    sign_in(m, "a", 0.0)
    request(m, "c1", 0.0)
    m.apply(AcceptOffer(A, C1), now)
    return m


# --------------------------------------------------------------------------- request


def test_request_queues_call_with_its_position():
    m = on_break_machine()

    first = one(request(m, "c1", 1.0, kiosk="k1"), CallQueued)
    second = one(request(m, "c2", 2.0, kiosk="k2"), CallQueued)

    assert (first.call, first.position) == (C1, 1)
    assert (second.call, second.position) == (C2, 2)
    assert positions(m) == [C1, C2]
    assert m.call(C2).state is CallState.WAITING


def test_request_is_offered_at_once_to_a_free_expert():
    m = machine()
    sign_in(m, "a", 0.0)

    events = request(m, "c1", 5.0)

    offer = one(events, CallOffered)
    assert isinstance(events[0], CallQueued)
    assert (offer.expert, offer.call, offer.waited_s) == (A, C1, 0.0)
    assert offer.expires_at == 5.0 + 20.0
    assert m.expert(A).state is ExpertState.OFFERED
    assert m.call(C1).state is CallState.OFFERED
    assert m.get_timer() == 25.0


def test_request_outside_opening_hours_is_refused_with_next_opening():
    hours = OpeningHours("Europe/Paris", weekdays("09:00-12:00"))
    m = machine([service("caf", hours=hours)])
    sign_in(m, "a", 0.0)
    saturday_evening = paris(2026, 3, 7, 18, 0)
    before = m.snapshot()

    refused = one(request(m, "c1", saturday_evening), CallRefused)

    assert refused.outcome is Outcome.CLOSED
    assert refused.next_opening == paris(2026, 3, 9, 9, 0)
    assert m.snapshot() == before
    assert m.kiosk_call(KioskId("k1")) is None


def test_request_during_opening_hours_is_queued():
    hours = OpeningHours("Europe/Paris", weekdays("09:00-12:00"))
    m = machine([service("caf", hours=hours)])
    sign_in(m, "a", 0.0, available=False)

    assert one(request(m, "c1", paris(2026, 3, 9, 9, 0)), CallQueued).position == 1


def test_request_beyond_the_maximum_waiting_is_refused_full():
    m = machine([service("caf", max_waiting=2)])
    sign_in(m, "a", 0.0, available=False)
    request(m, "c1", 1.0, kiosk="k1")
    request(m, "c2", 2.0, kiosk="k2")
    before = m.snapshot()

    refused = one(request(m, "c3", 3.0, kiosk="k3"), CallRefused)

    assert refused.outcome is Outcome.FULL
    assert refused.next_opening is None
    assert m.snapshot() == before


def test_request_with_nobody_signed_in_is_refused_no_expert():
    m = machine()

    refused = one(request(m, "c1", 1.0), CallRefused)

    assert refused.outcome is Outcome.NO_EXPERT
    assert m.calls() == []


def test_request_with_only_logged_out_experts_is_refused_no_expert():
    m = machine()
    sign_in(m, "a", 0.0)
    m.apply(SetStatus(A, ExpertStatus.LOGGED_OUT), 1.0)

    assert one(request(m, "c1", 2.0), CallRefused).outcome is Outcome.NO_EXPERT


def test_request_for_a_service_whose_experts_answer_other_services_is_refused_no_expert():
    m = machine()
    sign_in(m, "a", 0.0, ("cpam",))

    assert one(request(m, "c1", 1.0, service="caf"), CallRefused).outcome is Outcome.NO_EXPERT


def test_request_waits_when_experts_are_signed_in_but_on_break():
    m = on_break_machine()

    events = request(m, "c1", 1.0)

    assert one(events, CallQueued).position == 1
    assert only(events, CallOffered) == []


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (RequestCall(CallId("c9"), KioskId("nowhere"), CAF, "1234567"), "unknown_kiosk"),
        (RequestCall(CallId("c9"), KioskId("k2"), ServiceId("msa"), "1234567"), "unknown_service"),
        (RequestCall(CallId("c9"), KioskId("caf-only"), CPAM, "1234567"), "service_not_offered"),
        (RequestCall(CallId("c9"), KioskId("k1"), CAF, "1234567"), "call_in_progress"),
        (RequestCall(CallId("c9"), KioskId("k2"), CAF, "12AB"), "invalid_beneficiary"),
        (RequestCall(CallId("c1"), KioskId("k2"), CAF, "1234567"), "duplicate_call"),
    ],
)
def test_refused_request_raises_its_code_and_changes_nothing(command, code):
    m = machine(
        [
            service("caf", beneficiary_pattern=r"\d{7}", beneficiary_hint="7 chiffres"),
            service("cpam"),
        ],
        [kiosk("k1"), kiosk("k2"), kiosk("caf-only", ("caf",))],
    )
    sign_in(m, "a", 0.0, available=False)
    request(m, "c1", 1.0, kiosk="k1")
    before, timer = m.snapshot(), m.get_timer()

    with pytest.raises(QueueError) as raised:
        m.apply(command, 2.0)

    assert raised.value.code == code
    assert m.snapshot() == before
    assert m.get_timer() == timer
    assert request(m, "c5", 3.0, kiosk="k2")[0] == CallQueued(
        3.0, CallId("c5"), CAF, KioskId("k2"), "1234567", 0, 2
    )


def test_invalid_beneficiary_error_carries_the_service_hint():
    m = machine([service("caf", beneficiary_pattern=r"\d{7}", beneficiary_hint="7 chiffres")])
    sign_in(m, "a", 0.0)

    with pytest.raises(QueueError) as raised:
        request(m, "c1", 1.0, beneficiary="123")

    assert raised.value.details["hint"] == "7 chiffres"
    assert "7 chiffres" in raised.value.reason


def test_interpreter_is_only_kept_when_the_service_offers_one():
    m = machine([service("caf"), service("cpam", interpreter=True)])
    sign_in(m, "a", 0.0, ("caf", "cpam"), available=False)

    request(m, "c1", 1.0, kiosk="k1", service="caf", interpreter=True)
    request(m, "c2", 1.0, kiosk="k2", service="cpam", interpreter=True)

    assert m.call(C1).interpreter is False
    assert m.call(C2).interpreter is True


# --------------------------------------------------------------------------- offers


def test_accept_connects_the_call_and_leaves_the_queue():
    m = machine()
    sign_in(m, "a", 0.0)
    request(m, "c1", 1.0, kiosk="k1")
    request(m, "c2", 2.0, kiosk="k2")

    events = m.apply(AcceptOffer(A, C1), 7.0)

    assert one(events, OfferEnded).result == "accepted"
    assert one(events, CallConnected) == CallConnected(7.0, C1, CAF, KioskId("k1"), A, 6.0)
    assert one(events, PositionChanged) == PositionChanged(7.0, C2, CAF, KioskId("k2"), 1)
    assert m.call(C1).state is CallState.CONNECTED
    assert m.expert(A).state is ExpertState.IN_CALL
    assert m.expert(A).answered == 1
    assert positions(m) == [C2]


def test_accepting_a_call_not_offered_to_you_is_an_error():
    m = machine()
    sign_in(m, "a", 0.0)
    sign_in(m, "b", 0.0, available=False)
    request(m, "c1", 1.0)
    before = m.snapshot()

    with pytest.raises(QueueError) as raised:
        m.apply(AcceptOffer(B, C1), 2.0)

    assert raised.value.code == "not_offered"
    assert m.snapshot() == before


def test_decline_offers_the_call_to_the_next_expert_and_it_keeps_its_place():
    m = machine()
    sign_in(m, "a", 0.0)
    sign_in(m, "b", 1.0, available=False)
    request(m, "c1", 2.0, kiosk="k1")
    request(m, "c2", 3.0, kiosk="k2")
    m.apply(SetStatus(B, ExpertStatus.AVAILABLE), 4.0)  # b is rung for c2 meanwhile
    m.apply(DeclineOffer(B, C2), 5.0)

    events = m.apply(DeclineOffer(A, C1), 6.0)

    assert [(e.expert, e.result) for e in only(events, OfferEnded)] == [(A, "declined")]
    offers = {e.expert: e.call for e in only(events, CallOffered)}
    assert offers == {B: C1, A: C2}
    assert positions(m) == [C1, C2]
    assert m.expert(A).status is ExpertStatus.AVAILABLE


def test_declined_call_goes_before_later_callers_to_the_next_expert():
    m = machine()
    sign_in(m, "a", 0.0)
    request(m, "c1", 1.0, kiosk="k1")
    request(m, "c2", 2.0, kiosk="k2")

    events = m.apply(DeclineOffer(A, C1), 4.0)

    # a is free again but may not get c1 back yet: a gets c2, and c1 stays first.
    offers = {e.expert: e.call for e in only(events, CallOffered)}
    assert offers == {A: C2}
    assert positions(m) == [C1, C2]
    assert m.call(C1).state is CallState.WAITING


def test_declined_call_is_not_offered_again_to_the_same_expert_before_the_cooldown():
    m = machine(decline_cooldown_s=60.0)
    sign_in(m, "a", 0.0)
    request(m, "c1", 1.0)

    events = m.apply(DeclineOffer(A, C1), 2.0)

    assert only(events, CallOffered) == []
    assert m.get_timer() == 62.0
    assert run_until(m, 61.9) == []


def test_declined_call_is_offered_again_to_the_same_expert_after_the_cooldown():
    m = machine(decline_cooldown_s=60.0)
    sign_in(m, "a", 0.0)
    request(m, "c1", 1.0)
    m.apply(DeclineOffer(A, C1), 2.0)

    events = run_until(m, 62.0)

    offer = one(events, CallOffered)
    assert (offer.expert, offer.call, offer.waited_s, offer.expires_at) == (A, C1, 61.0, 82.0)


def test_offer_timeout_puts_the_expert_on_break_and_the_call_keeps_its_place():
    m = machine()
    sign_in(m, "a", 0.0)
    request(m, "c1", 1.0, kiosk="k1")
    request(m, "c2", 2.0, kiosk="k2")

    events = run_until(m, 21.0)

    assert one(events, OfferEnded) == OfferEnded(21.0, C1, CAF, A, "timeout")
    changed = one(events, ExpertChanged)
    assert (changed.status, changed.state, changed.reason) == (
        ExpertStatus.BREAK,
        ExpertState.IDLE,
        "offer_timeout",
    )
    assert positions(m) == [C1, C2]
    assert m.call(C1).state is CallState.WAITING
    assert only(events, PositionChanged) == []


def test_offer_timeout_offers_the_call_to_the_next_free_expert():
    m = machine()
    sign_in(m, "a", 0.0)
    request(m, "c1", 1.0)
    sign_in(m, "b", 2.0)

    events = run_until(m, 21.0)

    offer = one(events, CallOffered)
    assert (offer.expert, offer.call, offer.expires_at) == (B, C1, 41.0)


def test_timed_out_expert_gets_calls_again_once_available():
    m = machine()
    sign_in(m, "a", 0.0)
    request(m, "c1", 1.0)
    run_until(m, 21.0)

    events = m.apply(SetStatus(A, ExpertStatus.AVAILABLE), 30.0)

    assert one(events, CallOffered).expert == A


def test_cancel_while_offered_withdraws_the_offer_and_abandons_the_call():
    m = machine()
    sign_in(m, "a", 0.0)
    request(m, "c1", 1.0)

    events = m.apply(CancelCall(C1, KioskId("k1")), 4.0)

    assert one(events, OfferEnded).result == "cancelled"
    ended = one(events, CallEnded)
    assert (ended.outcome, ended.reason, ended.waited_s, ended.short) == (
        Outcome.ABANDONED,
        "cancelled",
        3.0,
        True,
    )
    assert m.expert(A).state is ExpertState.IDLE
    assert m.call(C1) is None
    assert m.kiosk_call(KioskId("k1")) is None
    assert m.get_timer() is None


def test_cancel_of_another_kiosk_call_is_an_error():
    m = on_break_machine()
    request(m, "c1", 1.0)

    with pytest.raises(QueueError) as raised:
        m.apply(CancelCall(C1, KioskId("k2")), 2.0)

    assert raised.value.code == "not_your_call"


def test_cancel_of_a_connected_call_is_an_error():
    m = connected()

    with pytest.raises(QueueError) as raised:
        m.apply(CancelCall(C1, KioskId("k1")), 20.0)

    assert raised.value.code == "not_waiting"


def test_kiosk_may_call_again_after_its_call_ended():
    m = on_break_machine()
    request(m, "c1", 1.0)
    m.apply(CancelCall(C1, KioskId("k1")), 2.0)

    assert one(request(m, "c2", 3.0), CallQueued).position == 1


# --------------------------------------------------------------------------- abandonment, max wait


def test_abandon_quicker_than_the_threshold_is_short():
    m = machine([service("caf", short_abandon_s=10.0)])
    sign_in(m, "a", 0.0, available=False)
    request(m, "c1", 100.0)

    ended = one(m.apply(CancelCall(C1, KioskId("k1")), 109.0), CallEnded)

    assert ended.short is True


def test_abandon_after_the_threshold_is_not_short():
    m = machine([service("caf", short_abandon_s=10.0)])
    sign_in(m, "a", 0.0, available=False)
    request(m, "c1", 100.0)

    ended = one(m.apply(CancelCall(C1, KioskId("k1")), 110.0), CallEnded)

    assert (ended.outcome, ended.short, ended.waited_s) == (Outcome.ABANDONED, False, 10.0)


def test_caller_waiting_past_the_maximum_wait_times_out():
    m = machine([service("caf", max_wait_s=300.0)])
    sign_in(m, "a", 0.0, available=False)
    request(m, "c1", 10.0, kiosk="k1")
    request(m, "c2", 20.0, kiosk="k2")

    assert m.get_timer() == 310.0
    events = run_until(m, 310.0)

    ended = one(events, CallEnded)
    assert (ended.call, ended.outcome, ended.reason, ended.waited_s, ended.short) == (
        C1,
        Outcome.TIMED_OUT,
        "max_wait",
        300.0,
        False,
    )
    assert one(events, PositionChanged).position == 1
    assert m.get_timer() == 320.0


def test_maximum_wait_withdraws_a_pending_offer():
    m = machine([service("caf", max_wait_s=300.0, offer_timeout_s=60.0)])
    sign_in(m, "a", 0.0, available=False)
    request(m, "c1", 10.0)
    m.apply(SetStatus(A, ExpertStatus.AVAILABLE), 280.0)

    events = run_until(m, 310.0)

    assert one(events, OfferEnded).result == "cancelled"
    assert one(events, CallEnded).outcome is Outcome.TIMED_OUT
    assert m.expert(A).state is ExpertState.IDLE
    assert m.expert(A).status is ExpertStatus.AVAILABLE


def test_answered_call_does_not_time_out():
    m = machine([service("caf", max_wait_s=300.0)])
    m = connected(m, now=10.0)

    assert only(run_until(m, 400.0), CallEnded) == []
    assert m.call(C1).state is CallState.CONNECTED


# --------------------------------------------------------------------------- hang-up, wrap-up


def test_hang_up_ends_the_call_answered_and_starts_wrap_up():
    m = connected(now=10.0)

    events = m.apply(HangUp(C1, "k1", "kiosk"), 70.0)

    ended = one(events, CallEnded)
    assert (ended.outcome, ended.reason, ended.expert, ended.waited_s, ended.talk_s) == (
        Outcome.ANSWERED,
        "hangup_kiosk",
        A,
        10.0,
        60.0,
    )
    assert one(events, WrapUpStarted) == WrapUpStarted(70.0, A, C1, CAF, 190.0)
    assert m.expert(A).state is ExpertState.WRAP_UP
    assert m.call(C1) is None


def test_hang_up_by_the_expert_says_so():
    m = connected()

    assert one(m.apply(HangUp(C1, "a", "expert"), 20.0), CallEnded).reason == "hangup_expert"


def test_hang_up_by_a_stranger_is_an_error():
    m = connected()

    with pytest.raises(QueueError) as raised:
        m.apply(HangUp(C1, "k2", "kiosk"), 20.0)

    assert raised.value.code == "not_your_call"


def test_hang_up_of_a_waiting_call_is_an_error():
    m = on_break_machine()
    request(m, "c1", 1.0)

    with pytest.raises(QueueError) as raised:
        m.apply(HangUp(C1, "k1", "kiosk"), 2.0)

    assert raised.value.code == "not_in_call"


def test_media_failure_ends_the_call_failed_with_wrap_up():
    m = connected()

    events = m.apply(ReportMediaFailure(C1, "a", "expert", "ice_failed"), 20.0)

    ended = one(events, CallEnded)
    assert (ended.outcome, ended.reason) == (Outcome.FAILED, "ice_failed")
    assert one(events, WrapUpStarted).expert == A


def test_wrap_up_finishes_with_a_visit_reason_of_the_service():
    m = connected()
    m.apply(HangUp(C1, "a", "expert"), 20.0)

    events = m.apply(FinishWrapUp(A, C1, "Dossier en cours"), 30.0)

    assert one(events, WrapUpFinished) == WrapUpFinished(30.0, A, C1, CAF, "Dossier en cours")
    assert m.expert(A).state is ExpertState.IDLE
    assert m.get_timer() is None


def test_wrap_up_refuses_an_unknown_visit_reason_and_changes_nothing():
    m = connected()
    m.apply(HangUp(C1, "a", "expert"), 20.0)
    before = m.snapshot()

    with pytest.raises(QueueError) as raised:
        m.apply(FinishWrapUp(A, C1, "Pas une raison"), 30.0)

    assert raised.value.code == "invalid_visit_reason"
    assert raised.value.details["reasons"] == ["Information", "Dossier en cours", "Autre"]
    assert m.snapshot() == before


def test_finishing_a_wrap_up_that_is_not_running_is_an_error():
    m = connected()

    with pytest.raises(QueueError) as raised:
        m.apply(FinishWrapUp(A, C1, "Autre"), 20.0)

    assert raised.value.code == "not_in_wrap_up"


def test_wrap_up_finishes_automatically_at_its_timeout():
    m = machine([service("caf", wrap_up_s=120.0)])
    m = connected(m)
    m.apply(HangUp(C1, "a", "expert"), 20.0)

    assert m.get_timer() == 140.0
    events = run_until(m, 140.0)

    assert one(events, WrapUpFinished) == WrapUpFinished(140.0, A, C1, CAF, "", automatic=True)
    assert m.expert(A).state is ExpertState.IDLE


def test_expert_gets_the_next_caller_after_wrap_up():
    m = connected()
    request(m, "c2", 15.0, kiosk="k2")
    m.apply(HangUp(C1, "a", "expert"), 20.0)

    events = m.apply(FinishWrapUp(A, C1, "Information"), 25.0)

    assert one(events, CallOffered).call == C2


# --------------------------------------------------------------------------- transfer


def transfer_setup(**cpam: object):
    """c1 (t=0, caf) answered by a; c2 arrives in cpam at t=10 and waits."""
    m = machine([service("caf"), service("cpam", **cpam)])
    sign_in(m, "a", 0.0, ("caf",))
    sign_in(m, "b", 0.0, ("cpam",), available=False)
    request(m, "c1", 0.0, kiosk="k1", service="caf")
    m.apply(AcceptOffer(A, C1), 5.0)
    request(m, "c2", 10.0, kiosk="k2", service="cpam")
    return m


def test_transfer_keeps_the_original_arrival_ahead_of_later_callers():
    m = transfer_setup()

    events = m.apply(TransferCall(A, C1, CPAM), 100.0)

    assert one(events, CallTransferred) == CallTransferred(
        100.0, C1, CAF, CPAM, KioskId("k1"), A, 1
    )
    assert one(events, PositionChanged) == PositionChanged(100.0, C2, CPAM, KioskId("k2"), 2)
    assert positions(m, "cpam") == [C1, C2]
    call = m.call(C1)
    assert (call.service, call.state, call.arrived_at, call.queued_at) == (
        CPAM,
        CallState.WAITING,
        0.0,
        100.0,
    )


def test_transfer_puts_the_expert_in_wrap_up_for_the_first_service():
    m = transfer_setup()

    events = m.apply(TransferCall(A, C1, CPAM), 100.0)

    assert one(events, WrapUpStarted) == WrapUpStarted(100.0, A, C1, CAF, 220.0)
    assert m.expert(A).state is ExpertState.WRAP_UP
    m.apply(FinishWrapUp(A, C1, "Autre"), 110.0)
    assert m.expert(A).state is ExpertState.IDLE


def test_transferred_call_is_offered_with_its_origin():
    m = transfer_setup()
    m.apply(TransferCall(A, C1, CPAM), 100.0)

    offer = one(m.apply(SetStatus(B, ExpertStatus.AVAILABLE), 101.0), CallOffered)

    assert (offer.call, offer.service, offer.transferred_from, offer.waited_s) == (
        C1,
        CPAM,
        CAF,
        1.0,
    )


def test_transferred_call_maximum_wait_counts_from_the_transfer():
    m = transfer_setup(max_wait_s=300.0)
    m.apply(TransferCall(A, C1, CPAM), 100.0)
    m.apply(FinishWrapUp(A, C1, "Autre"), 101.0)

    events = run_until(m, 400.0)

    timed_out = [e.call for e in only(events, CallEnded) if e.outcome is Outcome.TIMED_OUT]
    assert timed_out == [C2, C1]
    assert one([e for e in events if getattr(e, "call", None) == C1], CallEnded).at == 400.0


def test_transfer_to_a_closed_service_is_refused_and_changes_nothing():
    hours = OpeningHours("Europe/Paris", weekdays("09:00-12:00"))
    m = machine([service("caf"), service("cpam", hours=hours)])
    sign_in(m, "a", 0.0, ("caf",))
    sign_in(m, "b", 0.0, ("cpam",))
    evening = paris(2026, 3, 10, 18, 0)
    request(m, "c1", evening)
    m.apply(AcceptOffer(A, C1), evening + 5)
    before = m.snapshot()

    with pytest.raises(QueueError) as raised:
        m.apply(TransferCall(A, C1, CPAM), evening + 60)

    assert raised.value.code == "service_closed"
    assert raised.value.details["next_opening"] == paris(2026, 3, 11, 9, 0)
    assert m.snapshot() == before


def test_transfer_to_a_service_with_nobody_signed_in_is_refused():
    m = machine([service("caf"), service("cpam")])
    sign_in(m, "a", 0.0, ("caf",))
    request(m, "c1", 1.0)
    m.apply(AcceptOffer(A, C1), 2.0)
    before = m.snapshot()

    with pytest.raises(QueueError) as raised:
        m.apply(TransferCall(A, C1, CPAM), 3.0)

    assert raised.value.code == "no_expert"
    assert m.snapshot() == before


@pytest.mark.parametrize(
    ("expert", "target", "code"),
    [
        ("a", "msa", "unknown_service"),
        ("a", "caf", "same_service"),
        ("b", "cpam", "not_your_call"),
    ],
)
def test_invalid_transfer_is_refused_and_changes_nothing(expert, target, code):
    m = transfer_setup()
    before = m.snapshot()

    with pytest.raises(QueueError) as raised:
        m.apply(TransferCall(ExpertId(expert), C1, ServiceId(target)), 100.0)

    assert raised.value.code == code
    assert m.snapshot() == before


# --------------------------------------------------------------------------- positions


def four_waiting():
    m = on_break_machine()
    for index, call in enumerate(["c1", "c2", "c3", "c4"], start=1):
        request(m, call, float(index), kiosk=f"k{index}")
    return m


def test_leaving_caller_moves_up_only_those_behind():
    m = four_waiting()

    events = m.apply(CancelCall(C2, KioskId("k2")), 10.0)

    moved = [(e.call, e.position) for e in only(events, PositionChanged)]
    assert moved == [(C3, 2), (C4, 3)]


def test_leaving_last_caller_moves_nobody():
    m = four_waiting()

    events = m.apply(CancelCall(C4, KioskId("k4")), 10.0)

    assert only(events, PositionChanged) == []


def test_new_caller_at_the_back_moves_nobody():
    m = four_waiting()

    events = request(m, "c5", 10.0, kiosk="k5")

    assert only(events, PositionChanged) == []
    assert one(events, CallQueued).position == 5


def test_priority_caller_moves_everyone_back_by_one():
    m = machine(kiosk_specs=[*(kiosk(f"k{i}") for i in range(1, 5)), kiosk("vip", priority=1)])
    sign_in(m, "a", 0.0, available=False)
    for index in range(1, 4):
        request(m, f"c{index}", float(index), kiosk=f"k{index}")

    events = request(m, "c9", 10.0, kiosk="vip")

    assert one(events, CallQueued).position == 1
    assert [(e.call, e.position) for e in only(events, PositionChanged)] == [
        (C1, 2),
        (C2, 3),
        (C3, 4),
    ]


def test_positions_of_another_service_are_not_touched():
    m = four_waiting()
    request(m, "c5", 5.0, kiosk="k5", service="cpam")

    events = m.apply(CancelCall(C1, KioskId("k1")), 10.0)

    assert all(e.service == CAF for e in only(events, PositionChanged))
    assert m.call(CallId("c5")).position == 1


def test_every_waiting_position_matches_the_queue_order_after_each_command():
    m = four_waiting()
    m.apply(CancelCall(C3, KioskId("k3")), 10.0)
    request(m, "c5", 11.0, kiosk="k5")
    m.apply(SetStatus(A, ExpertStatus.AVAILABLE), 12.0)

    assert [(c.id, c.position) for c in m.queued(CAF)] == [
        (C1, 1),
        (C2, 2),
        (C4, 3),
        (CallId("c5"), 4),
    ]


# --------------------------------------------------------------------------- status vs state


def test_break_during_a_call_changes_the_status_at_once_and_the_state_after():
    m = connected()

    changed = one(m.apply(SetStatus(A, ExpertStatus.BREAK), 20.0), ExpertChanged)

    assert (changed.status, changed.state, changed.call) == (
        ExpertStatus.BREAK,
        ExpertState.IN_CALL,
        C1,
    )
    assert m.call(C1).state is CallState.CONNECTED


def test_expert_on_break_after_the_call_gets_no_new_caller():
    m = connected()
    m.apply(SetStatus(A, ExpertStatus.BREAK), 20.0)
    request(m, "c2", 25.0, kiosk="k2")
    m.apply(HangUp(C1, "k1", "kiosk"), 30.0)

    events = m.apply(FinishWrapUp(A, C1, "Autre"), 40.0)

    assert only(events, CallOffered) == []
    assert (m.expert(A).status, m.expert(A).state) == (ExpertStatus.BREAK, ExpertState.IDLE)
    assert one(m.apply(SetStatus(A, ExpertStatus.AVAILABLE), 50.0), CallOffered).call == C2


def test_going_on_break_while_offered_passes_the_call_on():
    m = machine()
    sign_in(m, "a", 0.0)
    request(m, "c1", 1.0)
    sign_in(m, "b", 2.0)

    events = m.apply(SetStatus(A, ExpertStatus.BREAK), 3.0)

    assert one(events, OfferEnded).result == "status"
    assert one(events, CallOffered).expert == B
    assert m.call(C1).position == 1


def test_new_expert_starts_on_break():
    m = machine()

    changed = one(sign_in(m, "a", 0.0, available=False), ExpertChanged)

    assert (changed.status, changed.state) == (ExpertStatus.BREAK, ExpertState.IDLE)


def test_status_counts_experts_by_state():
    m = connected()
    sign_in(m, "b", 0.0)
    request(m, "c2", 12.0, kiosk="k2")
    sign_in(m, "c", 0.0, available=False)
    m.apply(ExpertLost(ExpertId("c")), 13.0)

    status = m.status(CAF, 20.0)

    assert (status.waiting, status.offered, status.connected) == (0, 1, 1)
    assert status.oldest_wait_s == 8.0
    assert status.experts["in_call"] == 1
    assert status.experts["offered"] == 1
    assert status.experts["disconnected"] == 1
    assert status.open is True


def test_transfer_to_a_service_outside_the_kiosk_catalogue_is_refused():
    m = machine(
        [service("caf"), service("cpam"), service("msa")],
        [kiosk("k1", ("caf", "cpam")), kiosk("k2", ("caf", "cpam"))],
    )
    sign_in(m, "a", 0.0, ("caf",))
    sign_in(m, "b", 0.0, ("msa",))
    request(m, "c1", 1.0)
    m.apply(AcceptOffer(A, C1), 2.0)
    before = m.snapshot()

    with pytest.raises(QueueError) as raised:
        m.apply(TransferCall(A, C1, ServiceId("msa")), 3.0)

    assert raised.value.code == "service_not_offered"
    assert m.snapshot() == before


def test_an_expert_whose_id_is_a_kiosk_id_cannot_end_that_kiosks_call():
    m = machine([service("caf"), service("cpam")])
    sign_in(m, "a", 0.0, ("caf",))
    sign_in(m, "k1", 0.0, ("cpam",))
    request(m, "c1", 1.0, kiosk="k1")
    m.apply(AcceptOffer(A, C1), 2.0)

    for command in (HangUp(C1, "k1", "expert"), ReportMediaFailure(C1, "k1", "expert")):
        with pytest.raises(QueueError) as raised:
            m.apply(command, 3.0)
        assert raised.value.code == "not_your_call"
