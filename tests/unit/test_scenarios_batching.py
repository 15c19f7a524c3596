"""Scenario 3's mechanism: the requests-per-call histogram read from real /metrics text."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from benchmarks.scenarios import base, batching
from servinglab.serving.metrics import BATCH_SIZE_BUCKETS


def _exposition(sizes_by_process: dict[str, list[int]]) -> str:
    """/metrics text as the servers write it: lab_batch_requests, one series per process."""
    registry = CollectorRegistry()
    histogram = Histogram(
        "lab_batch_requests",
        "Requests answered by one micro-batched model call",
        ["process"],
        buckets=BATCH_SIZE_BUCKETS,
        registry=registry,
    )
    for process, sizes in sizes_by_process.items():
        for size in sizes:
            histogram.labels(process).observe(size)
    return generate_latest(registry).decode()


def test_histogram_between_two_scrapes_counts_only_the_calls_in_between():
    before = batching.batch_buckets(_exposition({"a": [1, 1], "b": [2]}))
    after = batching.batch_buckets(_exposition({"a": [1, 1, 1, 3, 8], "b": [2, 2, 30, 2000]}))
    counts = batching.histogram_between(before, after)
    assert counts["1"] == 1
    assert counts["2"] == 1
    assert counts["3-4"] == 1
    assert counts["5-8"] == 1
    assert counts["17-32"] == 1
    assert counts["over 1024"] == 1
    assert sum(counts.values()) == 6
    assert list(counts)[:3] == ["1", "2", "3-4"]


def test_mean_batch_estimates_from_the_buckets():
    assert batching.mean_batch({"1": 2.0, "3-4": 2.0}) == pytest.approx((2 * 1 + 2 * 3.5) / 4)
    assert batching.mean_batch({"1": 0.0}) is None


def test_no_histogram_without_batching():
    assert batching.batch_buckets(None) == {}
    assert batching.batch_buckets("# no batching here\n") == {}
    assert batching.histogram_between({}, {}) == {}


def test_candidates_share_the_budget_and_quick_keeps_the_knob_defaults():
    for name in base.ARCHITECTURES:
        first = batching.CANDIDATES[name][0]
        assert first.quick and first.knobs["BATCHING"] == "on"
        labels = [candidate.label for candidate in batching.CANDIDATES[name]]
        assert len(set(labels)) == len(labels)
    # No candidate sets the CPUs: both sides always get the scenarios' one budget.
    for candidates in batching.CANDIDATES.values():
        for candidate in candidates:
            assert not {"SUT_CPUS", "CPUS"} & set(candidate.settings)


def test_common_rates_follow_the_faster_probe():
    assert batching.common_rates([50.0, 100.0], (0.5, 1.0)) == [50.0, 100.0]
