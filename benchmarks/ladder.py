"""The rate search of `make bench`: find the knee of the latency curve, believe no lone step.

A pure function of what each step measured. `climb(rates, measure)` calls ``measure(rung)`` for
each rung in turn and decides, from the step results, which rate to try next:

- the rungs start as `ladder_targets(probe_rps, fractions)`: p99 crosses a 50 ms SLO at 50-80%
  of a closed-loop probe's throughput, so the first rungs sit there, not far below;
- a step that misses the SLO while keeping up with its target is **measured again** before it
  is believed: one step's tail (a few slow requests out of a few hundred) is noise as often as
  it is a knee. A rate is beyond capacity only when every attempt at it missed; a rate with one
  attempt within the SLO is within it;
- a step that achieved under `SATURATED_FRACTION` of its target is beyond capacity at once:
  deep saturation is not tail noise;
- the lowest rate beyond capacity is the **ceiling**: nothing above it is measured, and the rest
  of the search **bisects** between the capacity and the ceiling (geometric midpoints, at most
  `MAX_REFINE_STEPS`, until they are within `KNEE_RESOLUTION`): the time goes near the knee;
- when even the lowest rate so far is beyond capacity (a closed-loop probe can overrate a
  server whose throughput comes with latency, e.g. with batching), the next rung is half that
  rate, at most `MAX_LOWER_STEPS` times: capacity is found rather than reported as none;
- when the top rung is still within the SLO the knee lies above it: one more rung
  `EXTEND_FACTOR` higher, at most `MAX_EXTRA_STEPS` times.

The **capacity** is the highest rate within the SLO below the ceiling (None if none was), which
is also the highest rate any step met the SLO at, since nothing above the ceiling is measured.
`capacity_interval` gives it an interval: each step's bootstrap probability of meeting the SLO
(`benchmarks.measure.stats.bootstrap_within_probability`) is drawn again and again, the same
rule picks a capacity and a ceiling per draw, and the interval runs from the low quantile of the
capacities to the high quantile of the ceilings (the true knee lies between the two).

Each step lasts long enough for the samples its p99 needs (`step_seconds`, with
`benchmarks.measure.stats.samples_for_quantile`), within the run's budget: a slow server's
steps are longer than a fast one's.

A step result is anything with ``within_slo`` and ``achieved_rps``: the bench's `StepResult`, or
a recorded one replayed with `replay` (which is how the unit tests drive the search, no server).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from benchmarks.measure.stats import quantile

# Each step's target as a fraction of the probe's closed-loop throughput: around the knee.
LADDER = (0.4, 0.55, 0.7, 0.85)
QUICK_LADDER = (0.5, 0.7, 0.85)
EXTEND_FACTOR = 1.15
MAX_EXTRA_STEPS = 3
MAX_LOWER_STEPS = 2  # halvings of the rate when even the first rate is beyond capacity
MAX_REFINE_STEPS = 2  # bisections between the capacity and the ceiling
QUICK_REFINE_STEPS = 1
KNEE_RESOLUTION = 0.1  # stop bisecting once the ceiling is within 10% of the capacity
SATURATED_FRACTION = 0.8
INTERVAL_CONFIDENCE = 0.95
INTERVAL_DRAWS = 2000


class StepOutcome(Protocol):
    @property
    def within_slo(self) -> bool: ...

    @property
    def achieved_rps(self) -> float: ...


Step = TypeVar("Step", bound=StepOutcome)


@dataclass(frozen=True)
class Rung:
    """One step to measure: its position, target rate, how many steps are planned now, and
    which attempt at this rate it is (0 = first, 1 = the re-measurement of a miss)."""

    index: int
    target_rps: float
    planned: int
    attempt: int = 0


def bracket(outcomes: Iterable[tuple[float, bool]]) -> tuple[float | None, float | None]:
    """(capacity, ceiling) from (target rate, within the SLO) per step, by the module's rule:
    the ceiling is the lowest rate every attempt at which missed, the capacity the highest rate
    below it with an attempt within the SLO; None where there is none."""
    attempts: dict[float, list[bool]] = {}
    for target, within in outcomes:
        attempts.setdefault(target, []).append(within)
    beyond = [target for target, results in attempts.items() if not any(results)]
    ceiling = min(beyond) if beyond else None
    within_rates = [
        target
        for target, results in attempts.items()
        if any(results) and (ceiling is None or target < ceiling)
    ]
    return (max(within_rates) if within_rates else None), ceiling


@dataclass
class Ladder(Generic[Step]):
    """The steps of one search, in the order they ran, and what they say the capacity is."""

    rungs: list[Rung] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    def bracket(self) -> tuple[float | None, float | None]:
        return bracket(
            (rung.target_rps, step.within_slo)
            for rung, step in zip(self.rungs, self.steps, strict=True)
        )

    @property
    def capacity_rps(self) -> float | None:
        return self.bracket()[0]

    @property
    def ceiling_rps(self) -> float | None:
        """The lowest rate found beyond capacity: the true knee lies below it."""
        return self.bracket()[1]


def round_rate(raw: float) -> float:
    """Two significant figures, at least 1 req/s: readable, and the same across repetitions
    whenever the probes agree to within rounding."""
    raw = max(raw, 1.0)
    magnitude = 10 ** max(math.floor(math.log10(raw)) - 1, 0)
    return float(round(raw / magnitude) * magnitude)


def ladder_targets(probe_rps: float, fractions: Sequence[float]) -> list[float]:
    """The first rungs: each fraction of the probe's throughput, rounded, sorted, distinct."""
    return sorted({round_rate(probe_rps * fraction) for fraction in fractions})


