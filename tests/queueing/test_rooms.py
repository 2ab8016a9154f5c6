"""Calls as rooms: interpreters and supervisors join a running call, and leave it.

Every test drives the pure machine with explicit ``now`` values.
"""

from __future__ import annotations

import json

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
    DeclineOffer,
    ExpertId,
    ExpertLost,
    ExpertState,
    FinishWrapUp,
    HangUp,
    InviteInterpreter,
    JoinCall,
    KioskLost,
    LeaveCall,
    NodeLost,
    Outcome,
    ParticipantJoined,
    ParticipantLeft,
    PartyBack,
    PartyLost,
    PositionChanged,
    QueueError,
    QueueMachine,
    RecordText,
    ReportMediaFailure,
    SupervisorLost,
    TextSaid,
    WrapUpStarted,
    command_from_record,
    command_record,
    event_record,
)
from tests.queueing.helpers import (
    kiosks,
    machine,
    one,
    only,
    positions,
    request,
    run_until,
    service,
    sign_in,
)

A = ExpertId("a")
LEA = ExpertId("lea")
OMAR = ExpertId("omar")
C1 = CallId("c1")
INTERPRETING = "interp"
ROOM = ("kiosk:k1", "expert:a")


def room_machine(**settings: float) -> QueueMachine:
    """caf (interpreter on request), an interpreting service for lsf and ar, six kiosks."""
    return machine(
        [
            service("caf", interpreter=True, rtt_transcript=True),
            service("cpam"),
            service(
                INTERPRETING,
                languages=("lsf", "ar", "fr"),
                interpreting=True,
                offer_timeout_s=30.0,
                max_wait_s=300.0,
                wrap_up_s=60.0,
                visit_reasons=("Interprétation",),
            ),
        ],
        kiosks(6, ("caf", "cpam")),
        **settings,
    )


def connected(m: QueueMachine | None = None) -> QueueMachine:
    """c1 from k1 is answered by a at t=2; lea (lsf) and omar (ar) interpret, available."""
    m = m or room_machine(expert_grace_s=5.0)
    sign_in(m, "a", 0.0)
    sign_in(m, "lea", 0.0, (INTERPRETING,), languages=("lsf", "fr"))
    sign_in(m, "omar", 0.0, (INTERPRETING,), languages=("ar", "fr"))
    request(m, "c1", 1.0)
    m.apply(AcceptOffer(A, C1), 2.0)
    return m


def with_interpreter(m: QueueMachine | None = None) -> QueueMachine:
    m = connected(m)
    m.apply(InviteInterpreter(C1, "a", "expert", "lsf"), 10.0)
    m.apply(AcceptOffer(LEA, CallId("c1.i1")), 14.0)
    return m


# ---------------------------------------------------------------- interpreter


def test_expert_asks_for_an_interpreter_who_is_queued_then_offered_in_its_language():
    m = connected()

    events = m.apply(InviteInterpreter(C1, "a", "expert", "lsf"), 10.0)

    queued = one(events, CallQueued)
    assert (queued.call, queued.service, queued.joins, queued.language) == (
        "c1.i1",
        INTERPRETING,
        C1,
        "lsf",
    )
    assert queued.notify == ROOM
    offer = one(events, CallOffered)
    assert (offer.expert, offer.joins, offer.notify) == (LEA, C1, ROOM)
    assert m.expert(OMAR).state is ExpertState.IDLE, "omar does not interpret lsf"
    assert m.call(C1).state is CallState.CONNECTED
    assert m.kiosk_call("k1").id == C1, "the request is not the kiosk's call"


def test_interpreter_who_accepts_joins_the_call_and_the_request_ends_answered():
    m = connected()
    m.apply(InviteInterpreter(C1, "a", "expert", "lsf"), 10.0)

    events = m.apply(AcceptOffer(LEA, CallId("c1.i1")), 14.0)

    joined = one(events, ParticipantJoined)
    assert (joined.call, joined.role, joined.party, joined.language) == (
        C1,
        "interpreter",
        "lea",
        "lsf",
    )
    assert joined.members == (*ROOM, "interpreter:lea")
    answered = one(events, CallConnected)
    assert (answered.call, answered.service, answered.joins, answered.waited_s) == (
        "c1.i1",
        INTERPRETING,
        C1,
        4.0,
    )
    ended = one(events, CallEnded)
    assert (ended.call, ended.outcome, ended.joins) == ("c1.i1", Outcome.ANSWERED, C1)
    assert m.call(CallId("c1.i1")) is None
    assert m.expert(LEA).state is ExpertState.IN_CALL and m.expert(LEA).call == C1
    assert [p[0] for p in m.participants(C1)] == [*ROOM, "interpreter:lea"]
    assert m.call(C1).interpreter_request is None


