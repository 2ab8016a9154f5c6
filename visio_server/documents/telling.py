"""Who hears of what happens to documents and device commands, and the telling.

Rules this module keeps:

1. What changes is told by whoever changed it, over the bus to every node.
2. Progress (``device.progress``, with ``kind``) goes to the call's expert and kiosk;
   documents (``case.document``) to them and the call's interpreters.
3. A command outlives its call: after the call, its news go to the expert who issued
   it and to the kiosk it was for.
4. A bus that cannot pass a message on loses only the telling: the change is saved,
   and the next ``case.file`` shows it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from casefiles.machine import CaseFile
from casefiles.model import DeviceCommand, Document
from queueing import CallState, QueueMachine
from queueing.model import Call
from signaling import MessageBus, ProtocolError, address
from signaling import messages as m

from .access import live_call
from .cases import document_info

__all__ = ["Teller"]

log = logging.getLogger(__name__)


class Teller:
    def __init__(self, machine: Callable[[], QueueMachine], bus: MessageBus) -> None:
        self.machine = machine
        """The queue machine, read anew each time (a rollback replaces it)."""
        self.bus = bus

    def live(self, call_id: str) -> Call | None:
        return live_call(self.machine(), call_id)

    def connected(self, call_id: str) -> Call | None:
        call = self.live(call_id)
        return call if call is not None and call.state is CallState.CONNECTED else None

    @staticmethod
    def parties(call: Call, *, guests: bool) -> list[str]:
        """Bus addresses of the call's kiosk and expert (and interpreters)."""
        targets = [address("kiosk", call.kiosk)]
        if call.expert is not None:
            targets.append(address("expert", call.expert))
        if guests:
            targets += [address("expert", g.id) for g in call.guests if g.role == "interpreter"]
        return targets

    def command_kiosk(self, case: CaseFile, command: DeviceCommand) -> str:
        """The kiosk a command was sent to."""
        if command.kiosk:
            return command.kiosk
        call = self.live(command.call)  # commands recorded before they named their kiosk
        return call.kiosk if call is not None else case.kiosk

    def command_parties(self, case: CaseFile, command: DeviceCommand) -> list[str]:
        call = self.connected(command.call)
        if call is not None:
            return self.parties(call, guests=False)
        issuer = command.issued_by if command.issued_by.startswith("expert:") else ""
        return [t for t in (address("kiosk", self.command_kiosk(case, command)), issuer) if t]

    async def tell(self, targets: list[str], message: m.Message) -> None:
        for target in dict.fromkeys(targets):
            try:
                await self.bus.publish(target, message)
            except ProtocolError as exc:
                log.warning("could not tell %s of %s: %s", target, type(message).__name__, exc)

    async def document(self, case: CaseFile, document: Document) -> None:
        """``case.document`` to whoever follows the document's call."""
        call = self.connected(document.call)
        if call is not None:
            targets = self.parties(call, guests=True)
        else:
            command = case.commands.get(document.command)
            if command is None:
                return  # nobody of that call is left to tell
            targets = self.command_parties(case, command)
        message = m.CaseDocument(call=document.call, document=document_info(document))
        await self.tell(targets, message)

    async def progress(
        self, case: CaseFile, command: DeviceCommand, document: str = "", upload_kbps: int = 0
    ) -> None:
        """``device.progress`` of ``command`` as it stands (with the pace the agent
        uploads at, which the kiosk page leaves free of media while it lasts)."""
        produced = command.result if command.kind == "scan" else command.document
        message = m.DeviceProgress(
            call=command.call,
            key=command.key,
            state=command.state.value,  # type: ignore[arg-type]
            page=command.page,
            pages=command.pages,
            reason=command.reason,
            document=document or produced,
            upload_kbps=upload_kbps,
            kind=command.kind,
        )
        await self.tell(self.command_parties(case, command), message)

    async def device_status(self, kiosk: str, health: m.DeviceHealth) -> None:
        """``device.status`` to the expert and kiosk of the kiosk's connected call."""
        for call in self.machine().calls():
            if call.kiosk == kiosk and call.joins is None and call.state is CallState.CONNECTED:
                await self.tell(self.parties(call, guests=False), m.DeviceStatus(health=health))
