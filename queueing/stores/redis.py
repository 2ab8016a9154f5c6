"""The shared store of a multi-node deployment: the journal and event log in Redis.

Keys, all under one hash tag so that Lua scripts may touch them together (Cluster):

- ``{prefix}:epoch``: a random id written when the store starts empty; a node that
  finds another id (or none) knows the history it built on is gone;
- ``{prefix}:entry``: the number of the last journal entry;
- ``{prefix}:journal``: a stream, one item per entry with id ``<entry>-1``;
- ``{prefix}:events``: a stream, the event log;
- ``{prefix}:snapshot``: ``{"n": entry, "state": ...}``, the machine after entry ``n``;
- ``{prefix}:node:<id>``: present while node ``<id>`` sends its heartbeat.

An append is one script: it checks the epoch and the entry number and writes the
journal item and the events together, so a reader never sees one without the other.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from redis.asyncio import Redis

from ..store import JournalEntry, Recovered, StoreConflict, StoreLost
from .memory import in_window

__all__ = ["RedisQueueStore"]

_APPEND = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then return {'lost', 0} end
if epoch ~= ARGV[1] then return {'reset', 0} end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local n = tonumber(ARGV[2])
if last ~= n - 1 then
  -- The entries the writer missed come with the refusal: one round trip, not two.
  local missed = {}
  if last > n - 1 then
    missed = redis.call('XRANGE', KEYS[3], '(' .. (n - 1) .. '-1', '+', 'COUNT', 1000)
  end
  return {'conflict', last, missed}
end
-- ARGV[5..]: per entry, its command, its number of events, then the events.
local i = 5
for number = n, n + tonumber(ARGV[4]) - 1 do
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], number .. '-1', 'c', ARGV[i])
  local count = tonumber(ARGV[i + 1])
  for k = i + 2, i + 1 + count do redis.call('XADD', KEYS[4], '*', 'e', ARGV[k]) end
  i = i + 2 + count
  last = number
end
redis.call('SET', KEYS[2], last)
return {'ok', last}
"""

_OPEN = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  redis.call('SET', KEYS[1], ARGV[1])
  epoch = ARGV[1]
end
return {epoch, redis.call('GET', KEYS[2]) or '0', redis.call('GET', KEYS[3]) or false}
"""

_SEED = """
local epoch = redis.call('GET', KEYS[1])
if ARGV[4] == '' then
  -- Empty means no entry and no snapshot: a node that only loaded it set the epoch.
  if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[4]) == 1 then
    return 0
  end
  redis.call('DEL', KEYS[3])
  redis.call('SET', KEYS[1], ARGV[1])
else
  if epoch ~= ARGV[1] then return 0 end
  if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[4]) then return 0 end
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[4], ARGV[3])
return 1
"""

_COMPACT = """
local stored = redis.call('GET', KEYS[1])
if stored and tonumber(cjson.decode(stored)['n']) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""

_PAGE = 1000