def test_kiosk_may_ask_only_where_the_service_allows_it():
    m = connected()
    m.apply(HangUp(C1, "a", "expert"), 3.0)
    m.apply(FinishWrapUp(A, C1, "Autre"), 4.0)
    sign_in(m, "b", 5.0, ("cpam",))
    request(m, "c2", 5.0, kiosk="k2", service="cpam", beneficiary="1")
    m.apply(AcceptOffer(ExpertId("b"), CallId("c2")), 6.0)

    with pytest.raises(QueueError) as refused:
        m.apply(InviteInterpreter(CallId("c2"), "k2", "kiosk", "lsf"), 7.0)
    assert refused.value.code == "interpreter_not_offered"

    request(m, "c3", 8.0, kiosk="k3")
    m.apply(AcceptOffer(A, CallId("c3")), 9.0)
    events = m.apply(InviteInterpreter(CallId("c3"), "k3", "kiosk", "ar"), 10.0)
    assert one(events, CallOffered).expert == OMAR


def test_caller_who_asked_for_an_interpreter_gets_one_requested_when_answered():
    m = room_machine()
    sign_in(m, "a", 0.0)
    sign_in(m, "lea", 0.0, (INTERPRETING,), languages=("lsf",))
    request(m, "c1", 1.0, language="lsf", interpreter=True)

    events = m.apply(AcceptOffer(A, C1), 2.0)

    assert one(events, CallQueued).joins == C1
    assert one(events, CallOffered).expert == LEA


def test_invite_is_refused_with_typed_errors_and_changes_nothing():
    m = connected()
    before = m.snapshot()

    for command, code in [
        (InviteInterpreter(C1, "a", "expert", "tlh"), "no_interpreter_language"),
        (InviteInterpreter(C1, "k2", "kiosk", "lsf"), "not_your_call"),
        (InviteInterpreter(CallId("nope"), "a", "expert", "lsf"), "unknown_call"),
    ]:
        with pytest.raises(QueueError) as refused:
            m.apply(command, 10.0)
        assert refused.value.code == code
    assert m.snapshot() == before

    m.apply(InviteInterpreter(C1, "a", "expert", "lsf"), 10.0)
    with pytest.raises(QueueError) as twice:
        m.apply(InviteInterpreter(C1, "a", "expert", "ar"), 11.0)
    assert twice.value.code == "interpreter_already"


def test_no_interpreter_available_is_told_and_the_call_goes_on():
    m = room_machine()
    sign_in(m, "a", 0.0)
    request(m, "c1", 1.0)
    m.apply(AcceptOffer(A, C1), 2.0)

    events = m.apply(InviteInterpreter(C1, "a", "expert", "lsf"), 10.0)

    refused = one(events, CallRefused)
    assert (refused.outcome, refused.joins, refused.notify) == (Outcome.NO_EXPERT, C1, ROOM)
    assert m.call(C1).state is CallState.CONNECTED
    assert m.call(C1).interpreter_request is None
    # Asking again later is allowed: nothing is left waiting.
    sign_in(m, "lea", 11.0, (INTERPRETING,), languages=("lsf",))
    assert one(m.apply(InviteInterpreter(C1, "a", "expert", "lsf"), 12.0), CallOffered)


def test_request_waiting_too_long_times_out_and_the_call_goes_on():
    m = connected()
    m.apply(InviteInterpreter(C1, "a", "expert", "lsf"), 10.0)
    m.apply(DeclineOffer(LEA, CallId("c1.i1")), 11.0)

    events = run_until(m, 311.0)

    ended = one([e for e in events if isinstance(e, CallEnded)], CallEnded)
    assert (ended.call, ended.outcome, ended.joins) == ("c1.i1", Outcome.TIMED_OUT, C1)
    assert m.call(C1).state is CallState.CONNECTED
    assert m.call(C1).interpreter_request is None


