"""Estimated wait range for every place in a queue.

A bare queue-length formula (position x mean handle time / experts) is wrong on the
days that matter: few experts, long and spread-out handle times, callers who give
up. This estimate instead simulates the next completions, many times:

- each expert in a call frees up after a residual handle time drawn from the
  handle-time distribution *given the time the call has already lasted*;
- each caller ahead may give up, with patience drawn from the measured abandons
  (exponential, fitted with answered callers as censored observations);
- the range is the 20th to 80th percentile of the simulated start times.

Handle times are fitted as a lognormal on the measured ones (talk plus wrap-up),
with the service's ``expected_handle_s`` as a prior until enough are measured.
Pure: no clock, no I/O; the random generator is seeded from its inputs.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections import deque
from dataclasses import dataclass, field

from .events import CallConnected, CallEnded, CallTransferred, Event, WrapUpFinished, WrapUpStarted
from .model import Outcome

__all__ = ["QueueView", "WaitEstimator", "WaitRange"]

WaitRange = tuple[float, float]

_LOW, _HIGH = 0.2, 0.8
_PRIOR_SIGMA = 0.8
_MIN_FIT = 8


@dataclass(frozen=True)
class QueueView:
    """What the estimate needs to know of one service now."""

    waited_s: list[float]
    """Time already waited by each queued caller, in queue order."""
    busy_elapsed_s: list[float]
    """For each expert of the service who is busy: how long the current call has lasted."""
    free_experts: int
    """Experts of the service who are available and free now."""


@dataclass
class _ServiceHistory:
    handle_s: deque[float] = field(default_factory=lambda: deque(maxlen=500))
    abandons: int = 0
    exposure_s: float = 0.0
    """Total time callers were seen waiting (answered and abandoned)."""


class WaitEstimator:
    def __init__(self, *, samples: int = 40, max_positions: int = 200) -> None:
        self.samples = samples
        self.max_positions = max_positions
        self._history: dict[str, _ServiceHistory] = {}
        self._talk: dict[str, float] = {}
        self._wrap_started: dict[str, float] = {}

    def _of(self, service: str) -> _ServiceHistory:
        return self._history.setdefault(service, _ServiceHistory())

    def observe(self, event: Event) -> None:
        """Learn from a queue event: waits, abandons, and handle times (talk plus
        wrap-up, measured per expert, so a transferred call's two legs stay apart)."""
        match event:
            case CallConnected():
                self.observe_wait(event.service, event.waited_s, abandoned=False)
            case CallEnded():
                if event.outcome is Outcome.ABANDONED and not event.short:
                    self.observe_wait(event.service, event.waited_s, abandoned=True)
                if event.talk_s is not None and event.expert is not None:
                    self._talk[event.expert] = event.talk_s
            case CallTransferred():
                self._talk.pop(event.expert, None)
            case WrapUpStarted():
                self._wrap_started[event.expert] = event.at
            case WrapUpFinished():
                started = self._wrap_started.pop(event.expert, event.at)
                talk = self._talk.pop(event.expert, None)
                if talk is not None:
                    self.observe_handled(event.service, talk + event.at - started)

    def observe_handled(self, service: str, handle_s: float) -> None:
        """A call was answered and finished: it kept an expert busy ``handle_s``."""
        if handle_s > 0:
            self._of(service).handle_s.append(handle_s)

    def observe_wait(self, service: str, waited_s: float, *, abandoned: bool) -> None:
        history = self._of(service)
        history.exposure_s += max(waited_s, 0.0)
        if abandoned:
            history.abandons += 1

    def handle_model(self, service: str, prior_mean_s: float) -> tuple[float, float]:
        """(mu, sigma) of the lognormal handle time."""
        measured = [math.log(h) for h in self._of(service).handle_s]
        if len(measured) >= _MIN_FIT:
            return statistics.fmean(measured), max(statistics.pstdev(measured), 0.05)
        return math.log(prior_mean_s) - _PRIOR_SIGMA**2 / 2, _PRIOR_SIGMA

    def mean_patience(self, service: str) -> float:
        history = self._of(service)
        if history.abandons == 0 or history.exposure_s <= 0:
            return math.inf
        return history.exposure_s / history.abandons

    def estimate(
        self, service: str, view: QueueView, *, prior_handle_s: float, seed: int = 0
    ) -> list[WaitRange | None]:
        """One range (seconds from now) per queued caller; ``None`` when no expert serves."""
        count = len(view.waited_s)
        if count == 0:
            return []
        if view.free_experts + len(view.busy_elapsed_s) == 0:
            return [None] * count
        mu, sigma = self.handle_model(service, prior_handle_s)
        patience = self.mean_patience(service)
        simulated = min(count, self.max_positions)
        starts: list[list[float]] = [[] for _ in range(simulated)]
        rng = random.Random(seed)
        for _ in range(self.samples):
            free_at = [0.0] * view.free_experts
            free_at += [_residual(rng, mu, sigma, e) for e in view.busy_elapsed_s]
            heapq.heapify(free_at)
            for index in range(simulated):
                start = heapq.heappop(free_at)
                starts[index].append(start)
                gives_up = patience < math.inf and rng.expovariate(1 / patience) < start
                # A caller ahead who gives up frees nobody's time; one who stays
                # keeps the expert for a whole handle time.
                busy = 0.0 if gives_up else rng.lognormvariate(mu, sigma)
                heapq.heappush(free_at, start + busy)
        ranges: list[WaitRange | None] = [_quantiles(s) for s in starts]
        return ranges + _extrapolate(ranges, count - simulated)


def _residual(rng: random.Random, mu: float, sigma: float, elapsed: float) -> float:
    for _ in range(20):
        handle = rng.lognormvariate(mu, sigma)
        if handle > elapsed:
            return handle - elapsed
    # A call far longer than usual: it is as likely to end soon as late.
    return rng.uniform(0, max(elapsed, 1.0) * 0.5)


def _quantiles(values: list[float]) -> WaitRange:
    ordered = sorted(values)
    last = len(ordered) - 1
    return ordered[round(_LOW * last)], ordered[round(_HIGH * last)]


def _extrapolate(ranges: list[WaitRange | None], extra: int) -> list[WaitRange | None]:
    known = [r for r in ranges if r is not None]
    if extra <= 0 or len(known) < 2:
        return [known[-1] if known else None] * max(extra, 0)
    (lo0, hi0), (lo1, hi1) = known[0], known[-1]
    steps = len(known) - 1
    slope_lo, slope_hi = (lo1 - lo0) / steps, (hi1 - hi0) / steps
    return [(lo1 + slope_lo * (i + 1), hi1 + slope_hi * (i + 1)) for i in range(extra)]
