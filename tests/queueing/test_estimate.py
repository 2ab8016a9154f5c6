"""The wait estimate: ranges per place, driven by experts, handle times and abandons."""

from __future__ import annotations

import math

import pytest

from queueing import (
    AcceptOffer,
    CallId,
    CancelCall,
    ExpertId,
    FinishWrapUp,
    HangUp,
    KioskId,
    QueueView,
    RequestCall,
    WaitEstimator,
)
from tests.queueing.helpers import CAF, machine, request, sign_in

PRIOR = 600.0


def estimate(view: QueueView, estimator: WaitEstimator | None = None, seed: int = 0):
    estimator = estimator or WaitEstimator(samples=200)
    return estimator.estimate("caf", view, prior_handle_s=PRIOR, seed=seed)


def waiting(count: int, busy: list[float], free: int = 0) -> QueueView:
    return QueueView([0.0] * count, busy, free)


def midpoint(rng: tuple[float, float] | None) -> float:
    assert rng is not None
    return (rng[0] + rng[1]) / 2


# --------------------------------------------------------------------------- edges


def test_empty_queue_has_no_estimate():
    assert estimate(QueueView([], [300.0], 1)) == []


def test_queue_without_any_expert_has_no_range():
    assert estimate(QueueView([10.0, 5.0], [], 0)) == [None, None]


def test_first_caller_with_a_free_expert_starts_now():
    ranges = estimate(QueueView([4.0], [], 1))

    assert ranges == [(0.0, 0.0)]


def test_ranges_are_ordered_low_then_high():
    for low, high in estimate(waiting(10, [100.0, 400.0])):
        assert 0.0 <= low <= high


# --------------------------------------------------------------------------- shape


def test_ranges_do_not_decrease_with_position():
    ranges = estimate(waiting(15, [60.0, 300.0, 900.0], free=1))

    lows = [r[0] for r in ranges]
    highs = [r[1] for r in ranges]
    assert lows == sorted(lows)
    assert highs == sorted(highs)
    assert highs[-1] > highs[0]


def test_more_experts_give_shorter_waits():
    one_expert = estimate(waiting(6, [120.0]))
    three_experts = estimate(waiting(6, [120.0, 120.0, 120.0]))

    assert midpoint(three_experts[-1]) < midpoint(one_expert[-1])
    assert three_experts[-1][1] < one_expert[-1][1]


def test_callers_who_give_up_ahead_shorten_the_wait_behind():
    patient = WaitEstimator(samples=200)
    impatient = WaitEstimator(samples=200)
    for _ in range(50):
        impatient.observe_wait("caf", 120.0, abandoned=True)
        impatient.observe_wait("caf", 60.0, abandoned=False)
        patient.observe_wait("caf", 120.0, abandoned=False)
    view = waiting(10, [200.0])

    assert impatient.mean_patience("caf") == pytest.approx(180.0)
    assert patient.mean_patience("caf") == math.inf
    assert midpoint(estimate(view, impatient)[-1]) < midpoint(estimate(view, patient)[-1])


def test_short_measured_handle_times_shorten_the_estimate():
    quick = WaitEstimator(samples=200)
    for _ in range(20):
        quick.observe_handled("caf", 90.0)
    view = waiting(5, [30.0])

    assert midpoint(estimate(view, quick)[-1]) < midpoint(estimate(view)[-1]) / 3


def test_long_measured_handle_times_lengthen_the_estimate():
    slow = WaitEstimator(samples=200)
    for _ in range(20):
        slow.observe_handled("caf", 1800.0)
    view = waiting(5, [30.0])

    assert midpoint(estimate(view, slow)[-1]) > 2 * midpoint(estimate(view)[-1])


def test_a_call_far_past_the_usual_length_still_ends_in_a_bounded_time():
    quick = WaitEstimator(samples=100)
    for _ in range(20):
        quick.observe_handled("caf", 60.0)

    low, high = estimate(waiting(1, [3600.0]), quick)[0]

    assert 0.0 <= low <= high <= 1800.0


def test_same_seed_gives_the_same_estimate():
    view = waiting(8, [100.0, 500.0])

    assert estimate(view, seed=7) == estimate(view, seed=7)


def test_ranges_beyond_the_simulated_places_keep_growing():
    estimator = WaitEstimator(samples=100, max_positions=5)

    ranges = estimate(waiting(9, [100.0]), estimator)

    assert len(ranges) == 9
    highs = [r[1] for r in ranges]
    assert highs == sorted(highs)
    assert highs[8] > highs[4]


