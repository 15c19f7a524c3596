"""What `make bench` measured, typed, and the one place it becomes results.json.

- `StepResult`: one load level, one headless Locust run at one target rate (`levels[]`);
  `summarise_step` makes one from Locust's samples and the CPU series of the system under test.
- `RepetitionResult`: everything one repetition of one architecture produced.
- `ArchitectureResult`: the repetitions of one architecture, added up as they finish.
- `RunInfo`: the run's settings, machine and prices (`run`).

`results_document` turns them into the dict that results.schema.json describes (and
`benchmarks.analysis` validates); the derived figures (capacity, its spread, latency at capacity,
costs) are computed there, by `benchmarks.analysis`, from the levels.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from benchmarks import analysis, ladder
from benchmarks.measure import loadgen, servertiming
from benchmarks.measure.interference import Interference
from benchmarks.measure.resources import CpuSeries
from benchmarks.measure.runs import utc_timestamp
from benchmarks.measure.stats import bootstrap_within_probability, percentile

SCHEMA_VERSION = 1
LATENCY_FIELDS = ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")


@dataclass(frozen=True)
class StepResult:
    """One load level (results.json ``levels[]``); fields in the order the file lists them."""

    repetition: int
    step: int
    target_rps: float
    achieved_rps: float
    requests: int
    failures: int
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    error_rate: float
    cpu_seconds: float
    cpu_seconds_per_1k: float | None
    sut_cpu_percent: float
    loadgen_cpu_percent: float
    loadgen_bound: bool
    within_slo: bool
    csv_prefix: str
    # Written by the bench's ladder (absent in older results): which attempt at this rate the
    # step was, its bootstrap probability of meeting the SLO, and what other work took.
    attempt: int | None = None
    within_slo_probability: float | None = None
    interference: Interference | None = None

    def as_dict(self) -> dict[str, Any]:
        optional = ("attempt", "within_slo_probability", "interference")
        return {
            key: value
            for key, value in asdict(self).items()
            if key not in optional or value is not None
        }


def summarise_step(
    samples: loadgen.Samples,
    target_rps: float,
    user_rps: float,
    sampler: CpuSeries,
    sut_vcpus: int,
    slo_p99_ms: float,
    repetition: int,
    step: int,
    csv_prefix: str,
    *,
    attempt: int | None = None,
    interference: Interference | None = None,
) -> tuple[StepResult, dict[str, int]]:
    """A step's level, and its responses counted by status, from what Locust recorded.

    A step of the ladder (`attempt` given) also gets the bootstrap probability that it meets the
    SLO, which its architecture's capacity interval is drawn from."""
    window = loadgen.measurement_window(samples, user_rps)
    window_start = window[0][0] if window else samples.started_at
    window_end = window[-1][0] if window else samples.stopped_at
    window_s = max(window_end - window_start, 1e-9)
    latencies = sorted(latency for _, latency, status in window if 200 <= status < 300)
    statuses = dict(Counter(str(status) for _, _, status in window))
    total = len(window)
    failures = total - len(latencies)
    cpu_seconds = sampler.cpu_between(window_start, window_end)
    loadgen_percent = 100.0 * samples.cpu_seconds / samples.seconds
    # The last request started at window_end; `total - 1` intervals lie between first and last.
    achieved = (total - 1) / window_s if total > 1 else 0.0
    quantiles = [percentile(latencies, q) for q in (0.50, 0.90, 0.95, 0.99)]
    p50, p90, p95, p99, top = (
        None if value is None else round(value, 3)
        for value in [*quantiles, latencies[-1] if latencies else None]
    )
    level = StepResult(
        repetition=repetition,
        step=step,
        target_rps=round(target_rps, 1),
        achieved_rps=round(achieved, 1),
        requests=total,
        failures=failures,
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=top,
        error_rate=failures / total if total else 0.0,
        cpu_seconds=round(cpu_seconds, 3),
        cpu_seconds_per_1k=round(cpu_seconds / total * 1000, 4) if total else None,
        sut_cpu_percent=round(100.0 * cpu_seconds / window_s / sut_vcpus, 1),
        loadgen_cpu_percent=round(loadgen_percent, 1),
        loadgen_bound=analysis.is_loadgen_bound(loadgen_percent),
        within_slo=False,
        csv_prefix=csv_prefix,
        attempt=attempt,
        interference=interference,
    )
    within = analysis.level_within_slo(level.as_dict(), slo_p99_ms)
    probability = None
    if attempt is not None:
        # Only the latency tail and the errors are resampled; falling short of the target rate
        # is no sampling accident.
        kept_up = level.achieved_rps >= analysis.MIN_ACHIEVED_FRACTION * level.target_rps
        probability = (
            round(
                bootstrap_within_probability(
                    latencies, failures, 0.99, slo_p99_ms, analysis.MAX_ERROR_RATE
                ),
                4,
            )
            if kept_up
            else 0.0
        )
    return replace(level, within_slo=within, within_slo_probability=probability), statuses


