"""A connected call as a room: who is in it, who offers media to whom, who may send what.

Rules this module keeps:

1. Membership and role are the one permission check for everything relayed inside a
   call (SDP, ICE, channel data), and the machine, which every node replays, is where
   membership is read: a relay is allowed or refused alike on every node.
2. Participants are named ``<role>:<id>`` on the wire; only this module maps them to
   bus addresses (interpreters are reached at their expert address, supervisors at
   ``supervisor:<id>``).
3. Each pair of participants has its own peer connection, and the one who joined later
   makes the offer: the expert towards the kiosk, an interpreter or a supervisor
   towards everyone already there. Listing the room in join order says it all.
4. A supervisor sends no media; the kiosk's outgoing connections share its uplink
   budget, which its ``call.connected`` announces.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from media import ice_servers
from queueing import CallId, CallState, ParticipantRole, QueueError, QueueMachine
from queueing.model import Call
from signaling import CHANNELS, Forbidden, InvalidData, MessageBus, check_payload
from signaling import messages as m
from signaling.channels import RealTimeText

from ..auth import Principal
from ..config import Config
from ..metrics import Metrics

__all__ = ["Rooms", "bus_address", "speaks_as"]


def bus_address(key: str) -> str:
    """Where the bus reaches the participant ``<role>:<id>``."""
    role, _, identity = key.partition(":")
    if role == "interpreter":
        return f"expert:{identity}"
    return f"{role}:{identity}"


def speaks_as(principal: Principal) -> ParticipantRole:
    """The role a principal's commands name: interpreters act as experts, and the
    machine tells a guest interpreter from a call's own expert."""
    if principal.role == "kiosk":
        return "kiosk"
    if principal.role == "supervisor":
        return "supervisor"
    return "expert"


