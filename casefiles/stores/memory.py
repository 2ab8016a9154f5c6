"""A case store that keeps everything in the process: the default with the memory
backend, and for tests.

Cases are kept as their JSON text, so a loaded case is a copy, as with the other stores.
"""

from __future__ import annotations

import json
from typing import Any

from ..machine import CaseFile
from ..model import AuditRow, Share
from ..store import CaseConflict

__all__ = ["MemoryCaseStore", "dump", "in_window"]


def dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def in_window(row: dict[str, Any], since: float | None, until: float | None) -> bool:
    at = float(row["at"])
    return (since is None or at >= since) and (until is None or at < until)


class MemoryCaseStore:
    def __init__(self) -> None:
        self._cases: dict[str, str] = {}
        self._versions: dict[str, int] = {}
        self._calls: dict[str, str] = {}
        self._documents: dict[str, str] = {}
        self._shares: dict[str, str] = {}
        self._work: set[str] = set()
        self._audit: list[dict[str, Any]] = []

    async def load(self, case_id: str) -> CaseFile | None:
        stored = self._cases.get(case_id)
        return None if stored is None else CaseFile.from_dict(json.loads(stored))

    async def save(self, case: CaseFile, rows: list[AuditRow]) -> None:
        stored = self._versions.get(case.id, 0)
        if stored != case.version:
            raise CaseConflict(case.id, case.version, stored)
        version = stored + 1
        before = self._cases.get(case.id)
        if before is not None:
            for doc in json.loads(before)["documents"]:
                if doc["id"] not in case.documents:
                    self._documents.pop(doc["id"], None)
        self._cases[case.id] = dump({**case.to_dict(), "version": version})
        self._versions[case.id] = version
        self._calls.update(dict.fromkeys(case.calls, case.id))
        self._documents.update(dict.fromkeys(case.documents, case.id))
        if case.has_work():
            self._work.add(case.id)
        else:
            self._work.discard(case.id)
        self._audit.extend(row.to_dict() for row in rows)
        case.version = version

    async def case_of_call(self, call: str) -> str | None:
        return self._calls.get(call)

    async def case_of_document(self, doc: str) -> str | None:
        return self._documents.get(doc)

    async def load_share(self, code: str) -> Share | None:
        stored = self._shares.get(code)
        return None if stored is None else Share.from_dict(json.loads(stored))

    async def save_share(self, share: Share, rows: list[AuditRow]) -> None:
        self._shares[share.code] = dump(share.to_dict())
        self._audit.extend(row.to_dict() for row in rows)

    async def cases_with_work(self) -> list[str]:
        return sorted(self._work)

    async def read_audit(
        self, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        return [dict(row) for row in self._audit if in_window(row, since, until)]

    async def close(self) -> None:
        return None
