"""What the queue's events count in the metrics.

Rules this module keeps:

1. Only live events count: a restart replays history, which was counted when it
   happened.
2. Each node counts only the entries it wrote, so that sums across nodes are right
   although every node applies every entry.
"""

from __future__ import annotations

from queueing import (
    CallConnected,
    CallEnded,
    CallRefused,
    CallTransferred,
    Event,
    OfferEnded,
    Outcome,
    ParticipantJoined,
    ParticipantLeft,
)

from ..metrics import Metrics

__all__ = ["count"]


def count(metrics: Metrics, event: Event) -> None:
    match event:
        case CallConnected():
            metrics.call_answered(event.service, event.waited_s)
        case CallEnded():
            if event.short:
                metrics.short_abandon(event.service)
            metrics.call_left(event.service, event.outcome.value, event.waited_s, event.talk_s)
        case CallRefused():
            metrics.call_left(event.service, event.outcome.value, None, None)
        case CallTransferred():
            metrics.call_left(event.from_service, Outcome.TRANSFERRED.value, None, None)
        case OfferEnded():
            metrics.offer_ended(event.service, event.result)
        case ParticipantJoined():
            metrics.participant_joined(event.service, event.role)
        case ParticipantLeft():
            metrics.participant_left(event.service, event.role, event.stayed_s)
