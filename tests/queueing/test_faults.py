"""Faults are part of the model: lost experts, dropped kiosks, server restarts, restore."""

from __future__ import annotations

import copy

from queueing import (
    AcceptOffer,
    CallEnded,
    CallId,
    CallOffered,
    CallRequeued,
    CallResumed,
    CallState,
    CancelCall,
    DeclineOffer,
    Event,
    ExpertId,
    ExpertLost,
    ExpertState,
    ExpertStatus,
    HangUp,
    KioskBack,
    KioskId,
    KioskLost,
    OfferEnded,
    Outcome,
    PartyBack,
    PartyLost,
    PositionChanged,
    QueueMachine,
    Restarted,
    SetStatus,
    WrapUpStarted,
)
from tests.queueing.helpers import (
    CAF,
    machine,
    one,
    only,
    positions,
    request,
    run_until,
    service,
    sign_in,
)

A, B = ExpertId("a"), ExpertId("b")
C1, C2, C3 = CallId("c1"), CallId("c2"), CallId("c3")
K1, K2, K3 = KioskId("k1"), KioskId("k2"), KioskId("k3")


ROOM = ("kiosk:k1", "expert:a")
"""Who is in the call of k1 answered by a."""


def offered_to_a():
    """c1 (k1) is offered to a; c2 (k2) waits behind it; b is signed in on break."""
    m = machine(expert_grace_s=5.0, kiosk_grace_s=60.0, restart_grace_s=90.0)
    sign_in(m, "a", 0.0)
    sign_in(m, "b", 0.0, available=False)
    request(m, "c1", 1.0, kiosk="k1")
    request(m, "c2", 2.0, kiosk="k2")
    return m


def in_call_with_a():
    """c1 (k1) is connected to a since t=10; c2 (k2) and c3 (k3) wait."""
    m = offered_to_a()
    m.apply(AcceptOffer(A, C1), 10.0)
    request(m, "c3", 11.0, kiosk="k3")
    return m


# --------------------------------------------------------------------------- expert lost


def test_expert_lost_while_offered_passes_the_call_to_the_next_expert():
    m = offered_to_a()
    m.apply(SetStatus(B, ExpertStatus.AVAILABLE), 3.0)  # b is rung for c2 and takes it
    m.apply(AcceptOffer(B, C2), 4.0)
    sign_in(m, "c", 4.0)

    events = m.apply(ExpertLost(A), 5.0)

    assert one(events, OfferEnded).result == "expert_lost"
    assert one(events, CallOffered).expert == ExpertId("c")
    assert m.call(C1).position == 1
    assert m.expert(A).state is ExpertState.DISCONNECTED


def test_expert_lost_while_offered_leaves_the_call_waiting_in_its_place():
    m = offered_to_a()

    events = m.apply(ExpertLost(A), 5.0)

    assert one(events, OfferEnded).result == "expert_lost"
    assert only(events, PositionChanged) == []
    assert positions(m) == [C1, C2]
    assert m.call(C1).state is CallState.WAITING
    assert not m.is_online(A)


def test_expert_lost_in_call_keeps_the_call_during_the_grace():
    m = in_call_with_a()

    events = m.apply(ExpertLost(A), 20.0)

    assert one(events, PartyLost) == PartyLost(
        20.0, C1, CAF, "expert", "a", 25.0, ("kiosk:k1", "expert:a")
    )
    assert m.call(C1).state is CallState.CONNECTED
    assert m.expert(A).state is ExpertState.IN_CALL
    assert m.get_timer() == 25.0


def test_expert_back_within_the_grace_continues_the_call():
    m = in_call_with_a()
    m.apply(ExpertLost(A), 20.0)

    events = sign_in(m, "a", 23.0, available=False)

    assert one(events, PartyBack) == PartyBack(
        23.0, C1, CAF, "expert", "a", ("kiosk:k1", "expert:a")
    )
    assert m.call(C1).state is CallState.CONNECTED
    assert m.call(C1).expert_lost_until is None
    assert only(run_until(m, 30.0), CallRequeued) == []
    assert m.expert(A).state is ExpertState.IN_CALL