def test_requests_wait_in_order_and_their_positions_are_told_to_the_requesting_call():
    m = room_machine()
    sign_in(m, "a", 0.0)
    sign_in(m, "b", 0.0)
    sign_in(m, "lea", 0.0, (INTERPRETING,), languages=("lsf",))
    request(m, "c1", 1.0)
    request(m, "c2", 1.0, kiosk="k2")
    m.apply(AcceptOffer(A, C1), 2.0)
    m.apply(AcceptOffer(ExpertId("b"), CallId("c2")), 2.0)
    m.apply(InviteInterpreter(C1, "a", "expert", "lsf"), 3.0)

    events = m.apply(InviteInterpreter(CallId("c2"), "b", "expert", "lsf"), 4.0)

    assert one(events, CallQueued).position == 2
    assert positions(m, INTERPRETING) == ["c1.i1", "c2.i1"]
    events = m.apply(AcceptOffer(LEA, CallId("c1.i1")), 5.0)
    moved = one(events, PositionChanged)
    assert (moved.call, moved.position, moved.joins, moved.notify) == (
        "c2.i1",
        1,
        "c2",
        ("kiosk:k2", "expert:b"),
    )


def test_interpreter_leaving_does_not_end_the_call_and_starts_its_wrap_up():
    m = with_interpreter()

    events = m.apply(HangUp(C1, "lea", "expert"), 70.0)

    left = one(events, ParticipantLeft)
    assert (left.role, left.party, left.reason, left.stayed_s, left.members) == (
        "interpreter",
        "lea",
        "left",
        56.0,
        ROOM,
    )
    assert only(events, CallEnded) == []
    assert m.call(C1).state is CallState.CONNECTED
    wrap = one(events, WrapUpStarted)
    assert (wrap.expert, wrap.service) == (LEA, INTERPRETING)
    m.apply(FinishWrapUp(LEA, C1, "Interprétation"), 71.0)
    assert m.expert(LEA).state is ExpertState.IDLE


def test_kiosk_hang_up_ends_the_call_for_everyone():
    m = with_interpreter()
    m.apply(JoinCall(C1, "sup", "Sam", "caf"), 20.0)

    events = m.apply(HangUp(C1, "k1", "kiosk"), 80.0)

    left = only(events, ParticipantLeft)
    assert {(e.party, e.reason) for e in left} == {("lea", "call_ended"), ("sup", "call_ended")}
    assert one(events, CallEnded).call == C1
    assert m.call(C1) is None
    assert m.expert(A).state is ExpertState.WRAP_UP
    assert m.expert(LEA).state is ExpertState.WRAP_UP


def test_ending_the_call_withdraws_a_waiting_request():
    m = connected()
    m.apply(InviteInterpreter(C1, "a", "expert", "lsf"), 10.0)

    events = m.apply(HangUp(C1, "a", "expert"), 12.0)

    request_end = next(e for e in only(events, CallEnded) if e.call == "c1.i1")
    assert (request_end.outcome, request_end.reason) == (Outcome.ABANDONED, "call_ended")
    assert m.expert(LEA).state is ExpertState.IDLE
    assert positions(m, INTERPRETING) == []


def test_interpreter_cannot_hang_up_the_call_for_the_others():
    m = with_interpreter()

    m.apply(HangUp(C1, "lea", "expert"), 30.0)

    assert m.call(C1).state is CallState.CONNECTED
    with pytest.raises(QueueError) as refused:
        m.apply(HangUp(C1, "lea", "expert"), 31.0)
    assert refused.value.code == "not_your_call"


def test_interpreter_media_failure_makes_it_leave_not_the_call_fail():
    m = with_interpreter()

    events = m.apply(ReportMediaFailure(C1, "lea", "expert", "ice_failed"), 30.0)

    assert one(events, ParticipantLeft).reason == "media_failed"
    assert m.call(C1).state is CallState.CONNECTED


