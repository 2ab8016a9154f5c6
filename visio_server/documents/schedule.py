"""When each case file next needs one kind of work, and the loop that does it on time.

Rules this module keeps:

1. A schedule learns a case's next time from the case itself (``note``), whenever this
   node saves or reads it; the documents glue also notes every case with work at start
   and every ``documents.scan_interval_s``, so that work another node left (it died) is
   found too.
2. A case whose work is due is worked on once, then waits ``retry_s`` unless the work
   noted a new time: a failing case never spins the loop.
3. Work is done for a case by whichever node gets to it; the case file's compare-and-set
   makes sure it takes effect once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from casefiles.machine import CaseFile
from signaling import not_cancelled

__all__ = ["Schedule"]

log = logging.getLogger(__name__)

_IDLE_S = 3600.0


class Schedule:
    def __init__(
        self,
        name: str,
        when: Callable[[CaseFile], float | None],
        work: Callable[[str, float], Awaitable[None]],
        clock: Callable[[], float],
        retry_s: float,
    ) -> None:
        self.name = name
        self._when = when
        self._work = work
        self._clock = clock
        self._retry_s = retry_s
        self._due: dict[str, float] = {}
        self._changed = asyncio.Event()

    def note(self, case: CaseFile) -> None:
        at = self._when(case)
        if at is None:
            self._due.pop(case.id, None)
            return
        earlier = at < self._due.get(case.id, float("inf"))
        self._due[case.id] = at
        if earlier:
            self._changed.set()

    def next_at(self) -> float | None:
        return min(self._due.values(), default=None)

    async def run(self) -> None:
        while not_cancelled():
            self._changed.clear()
            now = self._clock()
            for case_id in [c for c, at in self._due.items() if at <= now]:
                self._due[case_id] = now + self._retry_s  # unless the work notes better
                try:
                    await self._work(case_id, now)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s of case %s failed; trying again later", self.name, case_id)
            wait = (self.next_at() or self._clock() + _IDLE_S) - self._clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(wait, 0.01))