@dataclass
class CacheCounts:
    """Cache lookups seen during the load steps, and who counted them (None: nobody)."""

    hits: float = 0.0
    misses: float = 0.0
    source: str | None = None  # "metrics" (the servers' counters) or "server-timing"

    def add(self, other: CacheCounts) -> None:
        if other.source:
            self.hits += other.hits
            self.misses += other.misses
            self.source = self.source or other.source

    def summary(self) -> dict[str, Any] | None:
        """results.json ``cache``, or None when nothing was looked up."""
        lookups = self.hits + self.misses
        if lookups <= 0:
            return None
        return {
            "hits": int(self.hits),
            "misses": int(self.misses),
            "hit_rate": round(self.hits / lookups, 4),
            "source": self.source,
        }


@dataclass
class RepetitionResult:
    """One repetition of one architecture."""

    levels: list[StepResult]
    timings: list[str]  # Server-Timing headers the stage breakdown is taken from
    processes: list[dict]  # per process: name, cpu_seconds, peak_rss_mb
    errors: dict[str, int]  # failed responses by status
    budget: dict | None  # the platform's budget (kind), else None
    cache: CacheCounts
    applied: dict  # what the knobs did to the architecture, and what it reported
    # The entry point's floor and spread (results ``entry[]``): its HTTP noop, requests per
    # gunicorn worker pid and /v1/predict requests served, from its /metrics; {} when unread.
    entry: dict = field(default_factory=dict)