def test_expert_not_back_after_the_grace_requeues_the_call_at_the_head():
    m = in_call_with_a()
    m.apply(ExpertLost(A), 20.0)

    events = run_until(m, 25.0)

    assert one(events, CallRequeued) == CallRequeued(25.0, C1, CAF, K1, A, 1, "expert_lost")
    moved = [(e.call, e.position) for e in only(events, PositionChanged)]
    assert moved == [(C2, 2), (C3, 3)]
    assert positions(m) == [C1, C2, C3]
    assert m.expert(A).state is ExpertState.DISCONNECTED


def test_requeued_call_is_offered_again_before_earlier_waiting_callers():
    m = in_call_with_a()
    m.apply(ExpertLost(A), 20.0)
    run_until(m, 25.0)

    offer = one(m.apply(SetStatus(B, ExpertStatus.AVAILABLE), 26.0), CallOffered)

    assert (offer.call, offer.expert) == (C1, B)


def test_requeued_call_is_offered_at_once_to_a_free_expert():
    m = in_call_with_a()
    m.apply(SetStatus(B, ExpertStatus.AVAILABLE), 12.0)  # b is rung for c2
    m.apply(DeclineOffer(B, C2), 13.0)  # b free, c2 cooling down for b, c3 offered to b
    m.apply(DeclineOffer(B, C3), 14.0)
    m.apply(ExpertLost(A), 20.0)

    events = run_until(m, 25.0)

    assert one(events, CallOffered).call == C1
    assert one(events, CallOffered).expert == B


def test_requeued_call_answered_again_keeps_its_first_answer_time():
    m = in_call_with_a()
    m.apply(ExpertLost(A), 20.0)
    run_until(m, 25.0)
    m.apply(SetStatus(B, ExpertStatus.AVAILABLE), 26.0)
    m.apply(AcceptOffer(B, C1), 27.0)

    ended = one(m.apply(HangUp(C1, "k1", "kiosk"), 100.0), CallEnded)

    assert (ended.expert, ended.waited_s, ended.talk_s) == (B, 9.0, 73.0)


# --------------------------------------------------------------------------- kiosk lost


def test_kiosk_lost_while_waiting_keeps_its_position():
    m = offered_to_a()
    m.apply(AcceptOffer(A, C1), 3.0)
    request(m, "c3", 4.0, kiosk="k3")

    events = m.apply(KioskLost(K2), 5.0)

    assert one(events, PartyLost) == PartyLost(5.0, C2, CAF, "kiosk", "k2", 65.0, ())
    assert only(events, PositionChanged) == []
    assert positions(m) == [C2, C3]


def test_kiosk_lost_is_not_offered_and_the_next_caller_is():
    m = offered_to_a()
    m.apply(AcceptOffer(A, C1), 3.0)
    m.apply(KioskLost(K2), 5.0)
    request(m, "c3", 6.0, kiosk="k3")

    events = m.apply(SetStatus(B, ExpertStatus.AVAILABLE), 7.0)

    assert one(events, CallOffered).call == C3
    assert positions(m) == [C2, C3]


def test_kiosk_lost_while_offered_withdraws_the_offer():
    m = offered_to_a()

    events = m.apply(KioskLost(K1), 5.0)

    assert one(events, OfferEnded) == OfferEnded(5.0, C1, CAF, A, "cancelled")
    # a is free again and c2 is next among the callers who are there.
    assert one(events, CallOffered).call == C2
    assert m.call(C1).position == 1


def test_kiosk_back_within_the_grace_resumes_at_the_same_position():
    m = offered_to_a()
    m.apply(AcceptOffer(A, C1), 3.0)
    request(m, "c3", 4.0, kiosk="k3")
    m.apply(KioskLost(K2), 5.0)

    events = m.apply(KioskBack(K2), 30.0)

    assert one(events, CallResumed) == CallResumed(30.0, C2, CAF, K2, CallState.WAITING, 1)
    assert only(run_until(m, 100.0), CallEnded) == []


