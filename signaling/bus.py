"""Message bus: delivers server messages to the connections of a party, wherever they are.

Addresses name a party, not a connection: ``kiosk:<id>``, ``expert:<id>`` (experts and
interpreters), ``watch:*`` (admins) and ``watch:<partner>`` (a partner's supervisors).
``LocalBus`` serves one process; ``RedisBus`` (``signaling.redis_bus``) serves several.
Delivery callbacks must not block: they put the message in a bounded queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from .messages import Message

__all__ = ["Deliver", "LocalBus", "MessageBus", "Subscription", "address", "not_cancelled"]

Deliver = Callable[[Message], None]


def not_cancelled() -> bool:
    """For ``while not_cancelled():`` loops that await the Redis client: on Python 3.11,
    ``asyncio.wait_for`` (which it uses) can swallow a cancellation, and a loop that
    caught nothing would run on for ever. Raises if this task was cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    return True


def address(kind: str, identity: str) -> str:
    return f"{kind}:{identity}"


class Subscription(Protocol):
    def close(self) -> None: ...


class MessageBus(Protocol):
    async def publish(self, address: str, message: Message) -> int:
        """Deliver to every subscriber of ``address`` on every node; returns how many
        subscribers (local bus) or nodes (shared bus) received it."""

    async def publish_here(self, address: str, message: Message) -> int:
        """Deliver to the subscribers on this node only: for what every node learns by
        itself (the queue's events, which each node replays from the shared journal)."""

    def subscribe(self, address: str, deliver: Deliver) -> Subscription: ...

    def has_subscribers(self, address: str) -> bool: ...


class _LocalSubscription:
    def __init__(self, bus: LocalBus, address: str, deliver: Deliver) -> None:
        self._bus, self._address, self._deliver = bus, address, deliver

    def close(self) -> None:
        self._bus._remove(self._address, self._deliver)


class LocalBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[Deliver]] = {}

    async def publish(self, address: str, message: Message) -> int:
        subscribers = self._subscribers.get(address, ())
        for deliver in tuple(subscribers):
            deliver(message)
        return len(subscribers)

    publish_here = publish

    def subscribe(self, address: str, deliver: Deliver) -> Subscription:
        self._subscribers.setdefault(address, []).append(deliver)
        return _LocalSubscription(self, address, deliver)

    def has_subscribers(self, address: str) -> bool:
        return bool(self._subscribers.get(address))

    def _remove(self, address: str, deliver: Deliver) -> None:
        subscribers = self._subscribers.get(address, [])
        if deliver in subscribers:
            subscribers.remove(deliver)
        if not subscribers:
            self._subscribers.pop(address, None)
