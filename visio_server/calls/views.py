"""Messages built from the queue's state: catalogues, queue status, offers, connections.

Rules this module keeps:

1. Views read the machine and never change it; they hold no state of their own.
2. A supervisor sees only the services of its partner; an admin sees them all.
3. A connected call's messages are built only for the parties this node holds: each
   carries TURN credentials made for its recipient, and a party elsewhere is told by
   its own node.
4. Only the expert learns the beneficiary number and where the call can be
   transferred; the expert makes the SDP offer.
"""

from __future__ import annotations

from collections.abc import Callable

from media import ice_servers
from queueing import (
    CallId,
    CallOffered,
    CallTransferred,
    ExpertId,
    KioskId,
    QueueMachine,
    ServiceId,
    ServiceSpec,
    WrapUpStarted,
)
from queueing.model import Call
from signaling import MessageBus, address
from signaling import messages as m

from ..auth import Principal
from ..config import Config

__all__ = ["Views"]


class Views:
    def __init__(
        self, config: Config, machine: Callable[[], QueueMachine], bus: MessageBus
    ) -> None:
        self.config = config
        self.machine = machine
        """The ledger's machine, read anew each time: a rollback replaces it."""
        self.bus = bus

    # ------------------------------------------------------------------ lookups

    def call(self, call_id: CallId) -> Call | None:
        return self.machine().call(call_id)

    def kiosk_info(self, kiosk_id: str) -> m.KioskInfo | None:
        kiosk = self.machine().kiosks.get(KioskId(kiosk_id))
        return m.KioskInfo(id=kiosk.id, name=kiosk.name, place=kiosk.place) if kiosk else None

    def expert_state(self, expert_id: str) -> tuple[str, str] | None:
        expert = self.machine().expert(ExpertId(expert_id))
        return (expert.status.value, expert.state.value) if expert else None

    # ------------------------------------------------------------------ catalogues

    def welcome_services(self, principal: Principal, now: float) -> list[m.ServiceInfo]:
        services = self.machine().services
        visible = [services[ServiceId(s)] for s in principal.services if ServiceId(s) in services]
        if principal.watches_queues:
            visible = self._watched_services(principal)
        return [
            m.ServiceInfo(
                id=spec.id,
                name=spec.name,
                partner=spec.partner,
                open=spec.hours.is_open(now),
                next_opening=spec.hours.next_opening(now),
                closes_at=spec.hours.closes_at(now),
                timezone=spec.hours.timezone,
                beneficiary_label=spec.beneficiary_label,
                beneficiary_pattern=spec.beneficiary_pattern,
                beneficiary_hint=spec.beneficiary_hint,
                languages=list(spec.languages),
                interpreter=spec.interpreter,
                visit_reasons=list(spec.visit_reasons),
            )
            for spec in visible
        ]

    def _watched_services(self, principal: Principal) -> list[ServiceSpec]:
        specs = list(self.machine().services.values())
        if principal.role == "admin":
            return specs
        return [s for s in specs if s.partner == principal.partner]

    # ------------------------------------------------------------------ queue status

    def queue_status(self, principal: Principal | None, now: float) -> m.QueueStatus:
        machine = self.machine()
        specs = (
            self._watched_services(principal)
            if principal is not None
            else list(machine.services.values())
        )
        rows = []
        for spec in specs:
            status = machine.status(spec.id, now)
            experts = dict(status.experts)
            experts["away"] = experts.pop("disconnected", 0)
            rows.append(
                m.ServiceQueue(
                    service=spec.id,
                    name=spec.name,
                    partner=spec.partner,
                    open=status.open,
                    waiting=status.waiting,
                    offered=status.offered,
                    connected=status.connected,
                    oldest_wait_s=round(status.oldest_wait_s, 1),
                    experts=experts,
                )
            )
        return m.QueueStatus(at=now, services=rows)

    async def publish_status(self, now: float) -> None:
        """Tell the watchers this node holds: everything to admins, its own to a partner."""
        partners = sorted({s.partner for s in self.machine().services.values()})
        watched = [p for p in partners if self.bus.has_subscribers(address("watch", p))]
        if not watched and not self.bus.has_subscribers("watch:*"):
            return
        everything = self.queue_status(None, now)
        await self.bus.publish_here("watch:*", everything)
        for partner in watched:
            mine = [row for row in everything.services if row.partner == partner]
            await self.bus.publish_here(
                address("watch", partner), m.QueueStatus(at=now, services=mine)
            )

    # ------------------------------------------------------------------ call messages

    def offer(self, event: CallOffered, now: float) -> m.CallOffered:
        machine = self.machine()
        spec = machine.services[event.service]
        kiosk = machine.kiosks[event.kiosk]
        origin = machine.services.get(event.transferred_from) if event.transferred_from else None
        return m.CallOffered(
            call=event.call,
            service=event.service,
            service_name=spec.name,
            beneficiary=event.beneficiary,
            kiosk=m.KioskInfo(id=kiosk.id, name=kiosk.name, place=kiosk.place),
            waited_s=round(event.waited_s, 1),
            expires_in_s=max(event.expires_at - now, 0.0),
            language=event.language,
            interpreter=event.interpreter,
            transferred_from=event.transferred_from,
            transferred_from_name=origin.name if origin else None,
        )

    def connected(
        self, call: Call, now: float, here: Callable[[str], bool]
    ) -> list[tuple[str, m.CallConnected]]:
        """``call.connected`` for each party ``here`` says this node holds, with the
        other party's identity and ICE servers with TURN credentials of its own."""
        assert call.expert is not None
        machine = self.machine()
        expert = machine.expert(call.expert)
        kiosk = machine.kiosks[call.kiosk]
        media = self.config.media
        expert_name = expert.name if expert else call.expert
        targets = [
            m.ServiceRef(id=spec.id, name=spec.name, open=spec.hours.is_open(now))
            for spec in (machine.services[s] for s in kiosk.services)
            if spec.id != call.service
        ]
        messages: list[tuple[str, m.CallConnected]] = []
        for target, peer, initiator, user in (
            (
                address("kiosk", call.kiosk),
                m.PartyInfo(role="expert", id=call.expert, name=expert_name),
                False,
                call.kiosk,
            ),
            (
                address("expert", call.expert),
                m.PartyInfo(role="kiosk", id=kiosk.id, name=kiosk.name, place=kiosk.place),
                True,
                call.expert,
            ),
        ):
            if not here(target):
                continue
            servers = ice_servers(
                media.stun_urls, media.turn_urls, media.turn_secret, user, now, media.turn_ttl_s
            )
            message = m.CallConnected(
                call=call.id,
                service=call.service,
                peer=peer,
                ice_servers=[m.IceServer(**s) for s in servers],  # type: ignore[arg-type]
                media_mode=media.mode,
                initiator=initiator,
                beneficiary=call.beneficiary if initiator else "",
                transfer_targets=targets if initiator else [],
            )
            messages.append((target, message))
        return messages

    def transferred(self, event: CallTransferred) -> m.CallTransferred:
        spec = self.machine().services[event.to_service]
        return m.CallTransferred(
            call=event.call, service=spec.id, service_name=spec.name, position=event.position
        )

    def wrap_up(self, event: WrapUpStarted, now: float) -> m.WrapUpStarted:
        spec = self.machine().services[event.service]
        return m.WrapUpStarted(
            call=event.call,
            service=event.service,
            reasons=list(spec.visit_reasons),
            deadline_in_s=max(event.until - now, 0.0),
        )
