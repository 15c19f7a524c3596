"""The bench's rate search on recorded and synthetic step results: no server, only its rules."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest

from benchmarks import ladder
from benchmarks.bench import locust_seed
from benchmarks.measure.stats import bootstrap_within_probability, percentile


@dataclass(frozen=True)
class Step:
    within_slo: bool
    achieved_rps: float


def ok(rate: float) -> Step:
    return Step(True, rate)


def slow(rate: float) -> Step:
    """Kept up with the target but missed the SLO (p99 or errors)."""
    return Step(False, rate)


def drowning(rate: float) -> Step:
    """Deep in saturation: achieved well under the target."""
    return Step(False, rate * 0.5)


def targets(search: ladder.Ladder) -> list[float]:
    return [rung.target_rps for rung in search.rungs]


def test_ladder_is_sorted_rounded_and_scaled_to_the_probe():
    assert ladder.ladder_targets(1000, (0.3, 0.45, 0.6)) == [300.0, 450.0, 600.0]
    assert ladder.ladder_targets(187, (0.5, 0.9)) == [94.0, 170.0]
    assert ladder.ladder_targets(0.1, (0.5,)) == [1.0]
    assert ladder.ladder_targets(1000, (0.3, 0.3001)) == [300.0]  # rounded rates are not repeated


def test_a_knee_inside_the_ladder_is_the_capacity():
    # 600 misses twice: it is the ceiling, 700 is never measured, and the search bisects
    # between 450 and 600 (sqrt(450 x 600) = 520, then sqrt(520 x 600) = 560).
    recorded = {
        300.0: ok(300),
        450.0: ok(450),
        600.0: slow(600),
        520.0: ok(520),
        560.0: slow(560),
    }
    search = ladder.climb([300.0, 450.0, 600.0, 700.0], ladder.replay(recorded))
    assert targets(search) == [300.0, 450.0, 600.0, 600.0, 520.0, 560.0, 560.0]
    assert [rung.attempt for rung in search.rungs] == [0, 0, 0, 1, 0, 0, 1]
    assert search.capacity_rps == 520.0 and search.ceiling_rps == 560.0
    assert search.steps == [recorded[t] for t in targets(search)]


def test_a_miss_that_does_not_repeat_is_not_believed():
    recorded = {
        100.0: ok(100),
        200.0: [slow(200), ok(200)],
        300.0: ok(300),
        340.0: drowning(340),
        320.0: ok(320),
    }
    search = ladder.climb([100.0, 200.0, 300.0], ladder.replay(recorded))
    # 340 drowned: beyond capacity at once (no second attempt); then sqrt(300 x 340) -> 320.
    assert targets(search) == [100.0, 200.0, 200.0, 300.0, 340.0, 320.0]
    assert search.capacity_rps == 320.0 and search.ceiling_rps == 340.0


def test_deep_saturation_is_believed_at_once_and_nothing_above_it_is_measured():
    recorded = {100.0: ok(100), 200.0: drowning(200), 300.0: ok(300), 140.0: ok(140)}
    search = ladder.climb([100.0, 200.0, 300.0], ladder.replay(recorded), refine_steps=1)
    assert targets(search) == [100.0, 200.0, 140.0]  # 300 never measured; one bisection
    assert search.capacity_rps == 140.0


def test_a_ladder_still_within_the_slo_at_the_top_climbs_at_most_three_rungs_higher():
    recorded = {rate: ok(rate) for rate in (100.0, 120.0, 140.0, 160.0, 180.0, 210.0)}
    search = ladder.climb([100.0, 120.0], ladder.replay(recorded))
    # 120 * 1.15 = 138 -> 140, 140 * 1.15 = 161 -> 160, 160 * 1.15 = 184 -> 180; then it stops.
    assert targets(search) == [100.0, 120.0, 140.0, 160.0, 180.0]
    assert [rung.planned for rung in search.rungs] == [2, 2, 3, 4, 5]
    assert search.capacity_rps == 180.0 and search.ceiling_rps is None


def test_extension_stops_at_the_first_miss_that_repeats():
    recorded = {100.0: ok(100), 120.0: ok(120), 140.0: slow(140), 130.0: ok(130)}
    search = ladder.climb([100.0, 120.0], ladder.replay(recorded))
    # sqrt(120 x 140) -> 130, within 10% of 140: the bisection stops there.
    assert targets(search) == [100.0, 120.0, 140.0, 140.0, 130.0]
    assert search.capacity_rps == 130.0


def test_a_first_rate_over_the_slo_halves_the_rate_instead_of_climbing():
    # The probe overrated the server: 400 and its half (200) miss twice, a quarter (100) meets
    # the SLO; then the search bisects towards the ceiling at 200.
    recorded = {
        400.0: slow(400),
        200.0: slow(200),
        100.0: ok(100),
        140.0: ok(140),
        170.0: ok(170),
    }
    search = ladder.climb([400.0, 500.0, 600.0], ladder.replay(recorded))
    assert targets(search) == [400.0, 400.0, 200.0, 200.0, 100.0, 140.0, 170.0]
    # A miss plans its second attempt; a repeated miss at the bottom drops the ladder above it.
    assert [rung.planned for rung in search.rungs[:3]] == [3, 4, 3]
    assert search.capacity_rps == 170.0 and search.ceiling_rps == 200.0


def test_the_rate_is_halved_at_most_twice():
    recorded = {400.0: drowning(400), 200.0: drowning(200), 100.0: drowning(100), 50.0: ok(50)}
    search = ladder.climb([400.0, 600.0], ladder.replay(recorded))
    # Halved twice (400 -> 200 -> 100); drowning is believed at once, and no third halving.
    assert targets(search) == [400.0, 200.0, 100.0]
    assert search.capacity_rps is None


def test_nothing_within_the_slo_means_no_capacity():
    search = ladder.climb([10.0], ladder.replay({10.0: slow(10), 5.0: slow(5), 2.0: slow(2)}))
    assert search.capacity_rps is None
    assert targets(search) == [10.0, 10.0, 5.0, 5.0, 2.0, 2.0]  # 2.5 rounds to 2 (to even)


def test_a_measure_sees_each_rung_once_in_order():
    seen = []

    def measure(rung: ladder.Rung) -> Step:
        seen.append((rung.index, rung.target_rps, rung.attempt))
        return ok(rung.target_rps) if rung.target_rps < 300 else slow(rung.target_rps)

    search = ladder.climb([100.0, 200.0, 300.0], measure)
    # 300 misses twice; 200 -> 300 is a 50% gap: sqrt(200 x 300) = 245 -> 240, then 270.
    assert seen == [
        (0, 100.0, 0),
        (1, 200.0, 0),
        (2, 300.0, 0),
        (3, 300.0, 1),
        (4, 240.0, 0),
        (5, 270.0, 0),
    ]
    assert search.capacity_rps == 270.0


def test_bracket_believes_a_rate_beyond_capacity_only_when_every_attempt_missed():
    assert ladder.bracket([(100.0, True), (200.0, False), (200.0, True), (300.0, False)]) == (
        200.0,
        300.0,
    )
    # A lucky pass above the ceiling is not the capacity.
    assert ladder.bracket([(100.0, True), (200.0, False), (300.0, True)]) == (100.0, 200.0)
    assert ladder.bracket([(100.0, False)]) == (None, 100.0)
    assert ladder.bracket([]) == (None, None)


def test_a_certain_ladder_has_the_bracket_as_its_interval():
    steps = [(100.0, 1.0), (200.0, 1.0), (300.0, 0.0)]
    interval = ladder.capacity_interval([steps])
    assert (interval.low, interval.high) == (200.0, 300.0)
    # Two repetitions: the median of capacities (200, 400) and of ceilings (300, 500).
    other = [(200.0, 1.0), (400.0, 1.0), (500.0, 0.0)]
    both = ladder.capacity_interval([steps, other])
    assert (both.low, both.high) == (300.0, 400.0)
    assert both.as_dict()["method"] == "bootstrap" and both.confidence == 0.95
    assert ladder.capacity_interval([[], []]) is None


def test_an_uncertain_step_widens_the_interval():
    sure = ladder.capacity_interval([[(100.0, 1.0), (200.0, 1.0), (300.0, 0.0)]])
    unsure = ladder.capacity_interval([[(100.0, 1.0), (200.0, 0.5), (300.0, 0.0)]])
    assert unsure.low == 100.0 and unsure.high == 300.0 and sure.low == 200.0


def test_overlapping_intervals_cannot_be_told_apart():
    first, second = {"low": 100.0, "high": 200.0}, {"low": 190.0, "high": 300.0}
    assert ladder.overlap(first, second) is True
    assert ladder.overlap(first, {"low": 210.0, "high": 300.0}) is False
    assert ladder.overlap(first, None) is None


# --- A synthetic server: M/M/1 sojourn times, so the true capacity is known -----------------

SLO_MS = 50.0
SERVICE_RPS = 300.0
# An M/M/1 queue's sojourn time is exponential with rate (mu - lambda): its p99 is
# ln(100) / (mu - lambda), which equals the SLO at this arrival rate (about 208 req/s).
TRUE_CAPACITY = SERVICE_RPS - math.log(100) / (SLO_MS / 1000)


@dataclass(frozen=True)
class MeasuredStep:
    within_slo: bool
    achieved_rps: float
    within_slo_probability: float


def synthetic_server(seed: int, seconds: float = 4.0, spike_at: float | None = None):
    """A `measure` drawing each step's latencies; `spike_at`: the first attempt at that rate
    has 3% of its requests at 200 ms (a noisy neighbour for a moment, far below saturation)."""
    draw = random.Random(seed)

    def measure(rung: ladder.Rung) -> MeasuredStep:
        rate = rung.target_rps
        if rate >= SERVICE_RPS:
            return MeasuredStep(False, SERVICE_RPS * 0.9, 0.0)
        count = int(rate * seconds)
        latencies = [draw.expovariate(SERVICE_RPS - rate) * 1000 for _ in range(count)]
        if rate == spike_at and rung.attempt == 0:
            latencies[: count // 30] = [200.0] * (count // 30)
        latencies.sort()
        p99 = percentile(latencies, 0.99)
        probability = bootstrap_within_probability(latencies, 0, 0.99, SLO_MS, 0.001)
        return MeasuredStep(p99 is not None and p99 <= SLO_MS, rate, probability)

    return measure


def interval_of(search: ladder.Ladder) -> ladder.CapacityInterval:
    steps = [
        (rung.target_rps, step.within_slo_probability)
        for rung, step in zip(search.rungs, search.steps, strict=True)
    ]
    interval = ladder.capacity_interval([steps])
    assert interval is not None
    return interval


def test_a_single_tail_spike_far_below_saturation_does_not_set_the_capacity():
    rates = [130.0, 190.0, 250.0]  # the knee is at 208
    search = ladder.climb(rates, synthetic_server(seed=1, spike_at=130.0), refine_steps=1)
    first = search.steps[0]
    assert search.rungs[0].target_rps == 130.0 and not first.within_slo  # the spike missed
    assert search.rungs[1].target_rps == 130.0 and search.rungs[1].attempt == 1
    # Believed, the spike would have halved the search to 65 req/s.
    assert search.capacity_rps is not None and search.capacity_rps >= 0.85 * TRUE_CAPACITY


@pytest.mark.parametrize("seed", range(10))
def test_a_real_knee_is_found_and_the_interval_contains_the_truth(seed):
    rates = ladder.ladder_targets(290, ladder.LADDER)
    search = ladder.climb(rates, synthetic_server(seed))
    capacity, ceiling = search.bracket()
    assert capacity is not None and ceiling is not None
    assert 0.85 * TRUE_CAPACITY <= capacity <= TRUE_CAPACITY * 1.05
    interval = interval_of(search)
    assert interval.low <= capacity <= interval.high
    assert interval.low <= TRUE_CAPACITY <= interval.high


def test_step_length_follows_the_rate_within_its_bounds():
    assert ladder.step_seconds(500.0, 1522, 5, 8) == 5.0  # fast: the shortest step
    assert ladder.step_seconds(250.0, 1522, 5, 8) == 7.0  # ceil(6.09)
    assert ladder.step_seconds(40.0, 1522, 5, 8) == 8.0  # slow: the budget caps it
    assert ladder.step_seconds(40.0, 381, 2.5, 2.5) == 3.0  # Locust runs whole seconds


@pytest.mark.parametrize(
    "raw, rounded", [(0.2, 1.0), (9.4, 9.0), (94.4, 94.0), (187.0, 190.0), (1234.0, 1200.0)]
)
def test_rates_have_two_significant_figures(raw, rounded):
    assert ladder.round_rate(raw) == rounded


def test_every_locust_run_of_a_repetition_gets_its_own_seed():
    seeds = [
        locust_seed(repetition, step) for repetition in range(3) for step in (None, *range(20))
    ]
    assert len(set(seeds)) == len(seeds)
