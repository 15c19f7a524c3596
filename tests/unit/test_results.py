"""The bench's typed results: step summaries, repetitions added up, and results.json from them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_measure import samples  # recorded load-generator samples

from benchmarks import analysis, knobs
from benchmarks.measure.resources import CpuSeries
from benchmarks.results import (
    ArchitectureResult,
    CacheCounts,
    RepetitionResult,
    RunInfo,
    results_document,
    summarise_step,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "results_small.json"


class FixedCpuSampler(CpuSeries):
    """A sampler with a pre-recorded CPU series: 0.5 CPU-seconds per wall second."""

    def __init__(self):
        super().__init__()
        self.times = [100.0 + i for i in range(20)]
        self.totals = [0.5 * i for i in range(20)]


def summarise(document, target, repetition=0, step=0, csv_prefix="x"):
    """One step on one vCPU with a 50 ms SLO, 10 requests a second per user."""
    return summarise_step(
        document, target, 10, FixedCpuSampler(), 1, 50.0, repetition, step, csv_prefix
    )


def test_summary_of_a_healthy_step():
    level, statuses = summarise(
        samples(200, 5, 3.0, cpu_seconds=1.0),
        200,
        repetition=1,
        step=2,
        csv_prefix="monolith/r1-s2",
    )
    assert level.achieved_rps == pytest.approx(200, rel=0.01)
    assert level.p50_ms == level.p99_ms == 3.0
    assert level.within_slo is True and level.failures == 0 and statuses == {"200": level.requests}
    # 0.5 CPU-seconds per second of window, spread over ~200 requests a second.
    assert level.cpu_seconds_per_1k == pytest.approx(2.5, rel=0.05)
    assert level.sut_cpu_percent == pytest.approx(50, abs=2)
    assert level.loadgen_cpu_percent == pytest.approx(100 * 1.0 / 5.2, abs=0.5)
    assert level.loadgen_bound is False
    assert (level.repetition, level.step, level.csv_prefix) == (1, 2, "monolith/r1-s2")


def test_summary_flags_a_hot_load_generator():
    level, _ = summarise(samples(200, 5, 3.0, cpu_seconds=4.9), 200)
    assert level.loadgen_cpu_percent > 85
    assert level.loadgen_bound is True


def test_summary_marks_errors_and_slow_steps_beyond_capacity():
    errors, statuses = summarise(samples(100, 5, 3.0, status=503), 100)
    assert errors.error_rate == 1.0 and errors.within_slo is False and "503" in statuses
    assert errors.p99_ms is None
    slow, _ = summarise(samples(100, 5, 80.0), 100)
    assert slow.p99_ms == 80.0 and slow.within_slo is False
    short, _ = summarise(samples(50, 5, 3.0), 100)
    assert short.achieved_rps < 95 and short.within_slo is False


def test_a_level_is_written_with_every_field_in_the_schemas_order():
    level, _ = summarise(samples(200, 5, 3.0), 200)
    fields = json.loads(FIXTURE.read_text())["architectures"]["monolith"]["levels"][0]
    assert list(level.as_dict()) == list(fields)


def test_cache_summary():
    assert CacheCounts(30, 10, "metrics").summary() == {
        "hits": 30,
        "misses": 10,
        "hit_rate": 0.75,
        "source": "metrics",
    }
    assert CacheCounts(0, 0, "metrics").summary() is None
    total = CacheCounts()
    total.add(CacheCounts(3, 1, "metrics"))
    total.add(CacheCounts(5, 5, None))  # nobody counted: nothing to add
    total.add(CacheCounts(1, 0, "server-timing"))
    assert (total.hits, total.misses, total.source) == (4, 1, "metrics")


def repetition(
    rep: int,
    rates: list[float],
    p99: float,
    processes: list[dict],
    errors: dict,
    cache: CacheCounts | None = None,
) -> RepetitionResult:
    levels = [
        summarise(samples(rate, 5, p99 if rate > 150 else 3.0), rate, rep, step)[0]
        for step, rate in enumerate(rates)
    ]
    timings = ["pre;dur=0.2, infer;dur=0.3, post;dur=0.1, total;dur=1.0"]
    return RepetitionResult(
        levels,
        timings,
        processes,
        errors,
        None,
        cache or CacheCounts(),
        {"settings": {}, "launch": {}, "topology": None, "cache_location": None},
    )


def test_repetitions_add_up_into_a_valid_results_document():
    result = ArchitectureResult()
    result.add(
        repetition(
            0,
            [100.0, 200.0],
            80.0,
            [
                {"name": "gunicorn", "cpu_seconds": 1.0, "peak_rss_mb": 100.0},
                {"name": "worker", "cpu_seconds": 2.0, "peak_rss_mb": 50.0},
            ],
            {"503": 2},
            CacheCounts(3, 1, "metrics"),
        )
    )
    result.add(
        repetition(
            1,
            [100.0, 200.0],
            20.0,
            [{"name": "gunicorn", "cpu_seconds": 0.5, "peak_rss_mb": 120.0}],
            {"503": 1, "0": 4},
        )
    )
    assert result.processes() == [
        {"name": "gunicorn", "cpu_seconds": 1.5, "peak_rss_mb": 120.0},
        {"name": "worker", "cpu_seconds": 2.0, "peak_rss_mb": 50.0},
    ]
    assert (
        result.peak_rss_mb_total() == 150.0
    )  # the highest sum in one repetition, not the sum of peaks
    started = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    fixture_run = json.loads(FIXTURE.read_text())["run"]
    budget = {"sut_cpus": [0], "loadgen_cpus": [1], "sut_vcpus": 1, "sut_memory_gib": 2.0}
    run = RunInfo(
        "unit",
        started,
        started + timedelta(seconds=61.24),
        "abc",
        True,
        2,
        50.0,
        "local",
        budget,
        fixture_run["machine"],
        {"architectures": ["monolith"]},
        knobs.record(knobs.defaults()),
        fixture_run["prices"],
    )
    document = results_document(run, {"monolith": result})
    analysis.validate_results(document)
    assert (
        document["run"]["started_at"] == "2026-11-30T12:00:00Z"
        and document["run"]["duration_s"] == 61.2
    )
    monolith = document["architectures"]["monolith"]
    # Repetition 0 missed the SLO at 200 (p99 80 ms), repetition 1 met it.
    assert monolith["capacity_spread"] == {
        "median": 150.0,
        "min": 100.0,
        "max": 200.0,
        "values": [100.0, 200.0],
    }
    assert monolith["errors"] == {"503": 3, "0": 4}
    assert monolith["cache"] == {"hits": 3, "misses": 1, "hit_rate": 0.75, "source": "metrics"}
    assert monolith["stages_ms"]["infer"] == 0.3 and monolith["stages_ms"][
        "http_other"
    ] == pytest.approx(0.4)
    assert [level["repetition"] for level in monolith["levels"]] == [0, 0, 1, 1]
    assert monolith["cost_per_million_usd"] == analysis.cost_per_million(
        150.0, monolith["cpu_seconds_per_1k"], 150.0, budget, fixture_run["prices"]
    )
    assert list(monolith) == [
        "capacity_rps",
        "capacity_spread",
        "p50_at_capacity_ms",
        "p99_at_capacity_ms",
        "cost_per_million_usd",
        "cpu_seconds_per_1k",
        "levels",
        "stages_ms",
        "processes",
        "peak_rss_mb_total",
        "errors",
        "applied",
        "cache",
    ]
