"""Messages built from the queue's state: catalogues, queue status, offers, connections.

Rules this module keeps:

1. Views read the machine and never change it; they hold no state of their own.
2. A supervisor sees only the services of its partner; an admin sees them all.
3. What a connected call tells its participants is built by ``rooms``.
4. Admins see every running call and request for an interpreter; a supervisor those
   of its partner's services (and the requests made for them).
"""

from __future__ import annotations

from collections.abc import Callable

from queueing import (
    CallId,
    CallOffered,
    CallState,
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
from .rooms import Rooms

__all__ = ["Views"]


class Views:
    def __init__(
        self, config: Config, machine: Callable[[], QueueMachine], bus: MessageBus, rooms: Rooms
    ) -> None:
        self.config = config
        self.machine = machine
        """The ledger's machine, read anew each time: a rollback replaces it."""
        self.bus = bus
        self.rooms = rooms
        self.devices: Callable[[], list[m.DeviceHealth]] = list
        """The kiosks' devices, read without I/O (set by the documents glue)."""

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
        shown = {spec.id for spec in specs}
        calls = [c for c in machine.calls() if c.service in shown or c.joins is not None]
        connected = [c for c in calls if c.service in shown and c.joins is None]
        requests = [
            m.InterpreterWaiting(
                request=c.id,
                for_call=c.joins,
                service=c.service,
                language=c.language,
                waited_s=round(max(now - c.queued_at, 0.0), 1),
                state=c.state.value,  # type: ignore[arg-type]
            )
            for c in calls
            if c.joins is not None
            and c.state in (CallState.WAITING, CallState.OFFERED)
            and (c.service in shown or self._service_of(c.joins) in shown)
        ]
        return m.QueueStatus(
            at=now,
            services=rows,
            calls=self.rooms.summaries(connected, now),
            interpreter_requests=requests,
            devices=self._devices_serving(shown),
        )

    def _devices_serving(self, services: set[ServiceId]) -> list[m.DeviceHealth]:
        """The devices of every kiosk that calls one of ``services``: a kiosk whose
        agent is not connected is listed as such, since that is what an admin must see."""
        known = {d.kiosk: d for d in self.devices()}
        return [
            known.get(kiosk.id) or _no_agent(kiosk.id, kiosk.name)
            for kiosk in self.machine().kiosks.values()
            if services & set(kiosk.services)
        ]

    def _service_of(self, call_id: CallId) -> ServiceId | None:
        call = self.machine().call(call_id)
        return call.service if call else None

    async def publish_status(self, now: float) -> None:
        """Tell the watchers this node holds: everything to admins, its own to a partner."""
        partners = sorted({s.partner for s in self.machine().services.values()})
        watched = [p for p in partners if self.bus.has_subscribers(address("watch", p))]
        if not watched and not self.bus.has_subscribers("watch:*"):
            return
        everything = self.queue_status(None, now)
        await self.bus.publish_here("watch:*", everything)
        for partner in watched:
            mine = {row.service for row in everything.services if row.partner == partner}
            await self.bus.publish_here(
                address("watch", partner),
                m.QueueStatus(
                    at=now,
                    services=[row for row in everything.services if row.service in mine],
                    calls=[c for c in everything.calls if c.service in mine],
                    interpreter_requests=[
                        r
                        for r in everything.interpreter_requests
                        if r.service in mine or self._service_of(CallId(r.for_call)) in mine
                    ],
                    devices=self._devices_serving({ServiceId(s) for s in mine}),
                ),
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
            joins=event.joins,
            joins_service_name=self._joined_service_name(event.joins),
        )

    def _joined_service_name(self, call_id: CallId | None) -> str | None:
        joined = self.machine().call(call_id) if call_id else None
        return self.machine().services[joined.service].name if joined else None

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


def _no_agent(kiosk: str, name: str) -> m.DeviceHealth:
    nothing = m.DevicePart(present=False, state="offline")
    return m.DeviceHealth(kiosk=kiosk, name=name, online=False, scanner=nothing, printer=nothing)