class RedisQueueStore:
    shared = True

    def __init__(
        self, client: Redis, *, prefix: str = "visio", journal_keep: int = 100_000
    ) -> None:
        self.client = client
        tag = "{" + prefix + "}"
        self._epoch_key = f"{tag}:epoch"
        self._entry_key = f"{tag}:entry"
        self._journal_key = f"{tag}:journal"
        self._events_key = f"{tag}:events"
        self._snapshot_key = f"{tag}:snapshot"
        self._node_prefix = f"{tag}:node:"
        self._journal_keep = journal_keep
        self._epoch = ""
        self._append = client.register_script(_APPEND)
        self._open = client.register_script(_OPEN)
        self._seed = client.register_script(_SEED)
        self._compact = client.register_script(_COMPACT)

    # ------------------------------------------------------------------ journal

    async def load(self) -> Recovered:
        epoch, last, stored = await self._open(
            keys=[self._epoch_key, self._entry_key, self._snapshot_key],
            args=[secrets.token_hex(8)],
        )
        self._epoch = _text(epoch)
        snapshot, snapshot_entry = None, 0
        if stored:
            data = json.loads(stored)
            snapshot, snapshot_entry = data["state"], int(data["n"])
        entries = await self.read_journal(snapshot_entry)
        last_entry = max(int(last), snapshot_entry, *(n for n, _ in entries[-1:]))
        return Recovered(snapshot, [record for _, record in entries], last_entry)

    async def append(
        self, entry: int, command: dict[str, Any], events: list[dict[str, Any]]
    ) -> None:
        await self.append_many([(entry, command, events)])

    async def append_many(
        self, entries: list[tuple[int, dict[str, Any], list[dict[str, Any]]]]
    ) -> None:
        if not entries:
            return
        first = entries[0][0]
        args: list[Any] = [self._epoch, first, self._journal_keep, len(entries)]
        for entry, command, events in entries:
            args += [_dump(command), len(events)]
            args += [_dump({"n": entry, **event}) for event in events]
        outcome, last, *missed = await self._append(
            keys=[self._epoch_key, self._entry_key, self._journal_key, self._events_key],
            args=args,
        )
        match _text(outcome):
            case "ok":
                return
            case "conflict":
                found = [_entry(item) for item in missed[0]] if missed else []
                if found and found[0][0] != first:
                    found = []  # compacted away meanwhile: the writer reads them itself
                raise StoreConflict(int(last), found)
            case "lost":
                raise StoreLost("the store is empty: it restarted without its data")
            case _:
                raise StoreLost("the store was started again from another node's state")

    async def read_journal(self, after: int) -> list[JournalEntry]:
        entries: list[JournalEntry] = []
        start = f"({after}-1"
        while True:
            items: Any = await self.client.xrange(self._journal_key, min=start, count=_PAGE)
            entries.extend(_entry(item) for item in items)
            if len(items) < _PAGE:
                break
            start = "(" + _text(items[-1][0])
        if entries and entries[0][0] != after + 1:
            raise StoreLost(f"entries after {after} were compacted away")
        return entries

    async def wait_journal(self, after: int, block_s: float) -> list[JournalEntry]:
        answer: Any = await self.client.xread(
            {self._journal_key: f"{after}-1"}, count=_PAGE, block=max(int(block_s * 1000), 1)
        )
        if not answer:
            return []
        items = answer[0][1]
        entries = [_entry(item) for item in items]
        if entries and entries[0][0] != after + 1:
            return await self.read_journal(after)
        return entries

    async def compact(self, snapshot: dict[str, Any], entry: int) -> None:
        await self._compact(
            keys=[self._snapshot_key], args=[entry, _dump({"n": entry, "state": snapshot})]
        )

    async def seed(self, snapshot: dict[str, Any], entry: int, *, over: int | None = None) -> bool:
        # A new epoch for an emptied store; the same one when moving our history on.
        epoch = secrets.token_hex(8) if over is None else self._epoch
        seeded = await self._seed(
            keys=[self._epoch_key, self._entry_key, self._journal_key, self._snapshot_key],
            args=[
                epoch,
                entry,
                _dump({"n": entry, "state": snapshot}),
                "" if over is None else over,
            ],
        )
        if seeded:
            self._epoch = epoch
        return bool(seeded)

    # ------------------------------------------------------------------ event log

    async def read_events(
        self, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        # Stream ids carry Redis's clock in milliseconds; a margin covers clock skew.
        start = "-" if since is None else str(max(int((since - 60) * 1000), 0))
        while True:
            items: Any = await self.client.xrange(self._events_key, min=start, count=_PAGE)
            for _, fields in items:
                row = json.loads(fields[b"e"])
                row.pop("n", None)
                if until is not None and float(row["at"]) >= until + 60:
                    return rows
                if in_window(row, since, until):
                    rows.append(row)
            if len(items) < _PAGE:
                return rows
            start = "(" + _text(items[-1][0])

    # ------------------------------------------------------------------ nodes

    async def beat(self, node: str, ttl_s: float) -> None:
        """Say that ``node`` is alive for the next ``ttl_s`` seconds."""
        await self.client.set(self._node_prefix + node, "1", px=max(int(ttl_s * 1000), 1))

    async def alive(self, nodes: list[str]) -> set[str]:
        if not nodes:
            return set()
        present = await self.client.mget([self._node_prefix + n for n in nodes])
        return {node for node, value in zip(nodes, present, strict=True) if value is not None}

    async def close(self) -> None:
        return None  # the client belongs to whoever made it


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(item: Any) -> JournalEntry:
    stream_id, fields = item
    if isinstance(fields, list):  # as a Lua script returns it: [field, value, ...]
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    return int(_text(stream_id).split("-", 1)[0]), json.loads(fields[b"c"])
