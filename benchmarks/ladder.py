"""The rate search of `make bench`: a ladder of constant target rates around a probe's estimate.

A pure function of what each step measured. `climb(rates, measure)` calls ``measure(rung)`` for
each rung in turn and decides, from the step results, which rate to try next:

- the rungs start as `ladder_targets(probe_rps, fractions)`: dense near the knee, because p99
  crosses a 50 ms SLO at 50-80% of a closed-loop probe's throughput, long before saturation;
- when even the lowest rate so far missed the SLO (a closed-loop probe can overrate a server
  whose throughput comes with latency, e.g. with batching), the rest of the ladder becomes one
  rung at half that rate, at most `MAX_LOWER_STEPS` times: capacity is found rather than
  reported as none;
- a step that achieved under `SATURATED_FRACTION` of its target ends the search: deep in
  saturation further steps only add queueing, not information;
- when the top rung is still within the SLO the knee lies above it: one more rung
  `EXTEND_FACTOR` higher, at most `MAX_EXTRA_STEPS` times.

The **capacity** is the highest target whose step was within the SLO (None if none was). A step
result is anything with ``within_slo`` and ``achieved_rps``: the bench's `StepResult`, or a
recorded one replayed with `replay` (which is how the unit tests drive the search, no server).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

# Each step's target as a fraction of the probe's closed-loop throughput: dense near the knee.
LADDER = (0.3, 0.45, 0.6, 0.7, 0.8, 0.9)
QUICK_LADDER = (0.35, 0.55, 0.7, 0.85)
EXTEND_FACTOR = 1.15
MAX_EXTRA_STEPS = 3
MAX_LOWER_STEPS = 2  # halvings of the rate when even the first step misses the SLO
SATURATED_FRACTION = 0.8


class StepOutcome(Protocol):
    @property
    def within_slo(self) -> bool: ...

    @property
    def achieved_rps(self) -> float: ...


Step = TypeVar("Step", bound=StepOutcome)


@dataclass(frozen=True)
class Rung:
    """One step to measure: its position, its target rate, and how many steps are planned now."""

    index: int
    target_rps: float
    planned: int


@dataclass
class Ladder(Generic[Step]):
    """The steps of one search, in the order they ran, and what they say the capacity is."""

    rungs: list[Rung] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    @property
    def capacity_rps(self) -> float | None:
        within = [
            rung.target_rps
            for rung, step in zip(self.rungs, self.steps, strict=True)
            if step.within_slo
        ]
        return max(within) if within else None


def round_rate(raw: float) -> float:
    """Two significant figures, at least 1 req/s: readable, and the same across repetitions
    whenever the probes agree to within rounding."""
    raw = max(raw, 1.0)
    magnitude = 10 ** max(math.floor(math.log10(raw)) - 1, 0)
    return float(round(raw / magnitude) * magnitude)


def ladder_targets(probe_rps: float, fractions: Sequence[float]) -> list[float]:
    """The first rungs: each fraction of the probe's throughput, rounded, sorted, distinct."""
    return sorted({round_rate(probe_rps * fraction) for fraction in fractions})


def climb(rates: Sequence[float], measure: Callable[[Rung], Step]) -> Ladder[Step]:
    """Measure the rungs starting from `rates`, adapting the ladder as the module says."""
    rates = list(rates)
    ladder: Ladder[Step] = Ladder()
    planned = len(rates)  # the ladder's length before any step was added above it
    index = lowered = 0
    while index < len(rates):
        rung = Rung(index, rates[index], len(rates))
        step = measure(rung)
        ladder.rungs.append(rung)
        ladder.steps.append(step)
        if not any(done.within_slo for done in ladder.steps) and lowered < MAX_LOWER_STEPS:
            rates[index + 1 :] = [round_rate(rung.target_rps / 2)]
            planned = len(rates)
            lowered += 1
        elif step.achieved_rps < SATURATED_FRACTION * rung.target_rps:
            break
        elif index == len(rates) - 1 and step.within_slo and len(rates) - planned < MAX_EXTRA_STEPS:
            rates.append(round_rate(rung.target_rps * EXTEND_FACTOR))
        index += 1
    return ladder


def replay(recorded: Mapping[float, Step]) -> Callable[[Rung], Step]:
    """A `measure` that answers from step results recorded by target rate."""

    def measure(rung: Rung) -> Step:
        if rung.target_rps not in recorded:
            raise KeyError(f"no step recorded at {rung.target_rps:g} req/s")
        return recorded[rung.target_rps]

    return measure
