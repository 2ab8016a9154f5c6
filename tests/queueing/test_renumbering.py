"""Positions are renumbered only behind what changed, with the same events as a full pass.

The machine renumbers a service's queue from the first place where a call joined or
left it. ``FullRenumber`` keeps the straightforward pass (every queued call of every
touched service, after each command); on random command sequences both must tell the
same calls the same positions in the same order, and every queued call's position must
be its place in the queue.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from queueing import (
    AcceptOffer,
    CallId,
    CancelCall,
    Command,
    DeclineOffer,
    Event,
    ExpertId,
    ExpertLost,
    ExpertSignIn,
    ExpertStatus,
    FinishWrapUp,
    HangUp,
    InviteInterpreter,
    KioskBack,
    KioskId,
    KioskLost,
    KioskSpec,
    NodeLost,
    PositionChanged,
    QueueError,
    QueueMachine,
    QueueSettings,
    RequestCall,
    Restarted,
    ServiceId,
    ServiceSpec,
    SetStatus,
    TransferCall,
)
from queueing.model import CallState

from .helpers import kiosk, service

SERVICES = ("caf", "cpam", "interp")
EXPERTS = ("a", "b", "c", "lea")


class FullRenumber(QueueMachine):
    """The reference: renumbers every queued call of every touched service."""

    def _renumber(self, now: float) -> None:
        for service_id in sorted(self._touched):
            for index, call_id in enumerate(self._queues[service_id]):
                call = self._calls[call_id]
                if call.position != index + 1:
                    call.position = index + 1
                    self._emit(
                        PositionChanged(
                            now,
                            call.id,
                            service_id,
                            call.kiosk,
                            index + 1,
                            call.joins,
                            self._notify_for(call),
                        )
                    )


def specs(kiosk_count: int) -> tuple[list[ServiceSpec], list[KioskSpec]]:
    services = [
        service("caf", interpreter=True, offer_timeout_s=7.0, wrap_up_s=5.0, max_wait_s=400.0),
        service("cpam", offer_timeout_s=11.0, wrap_up_s=3.0),
        service(
            "interp",
            languages=("lsf", "ar"),
            interpreting=True,
            offer_timeout_s=9.0,
            wrap_up_s=4.0,
        ),
    ]
    # Priorities put new calls in the middle of the queue, not only at its end.
    kiosks = [kiosk(f"k{i}", ("caf", "cpam"), priority=i % 3) for i in range(1, kiosk_count + 1)]
    return services, kiosks


def pair(kiosk_count: int = 24) -> tuple[QueueMachine, QueueMachine]:
    services, kiosks = specs(kiosk_count)
    settings = QueueSettings(kiosk_grace_s=15.0, expert_grace_s=4.0, decline_cooldown_s=6.0)
    return QueueMachine(services, kiosks, settings), FullRenumber(services, kiosks, settings)


def random_command(rng: random.Random, m: QueueMachine, serial: int) -> Command:
    calls = m.calls()
    offered = [c for c in calls if c.offered_to]
    connected = [c for c in calls if c.state is CallState.CONNECTED]
    # Most answers go to calls in the state that lets them through, to reach the
    # offers, connections, requeues and transfers that move calls in the queues.
    pool = rng.choice([calls, offered, offered, connected, connected])
    call = rng.choice(pool) if pool else (rng.choice(calls) if calls else None)
    call_id = call.id if call else CallId("none")
    expert = ExpertId(rng.choice(EXPERTS))
    k = KioskId(f"k{rng.randint(1, len(m.kiosks))}")
    link = f"n{rng.randint(1, 2)}/{rng.randint(1, 3)}"
    choices: list[Any] = [
        (
            6,
            lambda: RequestCall(
                CallId(f"c{serial}"),
                k,
                ServiceId(rng.choice(SERVICES[:2])),
                "1234567",
                language=rng.choice((None, "lsf", "ar")),
                interpreter=rng.random() < 0.2,
            ),
        ),
        (2, lambda: CancelCall(call_id, call.kiosk if call else k)),
        (3, lambda: KioskLost(call.kiosk if call else k, rng.choice(("", link)))),
        (3, lambda: KioskBack(call.kiosk if call else k, rng.choice(("", link)))),
        (
            2,
            lambda: ExpertSignIn(
                expert,
                expert.title(),
                "caf",
                tuple(ServiceId(s) for s in rng.sample(SERVICES, rng.randint(1, 2))),
                tuple(rng.sample(("lsf", "ar", "fr"), rng.randint(0, 2))),
                link,
            ),
        ),
        (1, lambda: ExpertLost(expert, rng.choice(("", link)))),
        (
            3,
            lambda: SetStatus(
                expert, rng.choice([ExpertStatus.AVAILABLE] * 3 + list(ExpertStatus))
            ),
        ),
        (
            4,
            lambda: AcceptOffer(
                next(iter(sorted(call.offered_to)), expert) if call else expert, call_id
            ),
        ),
        (
            2,
            lambda: DeclineOffer(
                next(iter(sorted(call.offered_to)), expert) if call else expert, call_id
            ),
        ),
        (2, lambda: HangUp(call_id, call.expert or "x" if call else "x", "expert")),
        (1, lambda: HangUp(call_id, call.kiosk if call else "x", "kiosk")),
        (
            1,
            lambda: InviteInterpreter(
                call_id, call.expert or "x" if call else "x", "expert", rng.choice(("lsf", "ar"))
            ),
        ),
        (1, lambda: FinishWrapUp(expert, call_id, "done")),
        (
            1,
            lambda: TransferCall(
                call.expert or expert if call else expert,
                call_id,
                ServiceId(rng.choice(SERVICES[:2])),
            ),
        ),
        (0.3, lambda: NodeLost(f"n{rng.randint(1, 2)}")),
        (0.2, lambda: Restarted()),
    ]
    weights = [w for w, _ in choices]
    return rng.choices([make for _, make in choices], weights)[0]()  # type: ignore[no-any-return]


def outcome(m: QueueMachine, command: Command | None, now: float) -> list[Event] | str:
    try:
        return m.handle_timer(now) if command is None else m.apply(command, now)
    except QueueError as error:
        return f"refused: {error.code}"


def assert_places(m: QueueMachine) -> None:
    for service_id in SERVICES:
        queued = m.queued(ServiceId(service_id))
        assert [c.position for c in queued] == list(range(1, len(queued) + 1))
        assert all(c.state in (CallState.WAITING, CallState.OFFERED) for c in queued)


@pytest.mark.parametrize("seed", range(12))
def test_positions_changed_are_those_of_a_full_renumbering(seed: int) -> None:
    rng = random.Random(seed)
    fast, full = pair()
    now = 0.0
    told = 0
    for serial in range(600):
        now += rng.choice((0.0, 0.5, 1.0, 3.0, 8.0))
        command = None if rng.random() < 0.25 else random_command(rng, full, serial)
        got, expected = outcome(fast, command, now), outcome(full, command, now)
        assert got == expected, f"step {serial}: {command}"
        assert_places(fast)
        if isinstance(got, list):
            told += sum(isinstance(e, PositionChanged) for e in got)
    assert told > 0, "the sequence never moved anyone: the comparison proved nothing"


@pytest.mark.parametrize("seed", range(6))
def test_a_restore_that_leaves_gaps_is_renumbered_as_by_a_full_pass(seed: int) -> None:
    """Calls of a kiosk no longer configured are dropped: the places left are corrected
    by the next command that touches the service, as a full pass would."""
    rng = random.Random(1000 + seed)
    fast, full = pair()
    for m in (fast, full):
        m.apply(ExpertSignIn(ExpertId("a"), "A", "caf", (ServiceId("caf"),)), 0.0)
    for serial in range(12):
        kiosk_id = KioskId(f"k{rng.randint(1, 24)}")
        command: Command | None = RequestCall(
            CallId(f"c{serial}"), kiosk_id, ServiceId("caf"), "1234567"
        )
        assert outcome(fast, command, 1.0) == outcome(full, command, 1.0)
    saved = fast.snapshot()
    assert saved == full.snapshot()
    fast, full = pair(kiosk_count=12)
    assert fast.restore(saved) == full.restore(saved)
    now = 2.0
    for serial in range(100, 400):
        now += rng.choice((0.0, 1.0, 5.0))
        command = None if rng.random() < 0.2 else random_command(rng, full, serial)
        assert outcome(fast, command, now) == outcome(full, command, now), f"{command}"
    assert fast.snapshot() == full.snapshot()


def test_a_reconnecting_kiosk_renumbers_nobody() -> None:
    """Losing and regaining the link changes no place: no call is even looked at."""
    fast, _ = pair()
    fast.apply(ExpertSignIn(ExpertId("a"), "A", "caf", (ServiceId("cpam"),)), 0.0)
    for i in range(1, 21):
        fast.apply(RequestCall(CallId(f"c{i}"), KioskId(f"k{i}"), ServiceId("cpam"), "1"), 1.0)
    moved: list[dict[ServiceId, int]] = []
    original = fast._renumber

    def spy(now: float) -> None:
        moved.append(dict(fast._moved))
        original(now)

    fast._renumber = spy  # type: ignore[method-assign]
    for i in range(1, 21):
        events = fast.apply(KioskLost(KioskId(f"k{i}")), 2.0)
        events += fast.apply(KioskBack(KioskId(f"k{i}")), 2.0)
        assert not any(isinstance(e, PositionChanged) for e in events)
    assert moved == [{}] * 40
    order = [c.id for c in fast.queued(ServiceId("cpam"))]
    assert len(order) == 20
    gone = fast.call(order[14])
    assert gone is not None
    events = fast.apply(CancelCall(gone.id, gone.kiosk), 3.0)
    assert moved[-1] == {ServiceId("cpam"): 14}
    assert [(e.call, e.position) for e in events if isinstance(e, PositionChanged)] == [
        (call_id, place) for place, call_id in enumerate(order[15:], start=15)
    ]