def test_kiosk_back_is_offered_again():
    m = offered_to_a()
    m.apply(KioskLost(K1), 5.0)
    m.apply(AcceptOffer(A, C2), 6.0)
    sign_in(m, "c", 7.0)

    events = m.apply(KioskBack(K1), 8.0)

    offer = one(events, CallOffered)
    assert (offer.call, offer.expert) == (C1, ExpertId("c"))


def test_kiosk_not_back_after_the_grace_abandons_the_call():
    m = offered_to_a()
    m.apply(AcceptOffer(A, C1), 3.0)
    request(m, "c3", 4.0, kiosk="k3")
    m.apply(KioskLost(K2), 5.0)

    events = run_until(m, 65.0)

    ended = one(events, CallEnded)
    assert (ended.call, ended.outcome, ended.reason, ended.waited_s, ended.short) == (
        C2,
        Outcome.ABANDONED,
        "kiosk_lost",
        63.0,
        False,
    )
    assert one(events, PositionChanged) == PositionChanged(65.0, C3, CAF, K3, 1)
    assert m.kiosk_call(K2) is None


def test_kiosk_lost_in_call_lets_the_expert_keep_the_call_during_the_grace():
    m = in_call_with_a()

    events = m.apply(KioskLost(K1), 20.0)

    assert one(events, PartyLost) == PartyLost(
        20.0, C1, CAF, "kiosk", "k1", 80.0, ("kiosk:k1", "expert:a")
    )
    assert m.call(C1).state is CallState.CONNECTED
    assert m.expert(A).state is ExpertState.IN_CALL
    assert m.expert(A).call == C1


def test_kiosk_back_in_call_resumes_with_the_same_expert():
    m = in_call_with_a()
    m.apply(KioskLost(K1), 20.0)

    events = m.apply(KioskBack(K1), 50.0)

    resumed = one(events, CallResumed)
    assert (resumed.state, resumed.expert, resumed.position) == (CallState.CONNECTED, A, 0)
    assert one(events, PartyBack) == PartyBack(
        50.0, C1, CAF, "kiosk", "k1", ("kiosk:k1", "expert:a")
    )
    assert only(run_until(m, 200.0), CallEnded) == []


def test_kiosk_not_back_in_call_ends_it_and_the_expert_wraps_up():
    m = in_call_with_a()
    m.apply(KioskLost(K1), 20.0)

    events = run_until(m, 80.0)

    ended = one(events, CallEnded)
    assert (ended.call, ended.outcome, ended.reason, ended.talk_s) == (
        C1,
        Outcome.ANSWERED,
        "kiosk_lost",
        70.0,
    )
    assert one(events, WrapUpStarted).expert == A


def test_kiosk_lost_twice_keeps_the_first_deadline():
    m = in_call_with_a()
    m.apply(KioskLost(K1), 20.0)

    assert m.apply(KioskLost(K1), 30.0) == []
    assert m.call(C1).kiosk_lost_until == 80.0


def test_kiosk_without_a_call_coming_back_changes_nothing():
    m = offered_to_a()
    before = m.snapshot()

    assert m.apply(KioskBack(KioskId("k5")), 3.0) == []
    assert m.apply(KioskLost(KioskId("k5")), 3.0) == []
    assert m.snapshot() == before


# --------------------------------------------------------------------------- restart


def test_restart_gives_every_party_the_restart_grace():
    m = in_call_with_a()  # c1 connected to a; c2, c3 waiting; b signed in on break

    events = m.apply(Restarted(), 30.0)

    lost = {(e.role, e.party): (e.call, e.until) for e in only(events, PartyLost)}
    assert lost == {
        ("expert", "a"): (C1, 120.0),
        ("kiosk", "k1"): (C1, 120.0),
        ("kiosk", "k2"): (C2, 120.0),
        ("kiosk", "k3"): (C3, 120.0),
    }
    assert not m.is_online(A) and not m.is_online(B)
    assert m.expert(B).state is ExpertState.DISCONNECTED


def test_restart_withdraws_pending_offers():
    m = offered_to_a()

    events = m.apply(Restarted(), 3.0)

    assert one(events, OfferEnded).result == "expert_lost"
    assert only(events, CallOffered) == []
    assert positions(m) == [C1, C2]


