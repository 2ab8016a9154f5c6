"""A whole call over real WebSockets: queue, offer, connect, SDP relay, hang-up, wrap-up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.support import JsonClient, RunningServer

Connect = Callable[..., Awaitable[JsonClient]]


async def test_kiosk_is_answered_by_expert_and_expert_wraps_up(
    server: RunningServer, connect: Connect
) -> None:
    expert = await connect(
        "expert", "expert-1", services=["caf"], name="Camille Expert", partner="caf"
    )
    await expert.expect("expert.state", state="idle")
    assert (await expert.request({"type": "expert.status", "status": "available"}))["type"] == "ack"
    kiosk = await connect("kiosk", "kiosk-1")

    queued = await kiosk.request(
        {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
    )
    assert queued["type"] == "call.queued" and queued["position"] == 1
    call = queued["call"]

    offer = await expert.expect("call.offered")
    assert offer["call"] == call
    assert offer["beneficiary"] == "1234567"
    assert offer["kiosk"] == {"id": "kiosk-1", "name": "Mairie de Test", "place": "Salle 1"}
    assert offer["service"] == "caf" and offer["waited_s"] >= 0 and offer["expires_in_s"] > 0

    assert (await expert.request({"type": "offer.accept", "call": call}))["type"] == "ack"
    to_expert = await expert.expect("call.connected")
    to_kiosk = await kiosk.expect("call.connected")
    assert to_expert["initiator"] is True and to_kiosk["initiator"] is False
    assert to_kiosk["peer"]["name"] == "Camille Expert"
    assert to_expert["peer"]["place"] == "Salle 1"

    sdp = {"type": "offer", "sdp": "v=0\r\n"}
    await expert.send({"type": "rtc.sdp", "call": call, "description": sdp})
    relayed = await kiosk.expect("rtc.sdp")
    assert relayed["description"] == sdp and relayed["sender"] == "expert:expert-1"
    await kiosk.send(
        {
            "type": "rtc.ice",
            "call": call,
            "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"},
        }
    )
    assert (await expert.expect("rtc.ice"))["sender"] == "kiosk:kiosk-1"

    assert (await kiosk.request({"type": "call.hangup", "call": call}))["type"] == "ack"
    assert (await kiosk.expect("call.ended"))["outcome"] == "answered"
    assert (await expert.expect("call.ended"))["reason"] == "hangup_kiosk"
    wrap = await expert.expect("wrapup.started")
    assert wrap["reasons"] == ["Prestations", "Logement", "Autre"]
    bad = await expert.request({"type": "wrapup.done", "call": call, "reason": "Nope"})
    assert bad["type"] == "error" and bad["code"] == "invalid_visit_reason"
    assert (await expert.request({"type": "wrapup.done", "call": call, "reason": "Logement"}))[
        "type"
    ] == "ack"
    state = await expert.expect("expert.state", state="idle")
    assert state["status"] == "available"
