"""The routing table of call control, driven by a real machine and an in-memory bus."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from queueing import (
    AcceptOffer,
    CallId,
    CallQueued,
    CallRefused,
    Event,
    ExpertId,
    ExpertSignIn,
    ExpertStatus,
    KioskId,
    QueueMachine,
    RequestCall,
    ServiceId,
    SetStatus,
    WaitEstimator,
)
from signaling import LocalBus
from signaling.messages import Message
from tests.support import write_test_config
from visio_server.calls.estimates import Estimates
from visio_server.calls.rooms import Rooms
from visio_server.calls.router import ROUTES, Router
from visio_server.calls.views import Views
from visio_server.config import load_config
from visio_server.metrics import Metrics

NOW = 1_800_000_000.0


class Node:
    """One node's routing over a machine driven by hand, and what each party heard."""

    def __init__(self, folder: Path, *, parties: tuple[str, ...]) -> None:
        config = load_config(write_test_config(folder))
        self.machine = QueueMachine(
            config.service_specs(), config.kiosk_specs(), config.queue_settings()
        )
        bus = LocalBus()
        self.rooms = rooms = Rooms(config, lambda: self.machine, bus, Metrics(CollectorRegistry()))
        self.views = Views(config, lambda: self.machine, bus, rooms)
        estimates = Estimates(WaitEstimator(), lambda: self.machine, bus, 2.0)
        self.router = Router(bus, self.views, estimates, rooms)
        self.heard: dict[str, list[Message]] = {party: [] for party in parties}
        for party, inbox in self.heard.items():
            bus.subscribe(party, inbox.append)

    async def apply(self, command: typing.Any, now: float = NOW) -> list[Event]:
        events = self.machine.apply(command, now)
        await self.router.route(events, now)
        return events

    def types(self, party: str) -> list[str]:
        return [str(type(message).__struct_config__.tag) for message in self.heard[party]]


async def ringing(node: Node) -> CallId:
    await node.apply(ExpertSignIn(ExpertId("expert-1"), "Camille", "caf", (ServiceId("caf"),)))
    await node.apply(SetStatus(ExpertId("expert-1"), ExpertStatus.AVAILABLE))
    call = CallId("c1")
    await node.apply(RequestCall(call, KioskId("kiosk-1"), ServiceId("caf"), "1234567"))
    return call


def test_each_handler_takes_the_event_class_it_is_routed_by() -> None:
    for cls, handler in ROUTES.items():
        assert typing.get_type_hints(handler)["event"] is cls, handler.__name__


async def test_the_answer_and_the_error_of_a_request_are_not_routed(tmp_path: Path) -> None:
    node = Node(tmp_path, parties=("kiosk:kiosk-1", "kiosk:kiosk-2"))
    await node.apply(ExpertSignIn(ExpertId("expert-1"), "Camille", "caf", (ServiceId("caf"),)))

    queued = await node.apply(
        RequestCall(CallId("c1"), KioskId("kiosk-1"), ServiceId("caf"), "1234567")
    )
    refused = await node.apply(
        RequestCall(CallId("c2"), KioskId("kiosk-2"), ServiceId("cpam"), "X")
    )

    assert any(isinstance(e, CallQueued) for e in queued)
    assert any(isinstance(e, CallRefused) for e in refused)
    assert node.types("kiosk:kiosk-1") == [], "the reply tells the kiosk"
    assert node.types("kiosk:kiosk-2") == [], "the error tells the kiosk"


async def test_a_ringing_expert_is_offered_the_call_and_both_parties_are_connected(
    tmp_path: Path,
) -> None:
    node = Node(tmp_path, parties=("expert:expert-1", "kiosk:kiosk-1"))
    call = await ringing(node)
    assert "call.offered" in node.types("expert:expert-1")
    await node.apply(AcceptOffer(ExpertId("expert-1"), call), NOW + 5)
    assert "call.connected" in node.types("expert:expert-1")
    assert "call.connected" in node.types("kiosk:kiosk-1")
    # The accepted offer is told by call.connected, not withdrawn.
    assert "offer.withdrawn" not in node.types("expert:expert-1")


async def test_messages_are_not_built_for_a_party_held_by_another_node(tmp_path: Path) -> None:
    node = Node(tmp_path, parties=("kiosk:kiosk-1",))
    call = await ringing(node)
    built: list[str] = []
    connected = node.rooms.connected

    def counting(*args: typing.Any) -> typing.Any:
        messages = connected(*args)
        built.extend(target for target, _ in messages)
        return messages

    node.rooms.connected = counting  # type: ignore[method-assign]
    await node.apply(AcceptOffer(ExpertId("expert-1"), call), NOW + 5)
    assert built == ["kiosk:kiosk-1"]


@pytest.mark.parametrize(("service", "code"), [("ferme", "service_closed"), ("cpam", "no_expert")])
async def test_a_refusal_carries_its_wire_code(tmp_path: Path, service: str, code: str) -> None:
    node = Node(tmp_path, parties=("kiosk:kiosk-1",))
    events = await node.apply(
        RequestCall(CallId("c1"), KioskId("kiosk-1"), ServiceId(service), "X")
    )
    [refused] = [e for e in events if isinstance(e, CallRefused)]
    assert refused.code == code and refused.reason
    assert node.heard["kiosk:kiosk-1"] == []
