"""The queue machine kept in step with a store that several nodes may write.

Each node holds the whole machine. A change is tried on the local machine first, then
its journal entry is offered to the store under the next entry number. When another
node took that number, or the store failed, the local machine goes back to the last
entry the store accepted and the change is tried again on top of what the others did:
a replicated log with the store as the one sequencer. Because the machine is
deterministic, replaying an entry anywhere yields the same events, so every node can
tell its own connections what happened, in journal order, whoever wrote the entry.

It is the asyncio glue between the pure machine of ``queueing`` and a store: the
machine stays free of I/O, and the call control owns the retries and the waiting.

Going back is cheap: the ledger keeps a recent checkpoint of the machine and the
entries after it, so a rollback never needs the store. The same tail lets a node write
back entries that the store lost when it restarted without persistence.

The tail keeps journal records only, never the events of an entry once they are told:
up to a thousand entries stay in it, each with one event per waiting call of its
service, and the collector would walk all of them at every full collection. Writing
back, which needs them, is rare: it replays the tail on the checkpoint to get them again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from queueing import (
    CallId,
    Command,
    Event,
    JournalEntry,
    QueueError,
    QueueMachine,
    QueueStore,
    StoreConflict,
    StoreLost,
    command_from_record,
    command_record,
    event_record,
)

__all__ = ["TIMER_RECORD", "Ledger", "StoreUnavailable"]

log = logging.getLogger(__name__)

TIMER_RECORD = "Timer"
"""Journal kind of a timer firing: ``{"kind": "Timer", "at": now}``."""

_CHECKPOINT_EVERY = 256
_CHECKPOINT_CONTENDED = 16
_GIVE_UP_S = 5.0
"""How long a node keeps losing races for the next entry before it refuses a command."""

Replayed = Callable[[dict[str, Any], list[Event], float], Awaitable[None]]
"""Told of each entry another node wrote, once applied here: its record, events, time."""


class StoreUnavailable(QueueError):
    def __init__(self) -> None:
        super().__init__(
            "service_unavailable", "the service is temporarily unavailable; please try again"
        )


@dataclass
class _Written:
    entry: int
    record: dict[str, Any]
    events: list[Event]
    rows: list[dict[str, Any]] | None = None
    """The events as records, made for an append: the tail keeps neither them nor events."""

    def event_rows(self) -> list[dict[str, Any]]:
        if self.rows is None:
            self.rows = [event_record(e) for e in self.events]
        return self.rows


class Ledger:
    def __init__(
        self,
        new_machine: Callable[[], QueueMachine],
        store: QueueStore,
        *,
        snapshot_every: int = 1000,
    ) -> None:
        self._new_machine = new_machine
        self.store = store
        self.snapshot_every = snapshot_every
        self.machine = new_machine()
        self.entry = 0
        """The last entry applied to ``machine``; every one up to it is in the store."""
        self._checkpoint: bytes | None = None
        self._checkpoint_entry = 0
        self._tail: list[JournalEntry] = []
        """The entries after the checkpoint: records only (see the module's docstring)."""
        self.dropped: list[CallId] = []
        self.conflicts = 0
        self._writer = secrets.token_hex(6)
        self._recent_conflict = -_CHECKPOINT_EVERY
        self.last_at = 0.0
        """Time of the newest entry: nodes' clocks differ a little, and the machine must
        never see time go backwards."""

    # ------------------------------------------------------------------ loading

    async def open(self) -> bool:
        """Rebuild the machine from the store; True if it held anything."""
        recovered = await self.store.load()
        machine = self._new_machine()
        if recovered.snapshot is not None:
            self.dropped = machine.restore(recovered.snapshot)
            if self.dropped:
                log.warning(
                    "calls of services or kiosks no longer configured left out: %s", self.dropped
                )
        for record in recovered.journal:
            _apply_record(machine, record)
            self.last_at = max(self.last_at, float(record.get("at", 0.0)))
        self.machine = machine
        self.entry = recovered.last_entry
        self._checkpoint = _encode(machine.snapshot())
        self._checkpoint_entry = self.entry
        self._tail = []
        return recovered.snapshot is not None or bool(recovered.journal)

    # ------------------------------------------------------------------ writing

    async def commit(
        self, command: Command | None, clock: Callable[[], float], replayed: Replayed
    ) -> tuple[list[Event], float]:
        """Apply ``command`` (None: fire the timers that are due) and store its entry.

        Returns its events and the time it was applied at. A refused command raises
        ``QueueError`` having changed nothing; a store that fails raises
        ``StoreUnavailable`` with the machine back at the last stored entry."""
        [outcome] = await self.commit_many([command], clock, replayed)
        if isinstance(outcome, QueueError):
            raise outcome
        return outcome

    async def commit_many(
        self, commands: list[Command | None], clock: Callable[[], float], replayed: Replayed
    ) -> list[tuple[list[Event], float] | QueueError]:
        """Apply several commands in order and store their entries with one write.

        Each gets its events and time, or the ``QueueError`` that refused it (refusals
        are not written). Writing a batch costs the store one round trip, so commands
        that waited while the previous write was out go together."""
        self.checkpoint_if_due()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + _GIVE_UP_S
        lost = 0
        while loop.time() < give_up:
            if lost >= 3:  # let the other writers through instead of racing them in step
                await asyncio.sleep(random.uniform(0, 0.001 * lost))
            now = max(clock(), self.last_at)
            outcomes, writes = self._apply_all(commands, now)
            if not writes:
                return outcomes
            try:
                await self.store.append_many([(w.entry, w.record, w.event_rows()) for w in writes])
            except (StoreConflict, StoreLost) as exc:
                first = writes[0]
                if isinstance(exc, StoreConflict) and exc.missed[:1] == [
                    (first.entry, first.record)
                ]:
                    # Our own write: its reply was lost and the client tried again.
                    # The batch is stored (one script writes all of it): carry on.
                    await self._stored(writes)
                    return outcomes
                self._roll_back()
                store_last, missed = None, None
                if isinstance(exc, StoreConflict):
                    self.conflicts += 1
                    lost += 1
                    self._recent_conflict = self.entry
                    store_last, missed = exc.last_entry, exc.missed or None
                try:
                    await self._recover(store_last, replayed, missed)
                except Exception as failure:  # the store failed while we caught up
                    log.warning("could not catch up with the store: %r", failure)
                    raise StoreUnavailable() from None
                continue
            except Exception as exc:
                # Expected while the store is down: one line, not a traceback per write.
                log.warning("the store did not take journal entry %s: %r", writes[0].entry, exc)
                self._roll_back()
                raise StoreUnavailable() from None
            await self._stored(writes)
            return outcomes
        log.warning("gave up on a command after losing %s races for the next entry", lost)
        raise StoreUnavailable()

    def _apply_all(
        self, commands: list[Command | None], now: float
    ) -> tuple[list[tuple[list[Event], float] | QueueError], list[_Written]]:
        outcomes: list[tuple[list[Event], float] | QueueError] = []
        writes: list[_Written] = []
        for command in commands:
            if command is None:
                due = self.machine.get_timer()
                if due is None or due > now:
                    outcomes.append(([], now))
                    continue
                events = self.machine.handle_timer(now)
                record: dict[str, Any] = {"kind": TIMER_RECORD, "at": now}
            else:
                try:
                    events = self.machine.apply(command, now)
                except QueueError as refused:  # nothing changed: the others go on
                    outcomes.append(refused)
                    continue
                record = command_record(command, now)
            if self.store.shared:
                # Tells this writer's entry from an identical one of another writer
                # (two nodes firing the same timer at the same instant).
                record["_writer"] = self._writer
            writes.append(_Written(self.entry + len(writes) + 1, record, events))
            outcomes.append((events, now))
        return outcomes, writes

    async def _stored(self, writes: list[_Written]) -> None:
        before = self.entry
        for written in writes:
            self._accept(written)
        if self.entry // self.snapshot_every > before // self.snapshot_every:
            await self._compact()

    async def catch_up(self, replayed: Replayed, entries: list[JournalEntry] | None = None) -> int:
        """Apply the entries other nodes wrote since ours (read now unless given)."""
        if entries is None:
            try:
                entries = await self.store.read_journal(self.entry)
            except StoreLost:
                await self._recover(None, replayed)
                return 0
        count = 0
        for number, record in entries:
            if number <= self.entry:
                continue  # our own, or read twice
            if number != self.entry + 1:
                await self._recover(None, replayed)
                return count
            events = _apply_record(self.machine, record)
            self._accept(_Written(number, record, events))
            await replayed(record, events, self.last_at)
            count += 1
        return count

    def _accept(self, written: _Written) -> None:
        self.entry = written.entry
        self.last_at = max(self.last_at, float(written.record.get("at", 0.0)))
        self._tail.append((written.entry, written.record))

    async def _compact(self) -> None:
        state = self.machine.snapshot()
        # The same copy serves as the local checkpoint: no second one soon after.
        self._checkpoint, self._checkpoint_entry = _encode(state), self.entry
        self._tail = []
        try:
            await self.store.compact(state, self.entry)
        except Exception:  # the journal still holds everything: compact next time
            log.exception("the store could not compact its journal")

    def checkpoint_if_due(self) -> None:
        """Keep a local copy of the machine to go back to; called once the events of the
        entry have left, since a copy of a large queue takes a few milliseconds."""
        # Under contention, rollbacks are frequent: keep their replay short.
        if not self.store.shared:
            # One writer: going back happens only when the store fails, so a rare long
            # replay is better than a copy of the queue every few commands.
            every = max(self.snapshot_every, _CHECKPOINT_EVERY)
        elif self.entry - self._recent_conflict < _CHECKPOINT_EVERY:
            every = _CHECKPOINT_CONTENDED
        else:
            every = _CHECKPOINT_EVERY
        if len(self._tail) >= every:
            self._checkpoint = _encode(self.machine.snapshot())
            self._checkpoint_entry = self.entry
            self._tail = []

    # ------------------------------------------------------------------ going back

    def _roll_back(self) -> None:
        """Make the machine what it was after ``self.entry``, from local memory only."""
        machine = self._checkpoint_machine()
        for _, record in self._tail:
            _apply_record(machine, record)
        self.machine = machine

    def _checkpoint_machine(self) -> QueueMachine:
        machine = self._new_machine()
        if self._checkpoint is not None:
            machine.restore(msgspec.json.decode(self._checkpoint))
        return machine

    async def _recover(
        self, store_last: int | None, replayed: Replayed, missed: list[JournalEntry] | None = None
    ) -> None:
        """Bring this node and the store to the same history.

        ``store_last`` is the store's last entry as a conflict reported it, or None when
        the store lost the history we built on (restart without data, or gap)."""
        if store_last is not None and store_last >= self.entry:
            await self.catch_up(replayed, missed)
            return
        # The store is behind us: it lost entries we saw it accept. Give it back our
        # checkpoint (unless another node was first), then the entries after it.
        checkpoint = self._checkpoint_entry
        if store_last is None or store_last < checkpoint:
            if await self.store.seed(self._checkpoint_state(), checkpoint, over=store_last):
                log.warning("the store had lost entries: started it again from %s", checkpoint)
                store_last = checkpoint
            else:
                store_last = None
        if store_last is not None and await self._write_back(store_last):
            return
        log.warning("the store holds another history than this node: loading it")
        await self.open()

    def _checkpoint_state(self) -> dict[str, Any]:
        if self._checkpoint is None:
            return self._new_machine().snapshot()
        decoded: dict[str, Any] = msgspec.json.decode(self._checkpoint)
        return decoded

    async def _write_back(self, store_last: int) -> bool:
        """Append again the entries the store lost; False if another node wrote first."""
        lost = self._tail_after(store_last)
        if lost:
            try:
                await self.store.append_many([(w.entry, w.record, w.event_rows()) for w in lost])
            except (StoreConflict, StoreLost):
                return False
        log.warning("wrote back entries %s..%s the store had lost", store_last + 1, self.entry)
        return True

    def _tail_after(self, entry: int) -> list[_Written]:
        """The entries of the tail after ``entry`` with their events, found again by
        replaying the tail on the checkpoint: the machine is deterministic."""
        if not any(number > entry for number, _ in self._tail):
            return []
        machine = self._checkpoint_machine()
        written = [
            _Written(number, record, _apply_record(machine, record))
            for number, record in self._tail
        ]
        return [w for w in written if w.entry > entry]


def _apply_record(machine: QueueMachine, record: dict[str, Any]) -> list[Event]:
    """Replay one journal record; returns its events."""
    if record["kind"] == TIMER_RECORD:
        events = machine.handle_timer(float(record["at"]))
    else:
        command, now = command_from_record(record)
        try:
            events = machine.apply(command, now)
        except QueueError as exc:  # the configuration changed since it was journaled
            log.warning("journal entry %s no longer applies: %s", record["kind"], exc.reason)
            return []
    return events


def _encode(state: dict[str, Any]) -> bytes:
    return msgspec.json.encode(state)
