"""Calls as rooms over real WebSockets: an interpreter and a supervisor join a running
call, channels are relayed by membership, and what a non-member may not do."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.support import JsonClient, RunningServer, answered_call
from visio_server.keys import DESK

Connect = Callable[..., Awaitable[JsonClient]]
INTERPRETER = {
    "services": ["interpretes"],
    "languages": ["lsf", "fr"],
    "name": "Léa Interprète",
    "partner": "interpretes",
}
KIOSK, EXPERT, LEA, SUPERVISOR = (
    "kiosk:kiosk-1",
    "expert:expert-1",
    "interpreter:interp-1",
    "supervisor:super-caf",
)


async def interpreter_online(connect: Connect) -> JsonClient:
    interpreter = await connect("interpreter", "interp-1", **INTERPRETER)
    assert (await interpreter.request({"type": "expert.status", "status": "available"}))[
        "type"
    ] == "ack"
    return interpreter


async def three_party_call(
    server: RunningServer, connect: Connect
) -> tuple[JsonClient, JsonClient, JsonClient, str]:
    interpreter = await interpreter_online(connect)
    kiosk, expert, call = await answered_call(server)
    invited = await expert.request(
        {"type": "call.invite", "call": call, "role": "interpreter", "language": "lsf"}
    )
    assert invited["type"] == "ack", invited
    offer = await interpreter.expect("call.offered")
    await interpreter.request({"type": "offer.accept", "call": offer["call"]})
    await interpreter.expect("call.connected", call=call)
    await kiosk.expect("call.participants", change="joined")
    await expert.expect("call.participants", change="joined")
    return kiosk, expert, interpreter, call


def keys(participants: list[dict[str, Any]]) -> list[str]:
    return [p["key"] for p in participants]


# ---------------------------------------------------------------- interpreter


async def test_expert_asks_for_an_interpreter_who_joins_and_offers_to_both(
    server: RunningServer,
    connect: Connect,
) -> None:
    interpreter = await interpreter_online(connect)
    kiosk, expert, call = await answered_call(server)

    await expert.request(
        {"type": "call.invite", "call": call, "role": "interpreter", "language": "lsf"}
    )

    for side in (kiosk, expert):
        queued = await side.expect("call.interpreter", state="queued")
        assert queued["call"] == call and queued["language"] == "lsf" and queued["position"] == 1
        await side.expect("call.interpreter", state="offered")
    offer = await interpreter.expect("call.offered")
    assert offer["joins"] == call and offer["joins_service_name"] == "CAF"
    assert offer["service"] == "interpretes" and offer["language"] == "lsf"

    await interpreter.request({"type": "offer.accept", "call": offer["call"]})

    connected = await interpreter.expect("call.connected", call=call)
    assert connected["you"] == LEA
    assert keys(connected["participants"]) == [KIOSK, EXPERT, LEA]
    assert connected["offer_to"] == [KIOSK, EXPERT] and connected["initiator"] is True
    assert connected["send_media"] is True
    for side in (kiosk, expert):
        joined = await side.expect("call.participants", change="joined")
        assert joined["party"]["key"] == LEA and joined["party"]["language"] == "lsf"
        assert joined["offer_to"] == [], "the newcomer makes the offers"
        told = await side.expect("call.interpreter", state="joined")
        assert told["interpreter"]["name"] == "Léa Interprète"


async def test_sdp_and_ice_go_to_the_named_participant_only(
    server: RunningServer, connect: Connect
) -> None:
    kiosk, expert, interpreter, call = await three_party_call(server, connect)
    offer = {"type": "offer", "sdp": "v=0\r\n"}

    await interpreter.send({"type": "rtc.sdp", "call": call, "description": offer, "to": KIOSK})
    await interpreter.send({"type": "rtc.ice", "call": call, "candidate": None, "to": EXPERT})

    relayed = await kiosk.expect("rtc.sdp")
    assert relayed["sender"] == LEA and relayed["description"] == offer
    assert (await expert.expect("rtc.ice"))["sender"] == LEA
    assert [e for e in kiosk.take_events() if e["type"].startswith("rtc.")] == []
    assert [e for e in expert.take_events() if e["type"] == "rtc.sdp"] == []

    # A guest must say whom it talks to.
    refused = await interpreter.request({"type": "rtc.sdp", "call": call, "description": offer})
    assert refused["code"] == "invalid_data"


async def test_interpreter_leaving_lets_the_call_go_on(
    server: RunningServer, connect: Connect
) -> None:
    kiosk, expert, interpreter, call = await three_party_call(server, connect)

    assert (await interpreter.request({"type": "call.hangup", "call": call}))["type"] == "ack"

    ended = await interpreter.expect("call.ended", call=call)
    assert ended["reason"] == "left"
    for side in (kiosk, expert):
        left = await side.expect("call.participants", change="left")
        assert left["party"]["key"] == LEA and keys(left["participants"]) == [KIOSK, EXPERT]
        assert (await side.expect("call.interpreter", state="left"))["reason"] == "left"
    assert [e for e in kiosk.take_events() if e["type"] == "call.ended"] == []
    wrap = await interpreter.expect("wrapup.started")
    assert wrap["service"] == "interpretes"
    # The kiosk and the expert still talk, and the kiosk still ends the call.
    relayed = {"type": "rtc.ice", "call": call, "candidate": None}
    assert (await kiosk.request(relayed))["type"] == "ack"
    await kiosk.request({"type": "call.hangup", "call": call})
    await expert.expect("call.ended", call=call)


async def test_kiosk_hang_up_ends_the_call_for_the_interpreter_too(
    server: RunningServer, connect: Connect
) -> None:
    kiosk, expert, interpreter, call = await three_party_call(server, connect)

    await kiosk.request({"type": "call.hangup", "call": call})

    assert (await interpreter.expect("call.ended", call=call))["reason"] == "call_ended"
    await expert.expect("call.ended", call=call)
    await interpreter.expect("wrapup.started")


async def test_no_interpreter_signed_in_is_told_and_the_call_goes_on(
    server: RunningServer, connect: Connect
) -> None:
    kiosk, expert, call = await answered_call(server)

    await expert.request(
        {"type": "call.invite", "call": call, "role": "interpreter", "language": "lsf"}
    )

    for side in (kiosk, expert):
        told = await side.expect("call.interpreter", state="unavailable")
        assert told["reason"] == "no_expert"
    hung_up = await kiosk.request({"type": "call.hangup", "call": call})
    assert hung_up["type"] == "ack", "the call was still running"


async def test_invite_errors_are_typed(server: RunningServer, connect: Connect) -> None:
    _kiosk, expert, call = await answered_call(server)

    unknown = await expert.request(
        {"type": "call.invite", "call": call, "role": "interpreter", "language": "tlh"}
    )
    assert unknown["code"] == "no_interpreter_language"
    assert set(unknown["details"]["languages"]) == {"lsf", "ar"}
    malformed = await expert.request(
        {"type": "call.invite", "call": call, "role": "interpreter", "language": "L S F"}
    )
    assert malformed["code"] == "malformed_message"


async def test_kiosk_may_ask_for_an_interpreter_where_the_service_allows_it(
    server: RunningServer,
    connect: Connect,
) -> None:
    interpreter = await interpreter_online(connect)
    kiosk, _, call = await answered_call(server)

    asked = await kiosk.request(
        {"type": "call.invite", "call": call, "role": "interpreter", "language": "lsf"}
    )

    assert asked["type"] == "ack"
    assert (await interpreter.expect("call.offered"))["joins"] == call


async def test_interpreter_may_not_transfer_nor_invite(
    server: RunningServer, connect: Connect
) -> None:
    _, _, interpreter, call = await three_party_call(server, connect)

    transfer = await interpreter.request({"type": "call.transfer", "call": call, "service": "cpam"})
    invite = await interpreter.request(
        {"type": "call.invite", "call": call, "role": "interpreter", "language": "ar"}
    )

    assert transfer["code"] == "forbidden" and invite["code"] == "forbidden"


# ---------------------------------------------------------------- supervisor


async def test_supervisor_of_the_partner_joins_receiving_only_and_the_expert_sees_it(
    server: RunningServer,
    connect: Connect,
) -> None:
    kiosk, expert, call = await answered_call(server)
    supervisor = await connect("supervisor", "super-caf", partner="caf", name="Superviseur CAF")
    status = await supervisor.request({"type": "queue.subscribe"})
    assert status["type"] == "ack"
    view = await supervisor.expect("queue.status")
    assert [c["call"] for c in view["calls"]] == [call]
    assert keys(view["calls"][0]["participants"]) == [KIOSK, EXPERT]

    assert (await supervisor.request({"type": "call.join", "call": call}))["type"] == "ack"

    connected = await supervisor.expect("call.connected", call=call)
    assert connected["send_media"] is False and connected["offer_to"] == [KIOSK, EXPERT]
    joined = await expert.expect("call.participants", change="joined")
    assert joined["party"]["role"] == "supervisor" and joined["party"]["sends_media"] is False
    await kiosk.expect("call.participants", change="joined")


async def test_supervisor_of_another_partner_cannot_join(
    server: RunningServer, connect: Connect
) -> None:
    _, _, call = await answered_call(server)
    other = await connect("supervisor", "super-cpam", partner="cpam", name="Superviseur CPAM")

    refused = await other.request({"type": "call.join", "call": call})

    assert refused["code"] == "forbidden"
    view = await other.request({"type": "queue.subscribe"})
    assert view["type"] == "ack"
    assert (await other.expect("queue.status"))["calls"] == [], "another partner's calls"


async def test_supervisor_whispers_to_the_expert_and_the_kiosk_never_hears_it(
    server: RunningServer,
    connect: Connect,
) -> None:
    kiosk, expert, call = await answered_call(server)
    supervisor = await connect("supervisor", "super-caf", partner="caf", name="Superviseur CAF")
    await supervisor.request({"type": "call.join", "call": call})
    await supervisor.expect("call.connected")

    whisper = {"type": "call.data", "call": call, "channel": "whisper"}
    sent = await supervisor.request({**whisper, "data": {"text": "Pense au RIB"}, "to": EXPERT})
    assert sent["type"] == "ack"
    heard = await expert.expect("call.data", channel="whisper")
    assert heard["sender"] == SUPERVISOR and heard["data"] == {"text": "Pense au RIB"}

    to_kiosk = await supervisor.request({**whisper, "data": {"text": "x"}, "to": KIOSK})
    assert to_kiosk["code"] == "forbidden"
    nobody = await supervisor.request({**whisper, "data": {"text": "x"}})
    assert nobody["code"] == "invalid_data"
    from_kiosk = await kiosk.request({**whisper, "data": {"text": "x"}, "to": EXPERT})
    assert from_kiosk["code"] == "forbidden"
    assert [e for e in kiosk.take_events() if e["type"] == "call.data"] == []


async def test_supervisor_hang_up_only_leaves(server: RunningServer, connect: Connect) -> None:
    kiosk, expert, call = await answered_call(server)
    supervisor = await connect("supervisor", "super-caf", partner="caf", name="Superviseur CAF")
    await supervisor.request({"type": "call.join", "call": call})

    await supervisor.request({"type": "call.hangup", "call": call})

    assert (await supervisor.expect("call.ended", call=call))["reason"] == "left"
    left = await expert.expect("call.participants", change="left")
    assert left["party"]["key"] == SUPERVISOR
    assert (await kiosk.request({"type": "call.hangup", "call": call}))["type"] == "ack"


async def test_supervisor_who_disconnects_leaves_the_call(
    server: RunningServer, connect: Connect
) -> None:
    _, expert, call = await answered_call(server)
    supervisor = await connect("supervisor", "super-caf", partner="caf", name="Superviseur CAF")
    await supervisor.request({"type": "call.join", "call": call})
    await expert.expect("call.participants", change="joined")

    await supervisor.close()

    left = await expert.expect("call.participants", change="left")
    assert left["reason"] == "lost"


# ---------------------------------------------------------------- real-time text


async def test_real_time_text_reaches_every_other_participant_as_typed(
    server: RunningServer, connect: Connect
) -> None:
    kiosk, expert, interpreter, call = await three_party_call(server, connect)
    typed = "Bonjour"

    for seq in range(1, len(typed) + 1):
        data = {"seq": seq, "text": typed[:seq], "line": 0}
        await expert.send({"type": "call.data", "call": call, "channel": "rtt", "data": data})
    await expert.send(
        {
            "type": "call.data",
            "call": call,
            "channel": "rtt",
            "data": {"seq": 8, "text": "Bonjou", "line": 0},
        }
    )

    for side in (kiosk, interpreter):
        seen = [
            (await side.expect("call.data", channel="rtt"))["data"]["text"]
            for _ in range(len(typed) + 1)
        ]
        assert seen == ["B", "Bo", "Bon", "Bonj", "Bonjo", "Bonjou", "Bonjour", "Bonjou"]
    assert [e for e in expert.take_events() if e["type"] == "call.data"] == []


async def test_finished_lines_are_kept_where_the_service_keeps_a_transcript(
    server: RunningServer, connect: Connect
) -> None:
    kiosk, expert, call = await answered_call(server)
    line = {"seq": 3, "text": "Merci", "final": True, "line": 0}

    sent = await kiosk.request({"type": "call.data", "call": call, "channel": "rtt", "data": line})

    assert sent["type"] == "ack"
    await expert.expect("call.data", channel="rtt")
    rows = await server.app[DESK].store.read_events()
    said = [r for r in rows if r["kind"] == "TextSaid"]
    assert [(r["party"], r["role"], r["text"]) for r in said] == [("kiosk-1", "kiosk", "Merci")]


async def test_channel_data_is_checked_bounded_and_rate_limited(
    server: RunningServer, connect: Connect
) -> None:
    kiosk, _expert, call = await answered_call(server)
    rtt = {"type": "call.data", "call": call, "channel": "rtt"}

    wrong = await kiosk.request({**rtt, "data": {"seq": 1, "text": 42}})
    too_long = await kiosk.request({**rtt, "data": {"seq": 1, "text": "x" * 501}})
    unknown = await kiosk.request({**rtt, "channel": "cobrowse", "data": {}})

    assert wrong["code"] == too_long["code"] == "invalid_data"
    assert unknown["code"] == "malformed_message"
    codes = []
    for seq in range(80):
        reply = await kiosk.request({**rtt, "data": {"seq": seq, "text": "a"}})
        codes.append(reply.get("code", reply["type"]))
    assert "rate_limited" in codes, "a burst over the channel's rate is refused"
    assert codes[:50] == ["ack"] * 50


# ---------------------------------------------------------------- non-members


async def test_a_non_member_can_send_nothing_into_a_call(
    server: RunningServer, connect: Connect
) -> None:
    kiosk, expert, call = await answered_call(server)
    stranger = await connect("kiosk", "kiosk-2")
    other_expert = await connect(
        "expert", "expert-2", services=["cpam"], name="Dominique", partner="cpam"
    )
    rtt = {"seq": 1, "text": "coucou"}

    for outsider in (stranger, other_expert):
        data = await outsider.request(
            {"type": "call.data", "call": call, "channel": "rtt", "data": rtt}
        )
        sdp = await outsider.request(
            {
                "type": "rtc.sdp",
                "call": call,
                "description": {"type": "offer", "sdp": "v=0\r\n"},
                "to": KIOSK,
            }
        )
        ice = await outsider.request(
            {"type": "rtc.ice", "call": call, "candidate": None, "to": EXPERT}
        )
        assert data["code"] == sdp["code"] == ice["code"] == "not_your_call"
    supervisor_offer = await expert.request(
        {
            "type": "rtc.sdp",
            "call": call,
            "description": {"type": "offer", "sdp": "v=0\r\n"},
            "to": SUPERVISOR,
        }
    )
    assert supervisor_offer["code"] == "not_a_participant"
    assert [e for e in kiosk.take_events() if e["type"] in ("call.data", "rtc.sdp")] == []


async def test_admin_sees_participants_and_waiting_interpreter_requests(
    server: RunningServer, connect: Connect
) -> None:
    _kiosk, expert, call = await answered_call(server)
    admin = await connect("admin", "admin-1", name="Admin")
    await admin.request({"type": "queue.subscribe"})
    await admin.expect("queue.status")
    lsf_interpreter = await connect("interpreter", "interp-1", **INTERPRETER)  # on break

    await expert.request(
        {"type": "call.invite", "call": call, "role": "interpreter", "language": "lsf"}
    )

    async def waiting_request() -> dict[str, Any]:
        for _ in range(20):
            view = await admin.expect("queue.status", timeout=5)
            if view["interpreter_requests"]:
                return view
        raise AssertionError("the request never showed")

    view = await waiting_request()
    [request] = view["interpreter_requests"]
    assert request["for_call"] == call and request["language"] == "lsf"
    assert request["service"] == "interpretes" and request["state"] == "waiting"
    assert lsf_interpreter.closed is False


@pytest.mark.parametrize("role", ["kiosk", "expert"])
async def test_the_anchors_may_not_join_as_supervisors(
    server: RunningServer, connect: Connect, role: str
) -> None:
    kiosk, expert, call = await answered_call(server)
    client = kiosk if role == "kiosk" else expert

    refused = await client.request({"type": "call.join", "call": call})

    assert refused["code"] == "forbidden"
