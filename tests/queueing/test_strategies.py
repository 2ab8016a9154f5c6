"""Who gets the call: routing strategies, caller priority, fairness across services."""

from __future__ import annotations

import pytest

from queueing import (
    AcceptOffer,
    CallConnected,
    CallId,
    CallOffered,
    CallState,
    DeclineOffer,
    ExpertId,
    ExpertState,
    ExpertStatus,
    FinishWrapUp,
    HangUp,
    OfferEnded,
    QueueError,
    SetStatus,
    Strategy,
)
from tests.queueing.helpers import (
    CAF,
    kiosk,
    machine,
    one,
    only,
    positions,
    request,
    service,
    sign_in,
)

A, B, C = ExpertId("a"), ExpertId("b"), ExpertId("c")


def answer_and_finish(m, expert: ExpertId, call: str, now: float) -> None:
    """``expert`` takes ``call`` (already offered to them), talks, and wraps up."""
    m.apply(AcceptOffer(expert, CallId(call)), now)
    m.apply(HangUp(CallId(call), expert, "expert"), now + 1)
    m.apply(FinishWrapUp(expert, CallId(call), "Autre"), now + 2)


def offered_to(events) -> list[ExpertId]:
    return sorted(e.expert for e in only(events, CallOffered))


# --------------------------------------------------------------------------- longest idle


def test_longest_idle_is_the_default_strategy():
    assert service("caf").strategy is Strategy.LONGEST_IDLE


def test_longest_idle_offers_to_the_expert_free_for_longest():
    m = machine()
    sign_in(m, "b", 5.0)
    sign_in(m, "a", 10.0)
    sign_in(m, "c", 1.0)

    assert offered_to(request(m, "c1", 20.0)) == [C]


def test_longest_idle_sends_an_expert_back_of_the_line_after_a_call():
    m = machine()
    sign_in(m, "a", 1.0)
    sign_in(m, "b", 2.0)
    request(m, "c1", 10.0, kiosk="k1")
    answer_and_finish(m, A, "c1", 11.0)

    assert offered_to(request(m, "c2", 20.0, kiosk="k2")) == [B]


def test_longest_idle_does_not_reset_an_expert_who_declined():
    m = machine(decline_cooldown_s=5.0)
    sign_in(m, "a", 1.0)
    sign_in(m, "b", 2.0, available=False)
    request(m, "c1", 10.0, kiosk="k1")
    m.apply(SetStatus(B, ExpertStatus.AVAILABLE), 11.0)
    m.apply(DeclineOffer(A, CallId("c1")), 12.0)  # c1 goes to b
    m.apply(AcceptOffer(B, CallId("c1")), 13.0)

    # a declined one call but has still been idle since t=1.
    assert m.expert(A).idle_since == 1.0
    sign_in(m, "c", 3.0)
    assert offered_to(request(m, "c2", 20.0, kiosk="k2")) == [A]


# --------------------------------------------------------------------------- fewest calls


def test_fewest_calls_offers_to_the_expert_who_answered_least():
    m = machine([service("caf", strategy=Strategy.FEWEST_CALLS)])
    sign_in(m, "a", 0.0)
    request(m, "c1", 1.0, kiosk="k1")
    answer_and_finish(m, A, "c1", 2.0)
    request(m, "c2", 10.0, kiosk="k2")
    answer_and_finish(m, A, "c2", 11.0)
    sign_in(m, "b", 15.0)
    request(m, "c3", 20.0, kiosk="k3")
    answer_and_finish(m, B, "c3", 21.0)

    # a has been idle longer (since 13) than b (since 23) but answered two calls to b's one.
    assert offered_to(request(m, "c4", 30.0, kiosk="k4")) == [B]


def test_fewest_calls_breaks_ties_by_longest_idle():
    m = machine([service("caf", strategy=Strategy.FEWEST_CALLS)])
    sign_in(m, "b", 1.0)
    sign_in(m, "a", 2.0)

    assert offered_to(request(m, "c1", 10.0)) == [B]


# --------------------------------------------------------------------------- round robin


def test_round_robin_cycles_through_the_experts_in_turn():
    m = machine([service("caf", strategy=Strategy.ROUND_ROBIN)])
    for name in ("c", "a", "b"):
        sign_in(m, name, 0.0)

    chosen = []
    for index in range(1, 5):
        call = f"c{index}"
        offer = one(request(m, call, float(10 * index), kiosk=f"k{index}"), CallOffered)
        chosen.append(offer.expert)
        answer_and_finish(m, offer.expert, call, float(10 * index) + 1)

    assert chosen == [A, B, C, A]


def test_round_robin_skips_a_busy_expert_and_carries_on_after_it():
    m = machine([service("caf", strategy=Strategy.ROUND_ROBIN)])
    for name in ("a", "b", "c"):
        sign_in(m, name, 0.0)

    first = one(request(m, "c1", 1.0, kiosk="k1"), CallOffered)
    second = one(request(m, "c2", 2.0, kiosk="k2"), CallOffered)
    answer_and_finish(m, A, "c1", 3.0)
    third = one(request(m, "c3", 10.0, kiosk="k3"), CallOffered)

    assert (first.expert, second.expert, third.expert) == (A, B, C)


# --------------------------------------------------------------------------- ring all