def test_lost_interpreter_has_the_grace_then_is_asked_for_again_at_the_head():
    m = with_interpreter()
    sign_in(m, "zoe", 15.0, (INTERPRETING,), languages=("lsf",), available=False)
    request(m, "c9", 16.0, kiosk="k2")  # another caller, not for interpreters

    events = m.apply(ExpertLost(LEA), 20.0)

    lost = one(events, PartyLost)
    assert (lost.role, lost.party, lost.until, lost.members) == (
        "interpreter",
        "lea",
        25.0,
        (*ROOM, "interpreter:lea"),
    )
    assert m.call(C1).guest("interpreter", "lea") is not None

    events = run_until(m, 26.0)

    left = one(events, ParticipantLeft)
    assert (left.party, left.reason) == ("lea", "lost")
    again = one(events, CallQueued)
    assert (again.call, again.joins, again.language) == ("c1.i2", C1, "lsf")
    assert m.call(CallId("c1.i2")).at_head
    assert m.expert(LEA).state is ExpertState.DISCONNECTED


def test_lost_interpreter_back_within_the_grace_stays_in_the_call():
    m = with_interpreter()
    m.apply(ExpertLost(LEA), 20.0)

    events = sign_in(m, "lea", 22.0, (INTERPRETING,), languages=("lsf", "fr"), available=False)

    back = one(events, PartyBack)
    assert (back.role, back.party) == ("interpreter", "lea")
    assert only(run_until(m, 100.0), ParticipantLeft) == []
    assert m.expert(LEA).state is ExpertState.IN_CALL


def test_expert_lost_for_good_requeues_the_call_and_the_interpreter_leaves():
    m = with_interpreter()

    m.apply(ExpertLost(A), 30.0)
    events = run_until(m, 36.0)

    assert one(events, ParticipantLeft).reason == "requeued"
    assert m.call(C1).state is not CallState.CONNECTED
    assert m.call(C1).guests == []


# ---------------------------------------------------------------- supervisor


def test_supervisor_of_the_partner_joins_receiving_and_leaves():
    m = connected()

    events = m.apply(JoinCall(C1, "sup", "Sam", "caf", link="n/1"), 20.0)

    joined = one(events, ParticipantJoined)
    assert (joined.role, joined.party, joined.members) == (
        "supervisor",
        "sup",
        (*ROOM, "supervisor:sup"),
    )
    assert m.link_of("supervisor:sup") == "n/1"

    events = m.apply(LeaveCall(C1, "sup", "supervisor"), 50.0)

    assert one(events, ParticipantLeft).stayed_s == 30.0
    assert m.call(C1).state is CallState.CONNECTED
    assert m.link_of("supervisor:sup") is None


def test_supervisor_of_another_partner_cannot_join():
    m = connected()

    with pytest.raises(QueueError) as refused:
        m.apply(JoinCall(C1, "sup-cpam", "Paul", "cpam"), 20.0)

    assert refused.value.code == "forbidden"
    assert m.call(C1).guests == []


def test_supervisor_cannot_join_a_waiting_call_nor_twice():
    m = room_machine()
    sign_in(m, "a", 0.0, available=False)
    request(m, "c1", 1.0)
    with pytest.raises(QueueError) as waiting:
        m.apply(JoinCall(C1, "sup", "Sam", "caf"), 2.0)
    assert waiting.value.code == "not_in_call"

    m = connected()
    m.apply(JoinCall(C1, "sup", "Sam", "caf"), 2.0)
    with pytest.raises(QueueError) as twice:
        m.apply(JoinCall(C1, "sup", "Sam", "caf"), 3.0)
    assert twice.value.code == "already_in_call"


def test_supervisor_hang_up_only_leaves():
    m = connected()
    m.apply(JoinCall(C1, "sup", "Sam", "caf"), 20.0)

    events = m.apply(HangUp(C1, "sup", "supervisor"), 21.0)

    assert one(events, ParticipantLeft).party == "sup"
    assert m.call(C1).state is CallState.CONNECTED


def test_supervisor_connection_lost_or_node_lost_leaves_its_calls():
    m = connected()
    m.apply(JoinCall(C1, "sup", "Sam", "caf", link="n1/x"), 20.0)

    stale = m.apply(SupervisorLost("sup", link="n1/old"), 21.0)
    assert stale == []
    events = m.apply(SupervisorLost("sup", link="n1/x"), 22.0)
    assert one(events, ParticipantLeft).reason == "lost"

    m.apply(JoinCall(C1, "sup", "Sam", "caf", link="n2/y"), 30.0)
    events = m.apply(NodeLost("n2"), 31.0)
    assert one(events, ParticipantLeft).reason == "lost"


