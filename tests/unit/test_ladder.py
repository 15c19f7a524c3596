"""The bench's rate search on recorded step results: no server, only the ladder's rules."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from benchmarks import ladder
from benchmarks.bench import locust_seed


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
    recorded = {300.0: ok(300), 450.0: ok(450), 600.0: slow(600), 700.0: slow(690)}
    search = ladder.climb([300.0, 450.0, 600.0, 700.0], ladder.replay(recorded))
    assert targets(search) == [300.0, 450.0, 600.0, 700.0]
    assert search.capacity_rps == 450.0
    assert search.steps == [recorded[t] for t in targets(search)]


def test_a_pass_after_a_failed_step_still_counts():
    recorded = {100.0: ok(100), 200.0: slow(200), 300.0: ok(300), 340.0: slow(340)}
    search = ladder.climb([100.0, 200.0, 300.0], ladder.replay(recorded))
    assert targets(search) == [100.0, 200.0, 300.0, 340.0]  # within the SLO at the top: one more
    assert search.capacity_rps == 300.0


def test_deep_saturation_ends_the_search():
    recorded = {100.0: ok(100), 200.0: drowning(200), 300.0: ok(300)}
    search = ladder.climb([100.0, 200.0, 300.0], ladder.replay(recorded))
    assert targets(search) == [100.0, 200.0]  # 300 never measured
    assert search.capacity_rps == 100.0


def test_a_ladder_still_within_the_slo_at_the_top_climbs_at_most_three_rungs_higher():
    recorded = {rate: ok(rate) for rate in (100.0, 120.0, 140.0, 160.0, 180.0, 210.0)}
    search = ladder.climb([100.0, 120.0], ladder.replay(recorded))
    # 120 * 1.15 = 138 -> 140, 140 * 1.15 = 161 -> 160, 160 * 1.15 = 184 -> 180; then it stops.
    assert targets(search) == [100.0, 120.0, 140.0, 160.0, 180.0]
    assert [rung.planned for rung in search.rungs] == [2, 2, 3, 4, 5]
    assert search.capacity_rps == 180.0


def test_extension_stops_at_the_first_miss():
    search = ladder.climb(
        [100.0, 120.0], ladder.replay({100.0: ok(100), 120.0: ok(120), 140.0: slow(140)})
    )
    assert targets(search) == [100.0, 120.0, 140.0] and search.capacity_rps == 120.0


def test_a_first_step_over_the_slo_halves_the_rate_instead_of_climbing():
    # The probe overrated the server: 400 and its half (200) miss, a quarter (100) meets the SLO.
    recorded = {
        400.0: slow(400),
        200.0: slow(200),
        100.0: ok(100),
        110.0: ok(110),
        130.0: ok(130),
        150.0: ok(150),
    }
    search = ladder.climb([400.0, 500.0, 600.0], ladder.replay(recorded))
    assert targets(search)[:3] == [400.0, 200.0, 100.0]
    assert [rung.planned for rung in search.rungs[:3]] == [3, 2, 3]
    # Once a rung meets the SLO at the top, the ladder climbs from there as usual (100 x 1.15 is
    # 114.999... in floating point, so 110).
    assert targets(search)[3:] == [110.0, 130.0, 150.0] and search.capacity_rps == 150.0


def test_the_rate_is_halved_at_most_twice():
    recorded = {400.0: drowning(400), 200.0: drowning(200), 100.0: drowning(100), 50.0: ok(50)}
    search = ladder.climb([400.0, 600.0], ladder.replay(recorded))
    # Halved twice (400 -> 200 -> 100); the third miss is deep saturation and ends the search.
    assert targets(search) == [400.0, 200.0, 100.0]
    assert search.capacity_rps is None


def test_nothing_within_the_slo_means_no_capacity():
    search = ladder.climb([10.0], ladder.replay({10.0: slow(10), 5.0: slow(5), 2.0: slow(2)}))
    assert search.capacity_rps is None
    assert targets(search) == [10.0, 5.0, 2.0]  # 2.5 rounds to 2 (to even), and no third halving


def test_a_measure_sees_each_rung_once_in_order():
    seen = []

    def measure(rung: ladder.Rung) -> Step:
        seen.append((rung.index, rung.target_rps))
        return ok(rung.target_rps) if rung.target_rps < 300 else slow(rung.target_rps)

    search = ladder.climb([100.0, 200.0, 300.0], measure)
    assert seen == [(0, 100.0), (1, 200.0), (2, 300.0)] and search.capacity_rps == 200.0


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