def test_parties_back_after_a_restart_carry_on():
    m = in_call_with_a()
    m.apply(Restarted(), 30.0)

    events = sign_in(m, "a", 40.0, available=False)
    events += m.apply(KioskBack(K1), 41.0)
    events += m.apply(KioskBack(K2), 42.0)

    assert [(e.role, e.party) for e in only(events, PartyBack)] == [
        ("expert", "a"),
        ("kiosk", "k1"),
    ]
    assert [e.call for e in only(events, CallResumed)] == [C1, C2]
    late = run_until(m, 120.0)
    ended = one(late, CallEnded)
    assert (ended.call, ended.outcome, ended.reason) == (C3, Outcome.ABANDONED, "kiosk_lost")
    assert m.call(C1).state is CallState.CONNECTED
    assert m.call(C2).position == 1


# --------------------------------------------------------------------------- snapshot


def busy_machine() -> QueueMachine:
    """Mid-day: a call connected with a lost kiosk, an offer pending, a declined call,
    an expert in wrap-up, a lost expert in a call."""
    m = machine(expert_grace_s=30.0, kiosk_grace_s=60.0)
    sign_in(m, "a", 0.0)
    sign_in(m, "b", 0.0)
    sign_in(m, "c", 0.0, ("caf", "cpam"))
    request(m, "c1", 1.0, kiosk="k1")  # -> a
    request(m, "c2", 2.0, kiosk="k2")  # -> b
    request(m, "c3", 3.0, kiosk="k3", service="cpam")  # -> c
    m.apply(AcceptOffer(A, C1), 4.0)
    m.apply(AcceptOffer(B, C2), 5.0)
    m.apply(DeclineOffer(ExpertId("c"), C3), 6.0)
    m.apply(HangUp(C2, "b", "expert"), 7.0)  # b in wrap-up
    request(m, "c4", 8.0, kiosk="k4")  # -> c
    m.apply(KioskLost(K1), 9.0)
    m.apply(AcceptOffer(ExpertId("c"), CallId("c4")), 10.0)
    m.apply(ExpertLost(ExpertId("c")), 11.0)
    request(m, "c5", 12.0, kiosk="k5")
    return m


def test_snapshot_is_plain_json_data():
    import json

    data = busy_machine().snapshot()

    assert json.loads(json.dumps(data)) == data


def test_restore_gives_back_the_same_state_and_timer():
    m = busy_machine()
    data = copy.deepcopy(m.snapshot())

    restored = machine(expert_grace_s=30.0, kiosk_grace_s=60.0)
    restored.restore(data)

    assert restored.snapshot() == m.snapshot()
    assert restored.get_timer() == m.get_timer()
    assert positions(restored) == positions(m)
    assert positions(restored, "cpam") == positions(m, "cpam")


def test_restored_machine_behaves_like_the_original():
    m = busy_machine()
    restored = machine(expert_grace_s=30.0, kiosk_grace_s=60.0)
    restored.restore(copy.deepcopy(m.snapshot()))

    def carry_on(twin: QueueMachine) -> list[Event]:
        events = twin.apply(KioskBack(K1), 13.0)
        events += run_until(twin, 200.0)
        events += twin.apply(SetStatus(A, ExpertStatus.BREAK), 201.0)
        return events + run_until(twin, 5000.0)

    original, replayed = carry_on(m), carry_on(restored)

    assert replayed == original
    assert restored.snapshot() == m.snapshot()
    assert only(original, CallRequeued) != []
    assert only(original, CallEnded) != []


def test_restore_after_an_expired_decline_cooldown_keeps_the_same_timer():
    m = machine(decline_cooldown_s=60.0)
    sign_in(m, "a", 0.0)
    sign_in(m, "b", 0.0, available=False)
    request(m, "c1", 1.0, kiosk="k1")
    m.apply(DeclineOffer(A, C1), 2.0)
    request(m, "c2", 3.0, kiosk="k2")
    m.apply(AcceptOffer(A, C2), 4.0)
    run_until(m, 100.0)  # the cooldown ran out while a was busy: c1 still waits

    restored = machine(decline_cooldown_s=60.0)
    restored.restore(copy.deepcopy(m.snapshot()))

    assert m.get_timer() == 1801.0
    assert restored.get_timer() == m.get_timer()
    assert restored.snapshot() == m.snapshot()