# --------------------------------------------------------------------------- model


def test_prior_handle_model_has_the_expected_mean():
    mu, sigma = WaitEstimator().handle_model("caf", PRIOR)

    assert math.exp(mu + sigma**2 / 2) == pytest.approx(PRIOR)


def test_handle_model_is_fitted_once_enough_calls_are_measured():
    estimator = WaitEstimator()
    for seconds in (100.0, 200.0, 400.0, 800.0) * 2:
        estimator.observe_handled("caf", seconds)

    mu, sigma = estimator.handle_model("caf", PRIOR)

    assert math.exp(mu) == pytest.approx(math.sqrt(100.0 * 800.0))
    assert sigma == pytest.approx(math.log(2) * math.sqrt(5 / 4))


def test_handle_model_keeps_the_prior_with_too_few_measures():
    estimator = WaitEstimator()
    for _ in range(7):
        estimator.observe_handled("caf", 60.0)

    assert estimator.handle_model("caf", PRIOR) == WaitEstimator().handle_model("caf", PRIOR)


def test_history_of_one_service_does_not_leak_into_another():
    estimator = WaitEstimator()
    for _ in range(20):
        estimator.observe_handled("cpam", 60.0)
    estimator.observe_wait("cpam", 30.0, abandoned=True)

    assert estimator.handle_model("caf", PRIOR) == WaitEstimator().handle_model("caf", PRIOR)
    assert estimator.mean_patience("caf") == math.inf


# --------------------------------------------------------------------------- machine view


def test_queue_view_reports_waits_busy_and_free_experts():
    m = machine()
    sign_in(m, "a", 0.0)
    sign_in(m, "b", 0.0)
    sign_in(m, "c", 0.0, available=False)
    request(m, "c1", 10.0, kiosk="k1")  # -> a (longest idle by id)
    m.apply(AcceptOffer(ExpertId("a"), CallId("c1")), 20.0)
    request(m, "c2", 30.0, kiosk="k2")  # -> b, still ringing
    request(m, "c3", 40.0, kiosk="k3")

    view = m.queue_view(CAF, 100.0)

    assert view.waited_s == [70.0, 60.0]
    assert view.busy_elapsed_s == [80.0]
    assert view.free_experts == 1  # b is ringing; c is on break and not counted


def test_queue_view_counts_an_expert_in_wrap_up_as_busy():
    m = machine()
    sign_in(m, "a", 0.0)
    request(m, "c1", 10.0)
    m.apply(AcceptOffer(ExpertId("a"), CallId("c1")), 20.0)
    m.apply(HangUp(CallId("c1"), "a", "expert"), 50.0)

    view = m.queue_view(CAF, 60.0)

    assert (view.waited_s, view.busy_elapsed_s, view.free_experts) == ([], [0.0], 0)


def test_observe_learns_handle_times_as_talk_plus_wrap_up_from_machine_events():
    m = machine()
    sign_in(m, "a", 0.0)
    estimator = WaitEstimator()
    for index in range(10):
        start = index * 1000.0
        call = f"c{index}"
        steps = [
            (RequestCall(CallId(call), KioskId("k1"), CAF, "1234567"), start),
            (AcceptOffer(ExpertId("a"), CallId(call)), start + 10),
            (HangUp(CallId(call), "a", "expert"), start + 310),
            (FinishWrapUp(ExpertId("a"), CallId(call), "Information"), start + 400),
        ]
        for command, now in steps:
            for event in m.apply(command, now):
                estimator.observe(event)

    mu, sigma = estimator.handle_model("caf", prior_mean_s=60.0)

    assert math.exp(mu) == pytest.approx(390.0)  # 300 s of talk and 90 s of wrap-up
    assert sigma == pytest.approx(0.05)  # the floor: every call took the same time


def test_observe_counts_abandons_but_not_short_ones():
    estimator = WaitEstimator()
    m = machine()
    sign_in(m, "a", 0.0, available=False)
    request(m, "c1", 0.0)
    request(m, "c2", 0.0, kiosk="k2")
    for event in m.apply(CancelCall(CallId("c1"), KioskId("k1")), 2.0):  # short: a misdial
        estimator.observe(event)
    assert estimator.mean_patience("caf") == math.inf
    for event in m.apply(CancelCall(CallId("c2"), KioskId("k2")), 300.0):
        estimator.observe(event)
    assert estimator.mean_patience("caf") == pytest.approx(300.0)
