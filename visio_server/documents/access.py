"""Who is in which call, as far as documents are concerned.

Rules this module keeps:

1. Commands (scan, print, cancel, review) come from the expert who answered the call,
   while it is connected; the kiosk's requests (pages, consent, shares) from the call's
   kiosk while it is connected. Anything else is ``not_in_call`` (the call is not
   connected, or no longer exists) or ``not_your_call``.
2. Reading follows membership: the kiosk, the expert, an interpreter and a supervisor
   of a connected call read its case file; the kiosk's device agent too (it is the
   participant ``device:<kiosk>`` of its kiosk's connected call). Admins read every
   case file, supervisors those of their partner.
3. The machine, which every node replays, is where membership is read: a request is
   allowed or refused alike on every node.
"""

from __future__ import annotations

from queueing import CallId, CallState, QueueMachine
from queueing.model import Call

from ..auth import Principal
from .errors import DocumentError

__all__ = ["actor_of", "calls_of", "expert_call", "kiosk_call", "live_call", "party_keys"]


def actor_of(principal: Principal) -> str:
    """How the audit names whoever acted: ``expert:alice``, ``device:k1``..."""
    return f"{principal.role}:{principal.id}"


def live_call(machine: QueueMachine, call_id: str) -> Call | None:
    """The call while it runs (a request for an interpreter is not a call with documents)."""
    call = machine.call(CallId(call_id))
    return call if call is not None and call.joins is None else None


def _connected(machine: QueueMachine, call_id: str, holder: str, own: bool) -> Call:
    call = live_call(machine, call_id)
    if call is None:
        raise DocumentError("not_in_call", "this call has ended or does not exist", call=call_id)
    if not own:
        raise DocumentError(
            "not_your_call", f"only the call's {holder} may do this", 403, call=call_id
        )
    if call.state is not CallState.CONNECTED:
        raise DocumentError("not_in_call", "the call is not connected", call=call_id)
    return call


def expert_call(machine: QueueMachine, principal: Principal, call_id: str) -> Call:
    """The connected call ``principal`` answered (rule 1)."""
    call = live_call(machine, call_id)
    own = call is not None and principal.answers_calls and call.expert == principal.id
    return _connected(machine, call_id, "expert", own)


def kiosk_call(machine: QueueMachine, principal: Principal, call_id: str) -> Call:
    """The connected call of the kiosk ``principal`` (rule 1)."""
    call = live_call(machine, call_id)
    own = call is not None and principal.role == "kiosk" and call.kiosk == principal.id
    return _connected(machine, call_id, "kiosk", own)


def party_keys(principal: Principal) -> tuple[str, ...]:
    """The names ``principal`` may have in a call's room."""
    match principal.role:
        case "kiosk":
            return (f"kiosk:{principal.id}",)
        case "expert" | "interpreter":
            return (f"expert:{principal.id}", f"interpreter:{principal.id}")
        case "supervisor":
            return (f"supervisor:{principal.id}",)
    return ()


def is_member(principal: Principal, call: Call) -> bool:
    if call.state is not CallState.CONNECTED:
        return False
    if principal.role == "device":
        return call.kiosk == principal.id
    members = call.members()
    return any(key in members for key in party_keys(principal))


def calls_of(machine: QueueMachine, principal: Principal) -> list[Call]:
    """The connected calls ``principal`` is in now (rule 2)."""
    if principal.role not in ("kiosk", "expert", "interpreter", "supervisor", "device"):
        return []
    return [c for c in machine.calls() if c.joins is None and is_member(principal, c)]