class Rooms:
    def __init__(
        self,
        config: Config,
        machine: Callable[[], QueueMachine],
        bus: MessageBus,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.machine = machine
        """The ledger's machine, read anew each time: a rollback replaces it."""
        self.bus = bus
        self.metrics = metrics

    # ------------------------------------------------------------------ who

    def key_of(self, principal: Principal, call: Call) -> str | None:
        """The sender's name in the room, or None when it is not a participant."""
        match principal.role:
            case "kiosk":
                key = f"kiosk:{principal.id}"
            case "supervisor":
                key = f"supervisor:{principal.id}"
            case "expert" | "interpreter":
                own = principal.id == call.expert
                key = f"expert:{principal.id}" if own else f"interpreter:{principal.id}"
            case _:
                return None
        return key if key in call.members() else None

    def members(self, call: Call) -> list[m.PartyInfo]:
        kiosk = self.machine().kiosks[call.kiosk]
        infos = []
        for key, role, name, language in self.machine().participants(call.id):
            identity = key.partition(":")[2]
            infos.append(
                m.PartyInfo(
                    role=role,  # type: ignore[arg-type]
                    id=identity,
                    name=name,
                    place=kiosk.place if role == "kiosk" else "",
                    key=key,
                    language=language,
                    sends_media=role != "supervisor",
                )
            )
        return infos

    @staticmethod
    def offer_to(you: str, members: list[m.PartyInfo]) -> list[str]:
        """Everyone who was there before ``you``: the later one makes the offer."""
        keys = [p.key for p in members]
        return keys[: keys.index(you)] if you in keys else []

    def connected(
        self, call: Call, now: float, here: Callable[[str], bool], only: str | None = None
    ) -> list[tuple[str, m.CallConnected]]:
        """``call.connected`` for each participant this node holds (or ``only`` one),
        with ICE servers and TURN credentials of its own."""
        assert call.expert is not None
        machine = self.machine()
        media = self.config.media
        kiosk = machine.kiosks[call.kiosk]
        members = self.members(call)
        by_key = {p.key: p for p in members}
        kiosk_info = by_key[f"kiosk:{call.kiosk}"]
        expert_info = by_key[f"expert:{call.expert}"]
        targets = [
            m.ServiceRef(id=spec.id, name=spec.name, open=spec.hours.is_open(now))
            for spec in (machine.services[s] for s in kiosk.services)
            if spec.id != call.service
        ]
        transcript = machine.services[call.service].rtt_transcript
        messages: list[tuple[str, m.CallConnected]] = []
        for you in members:
            target = bus_address(you.key)
            if (only is not None and you.key != only) or not here(target):
                continue
            servers = ice_servers(
                media.stun_urls, media.turn_urls, media.turn_secret, you.id, now, media.turn_ttl_s
            )
            offer_to = self.offer_to(you.key, members)
            is_expert = you.role == "expert"
            messages.append(
                (
                    target,
                    m.CallConnected(
                        call=call.id,
                        service=call.service,
                        peer=expert_info if you.role == "kiosk" else kiosk_info,
                        ice_servers=[m.IceServer(**s) for s in servers],  # type: ignore[arg-type]
                        media_mode=media.mode,
                        initiator=bool(offer_to),
                        you=you.key,
                        participants=members,
                        offer_to=offer_to,
                        send_media=you.sends_media,
                        uplink_kbps=media.kiosk_uplink_kbps if you.role == "kiosk" else None,
                        beneficiary=call.beneficiary if is_expert else "",
                        transfer_targets=targets if is_expert else [],
                        rtt_transcript=transcript,
                    ),
                )
            )
        return messages

    def summaries(self, calls: list[Call], now: float) -> list[m.CallSummary]:
        """Connected calls with their participants, for the admin and supervisor pages."""
        kiosks = self.machine().kiosks
        return [
            m.CallSummary(
                call=call.id,
                service=call.service,
                kiosk=call.kiosk,
                kiosk_name=kiosks[call.kiosk].name,
                connected_s=round(max(now - (call.connected_at or now), 0.0), 1),
                participants=self.members(call),
            )
            for call in calls
            if call.state is CallState.CONNECTED and call.joins is None
        ]

    # ------------------------------------------------------------------ relays

    def _room(self, sender: Principal, call_id: str) -> tuple[Call, str]:
        call = self.machine().call(CallId(call_id))
        if call is None:
            raise QueueError("unknown_call", "this call does not exist or has ended", call=call_id)
        key = self.key_of(sender, call)
        if key is None:
            # The kiosk or expert of a call that is not connected (yet) is told so;
            # anybody else learns nothing about the call.
            own = sender.id in (call.kiosk, call.expert)
            if own and call.state is not CallState.CONNECTED:
                raise QueueError("not_in_call", "the call is not connected", call=call_id)
            raise QueueError("not_your_call", "you are not a party of this call", call=call_id)
        return call, key

    def _addressee(self, call: Call, sender: str, to: str | None, call_id: str) -> str:
        if to is None:
            # Two-party clients name nobody: the kiosk and its expert mean each other.
            counterpart = {f"kiosk:{call.kiosk}": f"expert:{call.expert}"}
            counterpart[f"expert:{call.expert}"] = f"kiosk:{call.kiosk}"
            if sender not in counterpart:
                raise InvalidData("name the participant this is for in 'to'")
            return counterpart[sender]
        if to not in call.members() or to == sender:
            raise QueueError(
                "not_a_participant", "that participant is not in this call", call=call_id, to=to
            )
        return to

    async def relay(self, sender: Principal, message: m.RtcSdp | m.RtcIce) -> None:
        """Pass SDP or ICE to one participant of the sender's call, and nobody else."""
        call, key = self._room(sender, message.call)
        to = self._addressee(call, key, message.to, message.call)
        relayed: m.Message
        if isinstance(message, m.RtcSdp):
            relayed = m.RtcSdp(call=message.call, description=message.description, sender=key)
        else:
            relayed = m.RtcIce(call=message.call, candidate=message.candidate, sender=key)
        await self.bus.publish(bus_address(to), relayed)

    async def data(self, sender: Principal, message: m.CallData) -> RealTimeText | None:
        """Relay a channel's message to the call's members allowed to receive it (or to
        ``to`` only); returns a finished line of real-time text, for a transcript."""
        rule = CHANNELS[message.channel]
        try:
            call, key = self._room(sender, message.call)
            role = call.members()[key]
            payload = check_payload(message.channel, role, message.data)
            if message.to is not None:
                to = self._addressee(call, key, message.to, message.call)
                if call.members()[to] not in rule.receivers:
                    raise Forbidden(f"a {call.members()[to]} does not receive {message.channel!r}")
                targets = [to]
            elif rule.needs_addressee:
                raise InvalidData(f"name the participant {message.channel!r} is for in 'to'")
            else:
                targets = [
                    other
                    for other, other_role in call.members().items()
                    if other != key and other_role in rule.receivers
                ]
        except Exception:
            self.metrics.channel_message(message.channel, "refused", 0)
            raise
        relayed = m.CallData(
            call=message.call,
            channel=message.channel,
            data=msgspec.to_builtins(payload),
            to=message.to,
            sender=key,
        )
        for target in targets:
            await self.bus.publish(bus_address(target), relayed)
        self.metrics.channel_message(message.channel, "relayed", len(msgspec.json.encode(payload)))
        if isinstance(payload, RealTimeText) and payload.final and payload.text.strip():
            return payload
        return None
