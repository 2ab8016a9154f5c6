"""The ledger glue: group commit, the queue's timers, and the one lock around both.

Rules this module keeps:

1. The machine changes only under the lock: commands, timer firings, and entries other
   nodes wrote. So events are told in journal order, whoever wrote them.
2. Group commit: commands that arrive while a write is out wait for the lock; whoever
   takes it writes all of them, in arrival order, with one store round trip. A refused
   command is left out of the batch without touching the others.
3. Entries fetched from the shared journal wait in the inbox and are applied first
   whenever the lock is taken: a command would otherwise lose the race for the next
   entry number to entries this node already holds.
4. A command's result is handed back only once its events are stored and told; a
   caller cancelled before its batch was written is left out of it, and nobody is left
   waiting for a batch that was cancelled half way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from queueing import Command, Event, JournalEntry, QueueError
from signaling import not_cancelled

from .ledger import Ledger, StoreUnavailable

__all__ = ["Committer", "Heard", "Published"]

log = logging.getLogger(__name__)

_RETRY_S = 1.0

Published = Callable[[list[Event], float, bool], Awaitable[None]]
"""Told of the events of each entry applied here, its time, and whether this node wrote it."""

Heard = Callable[[dict[str, Any]], None]
"""Told of the journal record of each entry another node wrote, after its events."""


class Committer:
    def __init__(
        self, ledger: Ledger, clock: Callable[[], float], published: Published, heard: Heard
    ) -> None:
        self.ledger = ledger
        self.clock = clock
        self._published = published
        self._heard = heard
        self.store_ok = True
        """Whether the store took the last write (the node heartbeat says so too)."""
        self._lock = asyncio.Lock()
        self._waiting: list[tuple[Command, asyncio.Future[list[Event]]]] = []
        """Commands waiting for the lock, written together by whoever takes it."""
        self._inbox: list[JournalEntry] = []
        """Entries other nodes wrote, fetched but not applied yet."""
        self._fetched = 0
        """The last entry fetched from the shared journal (applied or in the inbox)."""
        self._timer_changed = asyncio.Event()

    # ------------------------------------------------------------------ commands

    async def execute(self, command: Command) -> list[Event]:
        """Apply and store ``command``; its events, or the ``QueueError`` refusing it."""
        done: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        self._waiting.append((command, done))
        try:
            async with self._lock:
                if not done.done():
                    batch, self._waiting = self._waiting, []
                    try:
                        await self._commit_batch(batch)
                    finally:  # cancelled half way (shutdown): nobody must wait for ever
                        for _, waiting in batch:
                            if not waiting.done():
                                waiting.set_exception(StoreUnavailable())
        except asyncio.CancelledError:
            done.cancel()  # not written yet: the next batch leaves it out
            raise
        return await done

    async def _commit_batch(self, batch: list[tuple[Command, asyncio.Future[list[Event]]]]) -> None:
        batch = [(command, done) for command, done in batch if not done.done()]
        try:
            await self._apply_inbox()
            outcomes = await self.ledger.commit_many(
                [command for command, _ in batch], self.clock, self._replayed
            )
        except Exception as exc:
            self.store_ok = not isinstance(exc, StoreUnavailable)
            for _, done in batch:
                done.set_exception(exc)
            return
        self.store_ok = True
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, QueueError):
                done.set_exception(outcome)
                continue
            events, now = outcome
            try:
                await self._publish(events, now, own=True)
            finally:
                done.set_result(events)

    async def _publish(self, events: list[Event], now: float, *, own: bool) -> None:
        await self._published(events, now, own)
        self.ledger.checkpoint_if_due()
        self._timer_changed.set()

    async def _replayed(self, record: dict[str, Any], events: list[Event], at: float) -> None:
        await self._publish(events, at, own=False)
        self._heard(record)

    # ------------------------------------------------------------------ timers

    async def run_timers(self) -> None:
        """Fire the queue's timers when due; runs until cancelled."""
        while not_cancelled():
            self._timer_changed.clear()
            deadline = self.ledger.machine.get_timer()
            delay = None if deadline is None else max(0.0, deadline - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_changed.wait(), delay)
                continue
            try:
                async with self._lock:
                    await self._apply_inbox()
                    events, now = await self.ledger.commit(None, self.clock, self._replayed)
                    await self._publish(events, now, own=True)
            except StoreUnavailable:
                # The machine went back to what the store holds: they fire again later.
                await asyncio.sleep(_RETRY_S)
            except Exception:
                log.exception("queue timers could not be handled; retrying")
                await asyncio.sleep(_RETRY_S)

    # ------------------------------------------------------------------ inbox

    def fetch_after(self) -> int:
        """The entry to fetch the shared journal after: nothing this node holds twice."""
        return max(self._fetched, self.ledger.entry)

    def received(self, entries: list[JournalEntry]) -> None:
        """Entries another node wrote: applied under the lock, before anything else."""
        if entries:
            self._fetched = entries[-1][0]
            self._inbox.extend(entries)

    async def apply_received(self) -> None:
        async with self._lock:
            await self._apply_inbox()

    def fetch_again(self, *, drop: bool = False) -> None:
        """Fetch from the last applied entry again, dropping the inbox if asked."""
        if drop:
            self._inbox.clear()
        self._fetched = 0

    async def _apply_inbox(self) -> None:
        entries, self._inbox = self._inbox, []
        if entries:
            await self.ledger.catch_up(self._replayed, entries)
