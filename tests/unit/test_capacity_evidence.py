"""What the ladder's evidence adds to results.json and the report: intervals and disturbed steps."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_measure import samples  # recorded load-generator samples
from test_results import FixedCpuSampler

from benchmarks import analysis, knobs, report
from benchmarks.measure import interference
from benchmarks.report.tables import level_table, summary_table
from benchmarks.report.verdict import capacity_definition
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
QUIET = interference.Interference(1.0, 0.5, 0.0, False)
BUSY = interference.Interference(42.0, 0.0, 0.3, True)


def ladder_step(document, target, repetition=0, step=0, attempt=0, others=QUIET):
    """A step measured by the ladder: one vCPU, a 50 ms SLO, 10 requests a second per user."""
    return summarise_step(
        document,
        target,
        10,
        FixedCpuSampler(),
        1,
        50.0,
        repetition,
        step,
        "x",
        attempt=attempt,
        interference=others,
    )[0]


def tail(rate: float, slow: int, seconds: float = 5) -> object:
    """Recorded samples at `rate` whose last `slow` requests took 80 ms (3 ms the rest)."""
    document = samples(rate, seconds, 3.0)
    requests = document.requests
    document.requests = requests[: len(requests) - slow] + [
        (start, 80.0, status) for start, _, status in requests[len(requests) - slow :]
    ]
    return document


def test_a_ladder_step_carries_its_attempt_probability_and_interference():
    level = ladder_step(tail(100, 0), 100, attempt=1, others=BUSY)
    written = level.as_dict()
    assert written["attempt"] == 1 and written["within_slo_probability"] > 0.999
    assert written["interference"] == BUSY.as_dict()
    # Four slow requests of ~490: the p99 holds, but a resample often breaks it.
    unsure = ladder_step(tail(100, 4), 100)
    assert unsure.within_slo and 0.1 < unsure.within_slo_probability < 0.9
    # Falling short of the target rate is not resampled: no chance at all.
    short = ladder_step(samples(50, 5, 3.0), 100)
    assert short.within_slo is False and short.within_slo_probability == 0.0


def test_a_step_outside_the_ladder_writes_only_the_older_fields():
    level, _ = summarise_step(samples(100, 5, 3.0), 100, 10, FixedCpuSampler(), 1, 50.0, 0, 0, "x")
    assert not {"attempt", "within_slo_probability", "interference"} & set(level.as_dict())


def run_info(**interference_record) -> RunInfo:
    started = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
    fixture_run = json.loads(FIXTURE.read_text())["run"]
    budget = {"sut_cpus": [0], "loadgen_cpus": [1], "sut_vcpus": 1, "sut_memory_gib": 2.0}
    return RunInfo(
        "unit",
        started,
        started + timedelta(seconds=80),
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
        interference_record or None,
    )


def repetition_of(levels) -> RepetitionResult:
    return RepetitionResult(
        levels,
        ["pre;dur=0.2, infer;dur=0.3, post;dur=0.1, total;dur=1.0"],
        [{"name": "gunicorn", "cpu_seconds": 1.0, "peak_rss_mb": 100.0}],
        {},
        None,
        CacheCounts(),
        {"settings": {}, "launch": {}, "topology": None, "cache_location": None},
    )


def test_the_capacity_interval_is_written_and_validates():
    result = ArchitectureResult()
    for repetition in (0, 1):
        result.add(
            repetition_of(
                [
                    ladder_step(tail(100, 0), 100, repetition, 0),
                    ladder_step(tail(200, 1), 200, repetition, 1, others=BUSY),
                    ladder_step(tail(300, 60), 300, repetition, 2),
                    ladder_step(tail(300, 60), 300, repetition, 3, attempt=1),
                ]
            )
        )
    record = interference.run_record(QUIET)
    document = results_document(run_info(**record), {"monolith": result})
    analysis.validate_results(document)
    assert document["run"]["interference"]["before_run"] == QUIET.as_dict()
    monolith = document["architectures"]["monolith"]
    assert list(monolith)[:3] == ["capacity_rps", "capacity_spread", "capacity_interval"]
    interval = monolith["capacity_interval"]
    assert monolith["capacity_rps"] == 200.0
    assert interval["low"] <= 200.0 <= interval["high"] <= 300.0
    assert [level["attempt"] for level in monolith["levels"][:4]] == [0, 0, 0, 1]


@pytest.fixture
def results() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def with_intervals(results: dict, monolith: tuple, microservices: tuple) -> dict:
    shaped = copy.deepcopy(results)
    for name, (low, high) in (("monolith", monolith), ("microservices", microservices)):
        shaped["architectures"][name]["capacity_interval"] = {
            "low": low,
            "high": high,
            "confidence": 0.95,
            "draws": 2000,
            "method": "bootstrap",
        }
    analysis.validate_results(shaped)
    return shaped


def test_the_headline_ratio_carries_its_interval(results):
    shaped = with_intervals(results, (600.0, 900.0), (150.0, 300.0))
    sentence = report.headline(shaped)
    # 750 / 200 = 3.8x; from 600 / 300 = 2.0x to 900 / 150 = 6.0x.
    assert sentence.startswith(
        "On 1 vCPU, the monolith served 3.8x (2.0x–6.0x) the requests/s of microservices"
    )
    assert "750 (600–900)" in summary_table(shaped).rows[0][1]


def test_overlapping_intervals_cannot_be_told_apart_in_the_headline(results):
    shaped = with_intervals(results, (300.0, 900.0), (150.0, 320.0))
    sentence = report.headline(shaped)
    assert "the monolith and microservices cannot be told apart" in sentence
    assert "750 (300–900) vs 200 (150–320) requests/s" in sentence
    assert "served 3.8x" not in sentence
    assert "cannot be told apart" in capacity_definition(shaped)


def test_a_disturbed_step_is_named_in_the_headline_and_marked_in_its_table(results):
    disturbed = copy.deepcopy(results)
    level = disturbed["architectures"]["microservices"]["levels"][1]
    level["interference"] = BUSY.as_dict()
    disturbed["run"]["interference"] = interference.run_record(None)
    analysis.validate_results(disturbed)
    sentence = report.headline(disturbed)
    assert "The run was disturbed" in sentence
    assert "during microservices repetition 0 step 1." in sentence
    rows = level_table(disturbed, "microservices").rows
    assert "disturbed: others took 42% of the SUT CPUs" in rows[1][-1]
    assert "disturbed" not in rows[0][-1]
    assert "disturbed" not in report.headline(results)  # older results: nothing to say


def test_busy_cpus_before_the_run_are_in_the_verdict(results):
    warned = copy.deepcopy(results)
    warned["run"]["interference"] = interference.run_record(BUSY)
    analysis.validate_results(warned)
    assert "the CPUs were already busy before it started (SUT CPUs 42%" in report.headline(warned)