def ring_all_machine():
    m = machine([service("caf", strategy=Strategy.RING_ALL)])
    for name in ("a", "b", "c"):
        sign_in(m, name, 0.0)
    return m


def test_ring_all_offers_the_call_to_every_free_expert():
    m = ring_all_machine()

    events = request(m, "c1", 1.0)

    assert offered_to(events) == [A, B, C]
    assert m.call(CallId("c1")).offered_to == {A, B, C}


def test_ring_all_first_accept_wins_and_the_others_are_told_taken():
    m = ring_all_machine()
    request(m, "c1", 1.0)

    events = m.apply(AcceptOffer(B, CallId("c1")), 2.0)

    ended = {e.expert: e.result for e in only(events, OfferEnded)}
    assert ended == {A: "taken", B: "accepted", C: "taken"}
    assert one(events, CallConnected).expert == B
    assert [m.expert(e).state for e in (A, B, C)] == [
        ExpertState.IDLE,
        ExpertState.IN_CALL,
        ExpertState.IDLE,
    ]


def test_ring_all_losers_keep_their_idle_time():
    m = ring_all_machine()
    request(m, "c1", 1.0)

    m.apply(AcceptOffer(B, CallId("c1")), 2.0)

    assert m.expert(A).idle_since == 0.0


def test_ring_all_keeps_ringing_the_others_when_one_declines():
    m = ring_all_machine()
    request(m, "c1", 1.0)

    events = m.apply(DeclineOffer(A, CallId("c1")), 2.0)

    assert one(events, OfferEnded).result == "declined"
    assert only(events, CallOffered) == []
    call = m.call(CallId("c1"))
    assert (call.state, call.offered_to) == (CallState.OFFERED, {B, C})


def test_ring_all_second_accept_is_refused():
    m = ring_all_machine()
    request(m, "c1", 1.0)
    m.apply(AcceptOffer(B, CallId("c1")), 2.0)

    with pytest.raises(QueueError) as raised:
        m.apply(AcceptOffer(A, CallId("c1")), 2.5)

    assert raised.value.code == "not_offered"


# --------------------------------------------------------------------------- priority, fairness


def test_priority_kiosk_caller_goes_ahead_of_earlier_callers():
    m = machine(kiosk_specs=[kiosk("k1"), kiosk("k2"), kiosk("hospital", priority=5)])
    sign_in(m, "a", 0.0, available=False)
    request(m, "c1", 1.0, kiosk="k1")
    request(m, "c2", 2.0, kiosk="k2")
    request(m, "c3", 3.0, kiosk="hospital")

    assert positions(m) == ["c3", "c1", "c2"]
    assert one(m.apply(SetStatus(A, ExpertStatus.AVAILABLE), 4.0), CallOffered).call == "c3"


def test_callers_of_equal_priority_are_served_in_arrival_order():
    m = machine()
    sign_in(m, "a", 0.0, available=False)
    request(m, "c2", 1.0, kiosk="k2")
    request(m, "c1", 1.0, kiosk="k1")

    assert positions(m) == ["c2", "c1"]


def test_expert_with_two_skills_gets_the_oldest_caller_of_either_service():
    m = machine()
    sign_in(m, "a", 0.0, ("caf", "cpam"), available=False)
    request(m, "c1", 10.0, kiosk="k1", service="caf")
    request(m, "c2", 5.0, kiosk="k2", service="cpam")
    request(m, "c3", 1.0, kiosk="k3", service="caf")  # arrives last, at an earlier now

    offer = one(m.apply(SetStatus(A, ExpertStatus.AVAILABLE), 20.0), CallOffered)

    assert (offer.call, offer.service) == ("c3", CAF)


def test_expert_with_two_skills_takes_the_other_service_when_its_caller_is_older():
    m = machine()
    sign_in(m, "a", 0.0, ("caf", "cpam"), available=False)
    request(m, "c1", 10.0, kiosk="k1", service="caf")
    request(m, "c2", 5.0, kiosk="k2", service="cpam")

    offer = one(m.apply(SetStatus(A, ExpertStatus.AVAILABLE), 20.0), CallOffered)

    assert (offer.call, offer.service) == ("c2", "cpam")


def test_priority_caller_of_another_service_goes_first_for_a_shared_expert():
    m = machine(kiosk_specs=[kiosk("k1"), kiosk("hospital", priority=1)])
    sign_in(m, "a", 0.0, ("caf", "cpam"), available=False)
    request(m, "c1", 1.0, kiosk="k1", service="caf")
    request(m, "c2", 2.0, kiosk="hospital", service="cpam")

    offer = one(m.apply(SetStatus(A, ExpertStatus.AVAILABLE), 3.0), CallOffered)

    assert offer.call == "c2"


def test_caller_asking_for_a_language_is_offered_to_a_speaker_first():
    m = machine()
    sign_in(m, "a", 0.0)
    sign_in(m, "b", 1.0, languages=("fr", "ar"))

    offer = one(request(m, "c1", 10.0, language="ar"), CallOffered)

    assert (offer.expert, offer.language) == (B, "ar")


def test_caller_asking_for_a_language_nobody_speaks_still_gets_an_expert():
    m = machine()
    sign_in(m, "a", 0.0)

    assert one(request(m, "c1", 10.0, language="tr"), CallOffered).expert == A