@dataclass
class ArchitectureResult:
    """Every repetition of one architecture, added up as they finish."""

    levels: list[StepResult] = field(default_factory=list)
    timings: list[str] = field(default_factory=list)
    process_runs: list[list[dict]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    budget: dict | None = None
    applied: dict | None = None
    cache: CacheCounts = field(default_factory=CacheCounts)
    entries: list[dict] = field(default_factory=list)  # RepetitionResult.entry, per repetition

    def add(self, repetition: RepetitionResult) -> None:
        self.levels += repetition.levels
        self.timings += repetition.timings
        self.process_runs.append(repetition.processes)
        self.errors.update(repetition.errors)
        self.budget = repetition.budget or self.budget
        self.applied = self.applied or repetition.applied
        self.cache.add(repetition.cache)
        if repetition.entry:
            self.entries.append(repetition.entry)

    def processes(self) -> list[dict]:
        """Per process name: CPU summed over repetitions, peak RSS the highest seen."""
        merged: dict[str, dict] = {}
        for processes in self.process_runs:
            for process in processes:
                entry = merged.setdefault(
                    process["name"],
                    {"name": process["name"], "cpu_seconds": 0.0, "peak_rss_mb": 0.0},
                )
                entry["cpu_seconds"] = round(entry["cpu_seconds"] + process["cpu_seconds"], 3)
                entry["peak_rss_mb"] = max(entry["peak_rss_mb"], process["peak_rss_mb"])
        return sorted(merged.values(), key=lambda p: p["name"])

    def peak_rss_mb_total(self) -> float:
        """The highest sum of every process's peak memory in one repetition."""
        totals = [sum(p["peak_rss_mb"] for p in processes) for processes in self.process_runs]
        return round(max(totals) if totals else 0.0, 1)

    def capacity_interval(self, repetitions: int) -> ladder.CapacityInterval | None:
        """The median capacity's bootstrap interval, from the ladder's steps (None when the
        levels carry no probability: not measured by the ladder)."""
        steps: list[list[tuple[float, float]]] = [[] for _ in range(repetitions)]
        for level in self.levels:
            if level.within_slo_probability is not None and level.repetition < repetitions:
                steps[level.repetition].append((level.target_rps, level.within_slo_probability))
        return ladder.capacity_interval(steps)

    def as_dict(
        self, slo_p99_ms: float, repetitions: int, budget: dict, prices: dict
    ) -> dict[str, Any]:
        """results.json ``architectures.<name>``: the levels and every figure derived from them."""
        levels = [level.as_dict() for level in self.levels]
        by_rep = analysis.capacities_by_repetition(levels, slo_p99_ms)
        spread = analysis.summarise_repetitions([by_rep.get(r) for r in range(repetitions)])
        peak_rss_total = self.peak_rss_mb_total()
        cpu_per_1k = analysis.median_cpu_seconds_per_1k(levels, slo_p99_ms)
        interval = self.capacity_interval(repetitions)
        entry = {
            "capacity_rps": spread["median"],
            "capacity_spread": spread,
            **({"capacity_interval": interval.as_dict()} if interval else {}),
            "p50_at_capacity_ms": analysis.median_at_capacity(levels, slo_p99_ms, "p50_ms"),
            "p99_at_capacity_ms": analysis.median_at_capacity(levels, slo_p99_ms, "p99_ms"),
            "cost_per_million_usd": analysis.cost_per_million(
                spread["median"],
                cpu_per_1k,
                peak_rss_total,
                {**budget, **(self.budget or {})},
                prices,
            ),
            "cpu_seconds_per_1k": cpu_per_1k,
            "levels": levels,
            "stages_ms": servertiming.stage_breakdown(self.timings),
            "processes": self.processes(),
            "peak_rss_mb_total": peak_rss_total,
            "errors": dict(self.errors),
            "applied": self.applied,
        }
        if self.cache.source:
            entry["cache"] = self.cache.summary()
        if self.entries:
            entry["entry"] = self.entries
        return entry


@dataclass
class RunInfo:
    """results.json ``run`` but for what is computed when the document is written."""

    label: str
    started_at: datetime
    finished_at: datetime
    git_sha: str | None
    quick: bool
    repetitions: int
    slo_p99_ms: float
    target: str
    cpu_budget: dict
    machine: dict
    settings: dict
    knobs: dict
    prices: dict
    interference: dict | None = None  # the CPUs' check before the run and the thresholds

    def as_dict(self) -> dict[str, Any]:
        optional = {"interference": self.interference} if self.interference else {}
        return {
            "label": self.label,
            "started_at": utc_timestamp(self.started_at),
            "finished_at": utc_timestamp(self.finished_at),
            "duration_s": round((self.finished_at - self.started_at).total_seconds(), 1),
            "git_sha": self.git_sha,
            "quick": self.quick,
            "repetitions": self.repetitions,
            "slo_p99_ms": self.slo_p99_ms,
            "target": self.target,
            "cpu_budget": self.cpu_budget,
            "machine": self.machine,
            "settings": self.settings,
            "knobs": self.knobs,
            "prices": self.prices,
            **optional,
        }


def results_document(
    run: RunInfo, architectures: dict[str, ArchitectureResult], floors: dict | None = None
) -> dict[str, Any]:
    """The whole results.json document; `floors` (benchmarks.measure.floors) when measured."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "run": run.as_dict(),
        "architectures": {
            name: result.as_dict(run.slo_p99_ms, run.repetitions, run.cpu_budget, run.prices)
            for name, result in architectures.items()
        },
    }
    if floors:
        document["floors"] = floors
    return document