def test_only_guests_leave():
    m = connected()

    with pytest.raises(QueueError) as refused:
        m.apply(LeaveCall(C1, "k1", "kiosk"), 5.0)

    assert refused.value.code == "not_a_guest"


def test_kiosk_lost_in_a_call_with_guests_keeps_them_for_the_grace():
    m = with_interpreter(room_machine(expert_grace_s=5.0, kiosk_grace_s=60.0))

    events = m.apply(KioskLost("k1"), 20.0)

    assert one(events, PartyLost).members == (*ROOM, "interpreter:lea")
    assert m.call(C1).guests


# ---------------------------------------------------------------- transcript


def test_finished_lines_are_kept_only_where_the_service_keeps_a_transcript():
    m = with_interpreter()

    events = m.apply(RecordText(C1, "lea", "expert", "Bonjour"), 20.0)

    said = one(events, TextSaid)
    assert (said.role, said.party, said.text) == ("interpreter", "lea", "Bonjour")
    with pytest.raises(QueueError) as stranger:
        m.apply(RecordText(C1, "k2", "kiosk", "?"), 21.0)
    assert stranger.value.code == "not_your_call"

    other = room_machine()
    sign_in(other, "b", 0.0, ("cpam",))
    request(other, "c5", 1.0, service="cpam", beneficiary="1")
    other.apply(AcceptOffer(ExpertId("b"), CallId("c5")), 2.0)
    with pytest.raises(QueueError) as off:
        other.apply(RecordText(CallId("c5"), "k1", "kiosk", "Bonjour"), 3.0)
    assert off.value.code == "transcript_off"


# ---------------------------------------------------------------- persistence


def test_snapshot_restore_keeps_participants_requests_and_their_timers():
    live = with_interpreter()
    live.apply(JoinCall(C1, "sup", "Sam", "caf", link="n/1"), 20.0)
    live.apply(ExpertLost(LEA), 21.0)
    request(live, "c2", 22.0, kiosk="k2")
    sign_in(live, "b", 22.0)
    live.apply(AcceptOffer(ExpertId("b"), CallId("c2")), 23.0)
    live.apply(InviteInterpreter(CallId("c2"), "b", "expert", "ar"), 24.0)

    restored = room_machine(expert_grace_s=5.0)
    restored.restore(json.loads(json.dumps(live.snapshot())))

    assert restored.snapshot() == live.snapshot()
    assert restored.get_timer() == live.get_timer()
    later = [event_record(e) for e in run_until(live, 400.0)]
    assert [event_record(e) for e in run_until(restored, 400.0)] == later
    assert any(r["kind"] == "ParticipantLeft" for r in later)


def test_journal_with_rooms_replays_to_the_same_state_and_events():
    commands = [
        (InviteInterpreter(C1, "a", "expert", "lsf"), 10.0),
        (AcceptOffer(LEA, CallId("c1.i1")), 14.0),
        (JoinCall(C1, "sup", "Sam", "caf"), 15.0),
        (ExpertLost(LEA), 20.0),
        (LeaveCall(C1, "sup", "supervisor"), 40.0),
        (AcceptOffer(LEA, CallId("c1.i2")), 41.0),
        (HangUp(C1, "k1", "kiosk"), 90.0),
    ]

    def play(m: QueueMachine) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for command, now in commands:
            record = json.loads(json.dumps(command_record(command, now)))
            replayed, at = command_from_record(record)
            rows += [event_record(e) for e in run_until(m, at)]
            try:
                rows += [event_record(e) for e in m.apply(replayed, at)]
            except QueueError as exc:
                rows.append({"refused": exc.code})
        return rows

    live, replayed = connected(), connected()

    assert play(live) == play(replayed)
    assert live.snapshot() == replayed.snapshot()
    kinds = [r.get("kind") for r in play(connected())]
    assert kinds.count("ParticipantJoined") == 2
    assert "ParticipantLeft" in kinds
