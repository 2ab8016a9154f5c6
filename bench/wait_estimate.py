"""Wait estimate against the telephony average, on the same simulated days.

Telephony queues announce an average of past waits; a bare formula gives
position x mean handle time / experts. The queue's estimate simulates the next
completions from the measured handle times, the time already spent in the calls in
progress and the callers ahead who will give up (queueing/estimate.py).

Each simulated day drives the real queue machine (sans-I/O, no sockets): a few
experts (two to four), arrivals that peak in the morning, lognormal talk times, a
wrap-up, and callers who give up after an exponential patience. At each arrival the
three predictions are recorded; once the caller is answered, each is scored by its
absolute error against the wait the caller actually had. Callers who gave up are
left out (their true wait is unknown). Lower is better.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import bench_parser, report
from queueing import (
    AcceptOffer,
    CallConnected,
    CallEnded,
    CallId,
    CallOffered,
    CallQueued,
    CancelCall,
    ExpertId,
    ExpertSignIn,
    ExpertStatus,
    FinishWrapUp,
    HangUp,
    KioskId,
    KioskSpec,
    QueueMachine,
    RequestCall,
    ServiceId,
    ServiceSpec,
    SetStatus,
    WaitEstimator,
    WrapUpStarted,
)

SERVICE = ServiceId("caf")
DAY_S = 8 * 3600.0
TALK_MEAN_S, TALK_SIGMA = 600.0, 0.9
WRAP_S = (30.0, 90.0)
PATIENCE_MEAN_S = 900.0
TELEPHONY_WINDOW = 20


@dataclass
class Scores:
    estimate: list[float] = field(default_factory=list)
    telephony: list[float] = field(default_factory=list)
    naive: list[float] = field(default_factory=list)
    covered: int = 0


@dataclass
class Prediction:
    arrived: float
    estimate: float
    low: float
    high: float
    telephony: float
    naive: float


def arrivals_per_hour(hour: float, experts: int) -> float:
    """A morning peak above capacity, a calmer afternoon."""
    capacity = experts * 3600.0 / (TALK_MEAN_S + sum(WRAP_S) / 2)
    return capacity * (1.15 if hour < 3 else 0.7)


def simulate_day(day: int, estimator: WaitEstimator, scores: Scores) -> None:
    rng = random.Random(day)
    experts = rng.choice((2, 3, 3, 4))
    mu = math.log(TALK_MEAN_S) - TALK_SIGMA**2 / 2
    service = ServiceSpec(
        SERVICE, "CAF", "caf", max_waiting=500, max_wait_s=3 * 3600, wrap_up_s=600
    )
    kiosks = [KioskSpec(KioskId(f"k{i}"), f"K{i}", "Mairie", (SERVICE,)) for i in range(400)]
    machine = QueueMachine([service], kiosks)
    actions: list[tuple[float, int, object]] = []
    order = itertools.count()

    def later(at: float, command: object) -> None:
        heapq.heappush(actions, (at, next(order), command))

    for index in range(experts):
        expert = ExpertId(f"e{index}")
        machine.apply(ExpertSignIn(expert, "Expert", "caf", (SERVICE,)), 0.0)
        machine.apply(SetStatus(expert, ExpertStatus.AVAILABLE), 0.0)
    now, call_index = 0.0, 0
    while True:
        now += rng.expovariate(arrivals_per_hour(now / 3600, experts) / 3600)
        if now >= DAY_S:
            break
        call, kiosk = CallId(f"d{day}c{call_index}"), KioskId(f"k{call_index % 400}")
        call_index += 1
        later(now, RequestCall(call, kiosk, SERVICE, ""))
        later(now + rng.expovariate(1 / PATIENCE_MEAN_S), CancelCall(call, kiosk))

    predictions: dict[CallId, Prediction] = {}
    answered_waits: deque[float] = deque(maxlen=TELEPHONY_WINDOW)
    while actions or machine.get_timer() is not None:
        timer = machine.get_timer()
        if actions and (timer is None or actions[0][0] <= timer):
            at, _, command = heapq.heappop(actions)
            if isinstance(command, CancelCall):
                found = machine.call(command.call)
                if found is None or found.state.value not in ("waiting", "offered"):
                    continue
            events = machine.apply(command, at)  # type: ignore[arg-type]
        else:
            at = timer if timer is not None else now
            events = machine.handle_timer(at)
        pending = list(events)
        while pending:
            event = pending.pop(0)
            estimator.observe(event)
            match event:
                case CallQueued():
                    predictions[event.call] = predict(
                        machine, estimator, event, answered_waits, experts
                    )
                case CallOffered():
                    pending += machine.apply(AcceptOffer(event.expert, event.call), at)
                case CallConnected():
                    answered_waits.append(event.waited_s)
                    later(
                        at + rng.lognormvariate(mu, TALK_SIGMA),
                        HangUp(event.call, event.expert, "expert"),
                    )
                    score(predictions.pop(event.call, None), event.waited_s, scores)
                case WrapUpStarted():
                    finish = FinishWrapUp(event.expert, event.call, "Information")
                    later(at + rng.uniform(*WRAP_S), finish)
                case CallEnded():
                    predictions.pop(event.call, None)


def predict(
    machine: QueueMachine,
    estimator: WaitEstimator,
    queued: CallQueued,
    answered_waits: deque[float],
    experts: int,
) -> Prediction:
    spec = machine.services[SERVICE]
    ranges = estimator.estimate(
        SERVICE,
        machine.queue_view(SERVICE, queued.at),
        prior_handle_s=spec.expected_handle_s,
        seed=int(queued.at),
    )
    low, high = ranges[queued.position - 1] or (0.0, 0.0)
    mu, sigma = estimator.handle_model(SERVICE, spec.expected_handle_s)
    mean_handle = math.exp(mu + sigma**2 / 2)
    return Prediction(
        arrived=queued.at,
        estimate=(low + high) / 2,
        low=low,
        high=high,
        telephony=statistics.fmean(answered_waits) if answered_waits else 0.0,
        naive=(queued.position - 1) * mean_handle / experts,
    )


def score(prediction: Prediction | None, waited: float, scores: Scores) -> None:
    if prediction is None:
        return
    scores.estimate.append(abs(prediction.estimate - waited))
    scores.telephony.append(abs(prediction.telephony - waited))
    scores.naive.append(abs(prediction.naive - waited))
    scores.covered += prediction.low <= waited <= prediction.high


def main() -> int:
    parser = bench_parser(__doc__ or "")
    parser.add_argument("--days", type=int, help="simulated days (default 40; quick 4)")
    args = parser.parse_args()
    days = args.days or (4 if args.quick else 40)
    estimator, scores = WaitEstimator(), Scores()
    for day in range(days):
        simulate_day(day, estimator, scores)
    answered = len(scores.estimate)
    figures = {
        "days": days,
        "answered_calls": answered,
        "estimate_mae_s": round(statistics.fmean(scores.estimate), 1),
        "telephony_average_mae_s": round(statistics.fmean(scores.telephony), 1),
        "naive_formula_mae_s": round(statistics.fmean(scores.naive), 1),
        "estimate_range_coverage": round(scores.covered / answered, 3),
    }
    figures["estimate_vs_telephony"] = round(
        figures["estimate_mae_s"] / figures["telephony_average_mae_s"], 3
    )
    rows = [
        ("queue estimate, mean abs. error", f"{figures['estimate_mae_s']} s", "lowest"),
        (
            "telephony average, mean abs. error",
            f"{figures['telephony_average_mae_s']} s",
            "reference",
        ),
        ("position x handle / experts", f"{figures['naive_formula_mae_s']} s", ""),
        (
            "answered waits inside the range",
            f"{figures['estimate_range_coverage']:.0%}",
            "~60% (20th-80th pct)",
        ),
    ]
    report(
        f"Wait estimate over {days} simulated days, {answered} answered calls",
        rows,
        figures,
        args.json,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
