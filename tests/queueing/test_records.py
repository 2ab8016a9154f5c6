"""Commands and events as JSON records: every kind round-trips, and a journal replays."""

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
    CallRequeued,
    CallResumed,
    CallState,
    CallTransferred,
    CancelCall,
    Command,
    DeclineOffer,
    Event,
    ExpertChanged,
    ExpertId,
    ExpertLost,
    ExpertSignIn,
    ExpertState,
    ExpertStatus,
    FinishWrapUp,
    HangUp,
    InviteInterpreter,
    JoinCall,
    KioskBack,
    KioskId,
    KioskLost,
    LeaveCall,
    NodeLost,
    OfferEnded,
    Outcome,
    ParticipantJoined,
    ParticipantLeft,
    PartyBack,
    PartyLost,
    PositionChanged,
    RecordText,
    ReportMediaFailure,
    RequestCall,
    Restarted,
    SetStatus,
    SupervisorLost,
    TextSaid,
    TransferCall,
    WrapUpFinished,
    WrapUpStarted,
    command_from_record,
    command_record,
    event_from_record,
    event_record,
)
from queueing import commands as commands_module
from queueing import events as events_module
from tests.queueing.helpers import CAF, CPAM, machine, run_until

A = ExpertId("a")
C1 = CallId("c1")
K1 = KioskId("k1")

COMMANDS: list[Command] = [
    RequestCall(C1, K1, CAF, "1234567", language="ar", interpreter=True),
    CancelCall(C1, K1),
    KioskLost(K1),
    KioskBack(K1, link="node-a/c1"),
    KioskLost(K1, link="node-a/c1"),
    ExpertSignIn(A, "Anne", "caf", (CAF, CPAM), ("fr", "en")),
    ExpertLost(A),
    SetStatus(A, ExpertStatus.AVAILABLE),
    AcceptOffer(A, C1),
    DeclineOffer(A, C1),
    HangUp(C1, "k1", "kiosk"),
    FinishWrapUp(A, C1, "Autre"),
    TransferCall(A, C1, CPAM),
    ReportMediaFailure(C1, "a", "expert", "ice_failed"),
    Restarted(),
    NodeLost("node-a"),
    InviteInterpreter(C1, "a", "expert", "lsf"),
    JoinCall(C1, "sup", "Sam", "caf", link="node-a/s1"),
    LeaveCall(C1, "sup", "supervisor"),
    SupervisorLost("sup", link="node-a/s1"),
    RecordText(C1, "k1", "kiosk", "bonjour"),
]

EVENTS: list[Event] = [
    CallQueued(1.0, C1, CAF, K1, "1234567", 2, 3),
    CallQueued(1.0, CallId("c1.i1"), CAF, K1, "", 0, 1, C1, ("kiosk:k1", "expert:a"), "lsf"),
    CallRefused(1.0, C1, CAF, K1, Outcome.CLOSED, 1773000000.0),
    PositionChanged(1.0, C1, CAF, K1, 2),
    CallOffered(1.0, C1, CAF, K1, A, "1234567", 5.5, 21.0, "ar", True, CPAM),
    OfferEnded(1.0, C1, CAF, A, "timeout"),
    CallConnected(1.0, C1, CAF, K1, A, 12.5),
    PartyLost(1.0, C1, CAF, "expert", "a", 6.0),
    PartyBack(1.0, C1, CAF, "kiosk", "k1", ("kiosk:k1", "expert:a")),
    ParticipantJoined(
        1.0, C1, CAF, "interpreter", "i", "Iris", ("kiosk:k1", "expert:a", "interpreter:i"), "lsf"
    ),
    ParticipantLeft(1.0, C1, CAF, "supervisor", "sup", "left", 30.0, ("kiosk:k1", "expert:a")),
    TextSaid(1.0, C1, CAF, "kiosk", "k1", "bonjour"),
    CallResumed(1.0, C1, CAF, K1, CallState.CONNECTED, 0, A),
    CallRequeued(1.0, C1, CAF, K1, A, 1, "expert_lost"),
    CallTransferred(1.0, C1, CAF, CPAM, K1, A, 1),
    CallEnded(1.0, C1, CAF, K1, None, Outcome.ABANDONED, "cancelled", 4.0, None, True),
    ExpertChanged(1.0, A, ExpertStatus.BREAK, ExpertState.IDLE, None, "offer_timeout"),
    WrapUpStarted(1.0, A, C1, CAF, 121.0),
    WrapUpFinished(1.0, A, C1, CAF, "", automatic=True),
]


def test_every_command_kind_has_a_round_trip_case():
    assert {type(c).__name__ for c in COMMANDS} == {
        n for n in commands_module.__all__ if n != "Command"
    }


def test_every_event_kind_has_a_round_trip_case():
    assert {type(e).__name__ for e in EVENTS} == {n for n in events_module.__all__ if n != "Event"}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_command_round_trips_through_json(command):
    record = json.loads(json.dumps(command_record(command, 12.5)))

    assert command_from_record(record) == (command, 12.5)


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_event_round_trips_through_json(event):
    record = json.loads(json.dumps(event_record(event)))

    assert event_from_record(record) == event


def test_record_names_its_kind_and_time():
    record = command_record(SetStatus(A, ExpertStatus.BREAK), 3.0)

    assert record == {"kind": "SetStatus", "at": 3.0, "expert": "a", "status": "break"}


def test_event_record_is_flat_with_its_time():
    record = event_record(OfferEnded(7.0, C1, CAF, A, "declined"))

    assert record == {
        "kind": "OfferEnded",
        "at": 7.0,
        "call": "c1",
        "service": "caf",
        "expert": "a",
        "result": "declined",
    }


def test_decoded_enums_are_enums_again():
    command, _ = command_from_record(command_record(SetStatus(A, ExpertStatus.BREAK), 1.0))
    event = event_from_record(event_record(EVENTS[2]))

    assert command.status is ExpertStatus.BREAK
    assert event.outcome is Outcome.CLOSED


def test_journal_of_records_replays_to_the_same_state_and_events():
    scenario: list[tuple[Command, float]] = [
        (ExpertSignIn(A, "Anne", "caf", (CAF, CPAM)), 0.0),
        (SetStatus(A, ExpertStatus.AVAILABLE), 1.0),
        (RequestCall(C1, K1, CAF, "1234567"), 2.0),
        (RequestCall(CallId("c2"), KioskId("k2"), CPAM, "7654321"), 3.0),
        (DeclineOffer(A, C1), 4.0),
        (AcceptOffer(A, CallId("c2")), 5.0),
        (KioskLost(K1), 6.0),
        (TransferCall(A, CallId("c2"), CAF), 20.0),
        (KioskBack(K1), 30.0),
    ]
    live = machine()
    journal, live_events = [], []
    for command, now in scenario:
        live_events += run_until(live, now)
        live_events += live.apply(command, now)
        journal.append(json.loads(json.dumps(command_record(command, now))))

    replayed = machine()
    replayed_events = []
    for record in journal:
        command, now = command_from_record(record)
        replayed_events += run_until(replayed, now)
        replayed_events += replayed.apply(command, now)

    assert replayed.snapshot() == live.snapshot()
    assert replayed.get_timer() == live.get_timer()
    assert [event_record(e) for e in replayed_events] == [event_record(e) for e in live_events]