def climb(
    rates: Sequence[float],
    measure: Callable[[Rung], Step],
    refine_steps: int = MAX_REFINE_STEPS,
) -> Ladder[Step]:
    """Measure the rungs starting from `rates`, adapting the ladder as the module says."""
    pending = sorted(rates)
    ladder: Ladder[Step] = Ladder()
    measured: dict[float, int] = {}  # attempts so far per rate
    extended = lowered = refined = 0
    while pending:
        target = pending.pop(0)
        rung = Rung(
            len(ladder.rungs), target, len(ladder.rungs) + 1 + len(pending), measured.get(target, 0)
        )
        step = measure(rung)
        ladder.rungs.append(rung)
        ladder.steps.append(step)
        measured[target] = rung.attempt + 1
        saturated = step.achieved_rps < SATURATED_FRACTION * target
        if not step.within_slo and not saturated and rung.attempt == 0:
            pending.insert(0, target)  # a miss is believed only when it repeats
            continue
        capacity, ceiling = ladder.bracket()
        if ceiling is None:
            if not pending and step.within_slo and extended < MAX_EXTRA_STEPS:
                pending.append(round_rate(target * EXTEND_FACTOR))
                extended += 1
            continue
        pending = [rate for rate in pending if rate < ceiling]
        if pending:
            continue
        if capacity is None:
            if lowered < MAX_LOWER_STEPS:
                pending = [round_rate(ceiling / 2)]
                lowered += 1
        elif refined < refine_steps and ceiling > capacity * (1 + KNEE_RESOLUTION):
            middle = round_rate(math.sqrt(capacity * ceiling))
            if capacity < middle < ceiling and middle not in measured:
                pending = [middle]
                refined += 1
    return ladder


def replay(recorded: Mapping[float, Step | Sequence[Step]]) -> Callable[[Rung], Step]:
    """A `measure` that answers from step results recorded by target rate: one result for every
    attempt, or a sequence of them, one per attempt in order."""

    def measure(rung: Rung) -> Step:
        if rung.target_rps not in recorded:
            raise KeyError(f"no step recorded at {rung.target_rps:g} req/s")
        answer = recorded[rung.target_rps]
        if isinstance(answer, Sequence):
            if rung.attempt >= len(answer):
                raise KeyError(f"no attempt {rung.attempt} recorded at {rung.target_rps:g} req/s")
            return answer[rung.attempt]
        return answer

    return measure


@dataclass(frozen=True)
class CapacityInterval:
    """Where the capacity lies with `confidence` (results.json ``capacity_interval``)."""

    low: float
    high: float
    confidence: float
    draws: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "draws": self.draws,
            "method": "bootstrap",
        }


def capacity_interval(
    repetitions: Sequence[Sequence[tuple[float, float]]],
    confidence: float = INTERVAL_CONFIDENCE,
    draws: int = INTERVAL_DRAWS,
    seed: int = 0,
) -> CapacityInterval | None:
    """The interval of the median capacity over repetitions, from each step's probability of
    meeting the SLO: ``repetitions[r]`` lists (target rate, probability) of repetition r's steps
    in the order they ran. None when no repetition has a step."""
    repetitions = [steps for steps in repetitions if steps]
    if not repetitions:
        return None
    draw = random.Random(seed)
    floors, ceilings = [], []
    for _ in range(draws):
        rep_floors, rep_ceilings = [], []
        for steps in repetitions:
            capacity, ceiling = bracket(
                (target, draw.random() < probability) for target, probability in steps
            )
            rep_floors.append(capacity or 0.0)
            top = max(target for target, _ in steps)
            rep_ceilings.append(ceiling if ceiling is not None else (capacity or top))
        floors.append(statistics.median(rep_floors))
        ceilings.append(statistics.median(rep_ceilings))
    tail = (1 - confidence) / 2
    return CapacityInterval(quantile(floors, tail), quantile(ceilings, 1 - tail), confidence, draws)


def overlap(first: Mapping[str, Any] | None, second: Mapping[str, Any] | None) -> bool | None:
    """Whether two ``capacity_interval`` entries overlap: the architectures cannot be told apart.
    None when either has no interval."""
    if not first or not second:
        return None
    return first["low"] <= second["high"] and second["low"] <= first["high"]


# Samples a step needs for its p99 (benchmarks.measure.stats.samples_for_quantile): a default run
# wants the p99 between the true p98.5 and p99.5 (1,522 samples), a quick one p98-p100 (381).
P99_RANK_TOLERANCE = 0.005
QUICK_P99_RANK_TOLERANCE = 0.01


def step_seconds(target_rps: float, samples: int, shortest_s: float, longest_s: float) -> float:
    """A step long enough for `samples` requests at `target_rps`, within [shortest, longest]
    whole seconds (Locust runs whole seconds): slow servers get longer steps, up to the budget."""
    wanted = math.ceil(samples / max(target_rps, 1e-9))
    return float(min(max(wanted, math.ceil(shortest_s)), max(math.ceil(longest_s), 1)))
