"""Where case files, shares and the audit log are kept.

Rules every store keeps (one contract test suite checks them all):

1. ``save`` is a compare-and-set on ``case.version``: it writes only if the stored
   version is still the one the case was loaded at (0: the case must not exist yet),
   then bumps ``case.version``. Otherwise it raises ``CaseConflict`` and writes nothing.
   Several nodes may change one case; ``update`` turns that into load, change, save,
   and again on conflict.
2. A save writes the case, its indexes (call -> case, document -> case, "has work")
   and its audit rows together; a reader never sees the case without its rows.
3. ``load`` returns a copy: changing it changes nothing stored until ``save``.
4. The audit log only grows, in the order rows were saved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from .errors import CaseError
from .machine import CaseFile
from .model import AuditRow, Share

__all__ = ["CaseConflict", "CaseStore", "update"]

T = TypeVar("T")


class CaseConflict(Exception):
    """The case changed since it was loaded: load it again and redo the change."""

    def __init__(self, case_id: str, loaded: int, stored: int) -> None:
        super().__init__(f"case {case_id} is at version {stored}, not {loaded}")
        self.case_id = case_id
        self.loaded = loaded
        self.stored = stored


class CaseStore(Protocol):
    async def load(self, case_id: str) -> CaseFile | None: ...

    async def save(self, case: CaseFile, rows: list[AuditRow]) -> None:
        """Compare-and-set on ``case.version`` (rule 1), with its indexes and rows."""

    async def case_of_call(self, call: str) -> str | None: ...

    async def case_of_document(self, doc: str) -> str | None: ...

    async def load_share(self, code: str) -> Share | None: ...

    async def save_share(self, share: Share, rows: list[AuditRow]) -> None:
        """Write ``share`` (the last write wins) and append ``rows``."""

    async def cases_with_work(self) -> list[str]:
        """Cases with an unfinished command, a pending export or bytes still to purge
        (``CaseFile.has_work()`` as of their last save), sorted."""

    async def read_audit(
        self, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        """Audit rows with ``since <= at < until``, in the order they were saved."""

    async def close(self) -> None: ...


async def update(
    store: CaseStore,
    case_id: str,
    change: Callable[[CaseFile], tuple[T, list[AuditRow]]],
    attempts: int = 8,
    *,
    missing: Callable[[], tuple[CaseFile, list[AuditRow]]] | None = None,
) -> T:
    """Load the case, apply ``change`` and save, again while another writer wins.

    ``change`` must be a pure function of the case (it may run several times): it
    returns a result and the audit rows of what it did; a ``CaseError`` it raises goes
    to the caller and nothing is saved. A case that is not stored is started with
    ``missing()`` (its rows are saved too), or refused as ``unknown_case``. Nothing is
    written when the change left the case as it was and gave no rows."""
    for attempt in range(attempts):
        case = await store.load(case_id)
        opening: list[AuditRow] = []
        if case is None:
            if missing is None:
                raise CaseError("unknown_case", "no case file for this call", case=case_id)
            case, opening = missing()
            before = None
        else:
            before = case.to_dict()
        result, rows = change(case)
        if before is not None and not rows and case.to_dict() == before:
            return result
        try:
            await store.save(case, opening + rows)
        except CaseConflict:
            if attempt == attempts - 1:
                raise
            continue
        return result
    raise AssertionError("unreachable: the last attempt returns or raises")
