"""The shared case store of a multi-node deployment: case files and audit in Redis.

Keys, all under one hash tag so that a Lua script may touch them together (Cluster):

- ``{prefix}:case:<id>``: the case as JSON, with its ``version``;
- ``{prefix}:case-calls``: a hash, call id -> case id;
- ``{prefix}:case-documents``: a hash, document id -> case id;
- ``{prefix}:case-work``: a set of the case ids that ``CaseFile.has_work()``;
- ``{prefix}:share:<code>``: a share record as JSON;
- ``{prefix}:case-events``: a stream, the audit log, one item per row (field ``r``).

A save is one script: it compares the stored version with the one the case was
loaded at, then writes the case, its index entries (dropping those of documents that
left it), its place in the work set and its audit rows together, so no reader sees one
without the others and of two writers that loaded one version only the first wins.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from ..machine import CaseFile
from ..model import AuditRow, Share
from ..store import CaseConflict
from .memory import dump, in_window

__all__ = ["RedisCaseStore"]

_SAVE = """
local stored = redis.call('GET', KEYS[1])
local version = 0
local before = {}
if stored then
  local case = cjson.decode(stored)
  version = tonumber(case['version'])
  before = case['documents']
end
if version ~= tonumber(ARGV[1]) then return {'conflict', version} end
redis.call('SET', KEYS[1], ARGV[2])
-- ARGV[5..]: the number of calls, the calls, the number of documents, the documents,
-- then the audit rows.
local i = 5
local calls = tonumber(ARGV[i])
for k = i + 1, i + calls do redis.call('HSET', KEYS[2], ARGV[k], ARGV[3]) end
i = i + 1 + calls
local documents = tonumber(ARGV[i])
local kept = {}
for k = i + 1, i + documents do
  redis.call('HSET', KEYS[3], ARGV[k], ARGV[3])
  kept[ARGV[k]] = true
end
i = i + 1 + documents
for _, document in ipairs(before) do
  if not kept[document['id']] then redis.call('HDEL', KEYS[3], document['id']) end
end
if ARGV[4] == '1' then
  redis.call('SADD', KEYS[4], ARGV[3])
else
  redis.call('SREM', KEYS[4], ARGV[3])
end
for k = i, #ARGV do redis.call('XADD', KEYS[5], '*', 'r', ARGV[k]) end
return {'ok', version + 1}
"""

_PAGE = 1000


class RedisCaseStore:
    def __init__(self, client: Redis, prefix: str = "visio") -> None:
        self.client = client
        tag = "{" + prefix + "}"
        self._case_prefix = f"{tag}:case:"
        self._calls_key = f"{tag}:case-calls"
        self._documents_key = f"{tag}:case-documents"
        self._work_key = f"{tag}:case-work"
        self._share_prefix = f"{tag}:share:"
        self._events_key = f"{tag}:case-events"
        self._save = client.register_script(_SAVE)

    # ------------------------------------------------------------------ cases

    async def load(self, case_id: str) -> CaseFile | None:
        stored = await self.client.get(self._case_prefix + case_id)
        return None if stored is None else CaseFile.from_dict(json.loads(stored))

    async def save(self, case: CaseFile, rows: list[AuditRow]) -> None:
        version = case.version + 1
        args: list[Any] = [
            case.version,
            dump({**case.to_dict(), "version": version}),
            case.id,
            "1" if case.has_work() else "0",
            len(case.calls),
            *case.calls,
            len(case.documents),
            *case.documents,
            *(dump(row.to_dict()) for row in rows),
        ]
        keys = [
            self._case_prefix + case.id,
            self._calls_key,
            self._documents_key,
            self._work_key,
            self._events_key,
        ]
        outcome, stored = await self._save(keys=keys, args=args)
        if _text(outcome) != "ok":
            raise CaseConflict(case.id, case.version, int(stored))
        case.version = version

    async def case_of_call(self, call: str) -> str | None:
        found = await self.client.hget(self._calls_key, call)
        return None if found is None else _text(found)

    async def case_of_document(self, doc: str) -> str | None:
        found = await self.client.hget(self._documents_key, doc)
        return None if found is None else _text(found)

    async def cases_with_work(self) -> list[str]:
        members = await self.client.smembers(self._work_key)
        return sorted(_text(member) for member in members)

    # ------------------------------------------------------------------ shares

    async def load_share(self, code: str) -> Share | None:
        stored = await self.client.get(self._share_prefix + code)
        return None if stored is None else Share.from_dict(json.loads(stored))

    async def save_share(self, share: Share, rows: list[AuditRow]) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self._share_prefix + share.code, dump(share.to_dict()))
            for row in rows:
                pipe.xadd(self._events_key, {"r": dump(row.to_dict())})
            await pipe.execute()

    # ------------------------------------------------------------------ audit

    async def read_audit(
        self, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        # Stream ids carry Redis's clock, rows the server's ``now``: the whole log is
        # read and filtered on ``at``. Reports are rare; saves stay one round trip.
        rows: list[dict[str, Any]] = []
        start = "-"
        while True:
            items: Any = await self.client.xrange(self._events_key, min=start, count=_PAGE)
            for _, fields in items:
                row = json.loads(fields[b"r"])
                if in_window(row, since, until):
                    rows.append(row)
            if len(items) < _PAGE:
                return rows
            start = "(" + _text(items[-1][0])

    async def close(self) -> None:
        return None  # the client belongs to whoever made it


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