def test_requeued_call_gets_a_fresh_maximum_wait_from_the_requeue():
    m = machine([service("caf", max_wait_s=300.0)], expert_grace_s=5.0)
    sign_in(m, "a", 0.0)
    sign_in(m, "b", 0.0, available=False)
    request(m, "c1", 0.0)
    m.apply(AcceptOffer(A, C1), 10.0)
    m.apply(ExpertLost(A), 400.0)  # a conversation longer than the maximum wait

    requeued = one(run_until(m, 405.0), CallRequeued)
    assert requeued.position == 1
    assert only(run_until(m, 704.0), CallEnded) == []

    ended = one(run_until(m, 705.0), CallEnded)
    assert (ended.call, ended.outcome, ended.at) == (C1, Outcome.TIMED_OUT, 705.0)


def test_kiosk_back_after_callers_ahead_left_resumes_at_its_new_position():
    m = offered_to_a()
    m.apply(AcceptOffer(A, C1), 3.0)
    request(m, "c3", 4.0, kiosk="k3")
    m.apply(KioskLost(K3), 5.0)
    m.apply(CancelCall(C2, K2), 6.0)

    resumed = one(m.apply(KioskBack(K3), 7.0), CallResumed)

    assert (resumed.call, resumed.position) == (C3, 1)


def test_restart_gives_parties_lost_before_it_the_restart_grace_too():
    m = in_call_with_a()  # expert_grace 5 s, kiosk_grace 60 s, restart_grace 90 s
    m.apply(KioskLost(K2), 12.0)  # k2 would be given up at 72
    m.apply(ExpertLost(A), 20.0)  # c1 would be requeued at 25
    restored = machine(expert_grace_s=5.0, kiosk_grace_s=60.0, restart_grace_s=90.0)
    restored.restore(copy.deepcopy(m.snapshot()))

    events = restored.apply(Restarted(), 200.0)  # the server was down meanwhile

    lost = {(e.role, e.party): e.until for e in only(events, PartyLost)}
    assert lost[("expert", "a")] == 290.0
    assert lost[("kiosk", "k2")] == 290.0
    assert restored.get_timer() == 290.0
    assert only(restored.handle_timer(200.0), CallEnded) == []


def test_restored_machine_fires_simultaneous_restart_deadlines_as_the_live_one():
    """After a restart every lost party shares one deadline: the order they fire in
    follows from the state, so a restore (which re-arms in its own order) agrees."""
    live = in_call_with_a()
    live.apply(Restarted(), 100.0)
    restored = machine(expert_grace_s=5.0, kiosk_grace_s=60.0, restart_grace_s=90.0)
    restored.restore(copy.deepcopy(live.snapshot()))

    assert restored.handle_timer(190.0) == live.handle_timer(190.0)
    assert restored.snapshot() == live.snapshot()


def test_both_parties_lost_for_good_ends_the_call_as_answered():
    m = in_call_with_a()
    m.apply(Restarted(), 100.0)
    ended = one([e for e in m.handle_timer(190.0) if getattr(e, "call", None) == C1], CallEnded)
    assert (ended.outcome, ended.reason) == (Outcome.ANSWERED, "kiosk_lost")


def test_restore_leaves_out_calls_of_a_service_no_longer_configured():
    m = in_call_with_a()
    snapshot = m.snapshot()
    smaller = machine([service("caf")], expert_grace_s=5.0)
    for call in snapshot["calls"]:
        call["service"] = "msa" if call["id"] == "c2" else call["service"]

    dropped = smaller.restore(snapshot)

    assert dropped == [C2]
    assert smaller.call(C2) is None and smaller.call(C1) is not None
    assert [c.id for c in smaller.queued(CAF)] == [C3]
